"""Real ESO pipelines through cpl.Recipe on cpl.synthetic's raw data
(size 'tiny'): the UVES bias -> dark chain, the NACO dark, MUSE bias
-> dark, and what bad input does to real recipes."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from astropy.io import fits

import cpl
from conftest import manifest_step as step, pipeline_recipe, remove_run_dir


@pytest.fixture(autouse=True)
def _system_recipes(system_path):
    """The installed pipelines, not the test recipes."""


def apply_options(r, options):
    """The manifest's esorex options (``--name=value``) as parameters."""
    for option in options:
        name, _, value = option[2:].partition('=')
        r.param[name] = value


def raw_frames(sof, tag):
    frames = cpl.esorex.load_sof(sof)[tag]
    return frames if isinstance(frames, list) else [frames]


def products_of(value):
    return [value] if isinstance(value, (str, fits.HDUList)) else list(value)


def test_uves_bias_then_dark(data_dir):
    folder, manifest = data_dir
    bias_step = step(manifest, 'uves_cal_mbias')
    dark_step = step(manifest, 'uves_cal_mdark')

    bias = pipeline_recipe('uves_cal_mbias')
    apply_options(bias, bias_step['options'])
    res = bias(raw_frames(bias_step['sof'], 'BIAS_BLUE'), tag='BIAS_BLUE',
               output_dir=bias_step['output_dir'], timeout=120)
    assert res.tags == set(bias_step['expected_pro_catg'])
    master_bias = res.MASTER_BIAS_BLUE
    assert os.path.basename(master_bias) == bias_step['expected_products'][0]
    assert os.path.dirname(master_bias) == bias_step['output_dir']
    header = fits.getheader(master_bias)
    assert header['ESO PRO CATG'] == 'MASTER_BIAS_BLUE'
    assert header['ESO PRO REC1 ID'] == 'uves_cal_mbias'
    assert header['ESO PRO REC1 RAW1 CATG'] == 'BIAS_BLUE'
    assert res.stat.return_code == 0

    dark = pipeline_recipe('uves_cal_mdark')
    apply_options(dark, dark_step['options'])
    dark.calib.MASTER_BIAS_BLUE = master_bias
    res = dark(raw_frames(dark_step['sof'], 'DARK_BLUE'), tag='DARK_BLUE',
               timeout=120)
    assert res.tags == set(dark_step['expected_pro_catg'])
    hdulist = res.MASTER_DARK_BLUE
    assert isinstance(hdulist, fits.HDUList)
    header = hdulist[0].header
    assert header['ESO PRO CATG'] == 'MASTER_DARK_BLUE'
    assert header['ESO PRO REC1 CAL1 NAME'] == os.path.basename(master_bias)
    assert header['ESO PRO REC1 CAL1 CATG'] == 'MASTER_BIAS_BLUE'
    assert hdulist[0].data is not None and np.isfinite(hdulist[0].data).all()
    info = cpl.dfs.ProcessingInfo(hdulist)
    assert info.name == 'uves_cal_mdark' and info.pipeline == 'uves'
    assert info.calib == {'MASTER_BIAS_BLUE': os.path.basename(master_bias)}
    assert info.tag == 'DARK_BLUE' and len(info.raw) == 3

    # The SOF of step 2 (raw and master bias) works as calib directly.
    dark2 = pipeline_recipe('uves_cal_mdark')
    dark2.calib = dark_step['sof']
    assert dark2.calib.MASTER_BIAS_BLUE.frames == master_bias
    res = dark2(raw_frames(dark_step['sof'], 'DARK_BLUE'), tag='DARK_BLUE',
                timeout=120)
    assert res.MASTER_DARK_BLUE[0].header['ESO PRO REC1 CAL1 NAME'] == \
        os.path.basename(master_bias)


def test_naco_dark(data_dir, tmp_path):
    folder, manifest = data_dir
    s = step(manifest, 'naco_img_dark')
    r = pipeline_recipe('naco_img_dark')
    assert r.param.r.default == '200 200 200 200'
    apply_options(r, s['options'])
    assert r.param.r.value == '12 12 12 12'
    out = str(tmp_path / 'naco')
    res = r(raw_frames(s['sof'], 'CAL_DARK'), tag='CAL_DARK', output_dir=out,
            timeout=120)
    assert res.tags == set(s['expected_pro_catg'])
    names = sorted(os.path.basename(p) for tag in res.tags
                   for p in products_of(res[tag]))
    assert names == sorted(s['expected_products'])
    for tag in res.tags:
        for path in products_of(res[tag]):
            header = fits.getheader(path)
            assert header['ESO PRO CATG'] == tag
            params = cpl.dfs.ProcessingInfo(path).param
            assert params['r'] == '12 12 12 12'


def test_naco_dark_threaded_twice_into_one_folder(data_dir, tmp_path):
    folder, manifest = data_dir
    s = step(manifest, 'naco_img_dark')
    r = pipeline_recipe('naco_img_dark')
    apply_options(r, s['options'])
    out = str(tmp_path / 'both')
    frames = raw_frames(s['sof'], 'CAL_DARK')
    threads = [r(frames, tag='CAL_DARK', output_dir=out, threaded=True)
               for _ in range(2)]
    results = [t.result(timeout=120) for t in threads]
    paths = [p for res in results for tag in res.tags
             for p in products_of(res[tag])]
    assert len(set(paths)) == 2 * len(s['expected_products'])
    assert all(os.path.isfile(p) for p in paths)


def test_muse_bias_then_dark(data_dir):
    folder, manifest = data_dir
    bias_step = step(manifest, 'muse_bias')
    dark_step = step(manifest, 'muse_dark')
    bias = pipeline_recipe('muse_bias')
    assert bias.tags == ['BIAS']
    assert 'BADPIX_TABLE' in [c.tag for c in bias.calib]
    apply_options(bias, bias_step['options'])
    assert bias.param.nifu.value == -1 and bias.param.merge.value is True
    start = time.monotonic()
    res = bias(raw_frames(bias_step['sof'], 'BIAS'),
               output_dir=bias_step['output_dir'], timeout=120)
    assert time.monotonic() - start < 30
    master_bias = res.MASTER_BIAS
    assert os.path.basename(master_bias) == bias_step['expected_products'][0]
    with fits.open(master_bias) as hdulist:
        assert hdulist[0].header['ESO PRO CATG'] == 'MASTER_BIAS'
        assert len(hdulist) > 24        # merged: all IFUs in one file

    dark = pipeline_recipe('muse_dark')
    apply_options(dark, dark_step['options'])
    dark.calib = dark_step['sof']
    assert dark.calib.MASTER_BIAS.frames == master_bias
    res = dark(raw_frames(dark_step['sof'], 'DARK'), timeout=120)
    header = res.MASTER_DARK[0].header
    assert header['ESO PRO CATG'] == 'MASTER_DARK'
    assert header['ESO PRO REC1 CAL1 NAME'] == 'MASTER_BIAS.fits'
    assert header['ESO PRO REC1 CAL1 CATG'] == 'MASTER_BIAS'


# --- bad input ------------------------------------------------------------------------
def truncated_copy(path, folder):
    with open(path, 'rb') as f:
        data = f.read()
    bad = os.path.join(str(folder), 'half_' + os.path.basename(path))
    with open(bad, 'wb') as f:
        f.write(data[:len(data) // 2])
    return bad


@pytest.mark.parametrize('recipe, tag', [
    ('uves_cal_mbias', 'BIAS_BLUE'), ('naco_img_dark', 'CAL_DARK'),
    ('muse_bias', 'BIAS')])
def test_truncated_raw_file(data_dir, tmp_path, recipe, tag):
    folder, manifest = data_dir
    s = step(manifest, recipe)
    r = pipeline_recipe(recipe)
    apply_options(r, s['options'])
    frames = raw_frames(s['sof'], tag)
    bad = truncated_copy(frames[0], tmp_path)
    start = time.monotonic()
    with pytest.raises((cpl.CplError, cpl.RecipeCrash)) as info:
        r([bad] + frames[1:], tag=tag, timeout=60)
    assert time.monotonic() - start < 30
    e = info.value
    try:
        assert not isinstance(e, cpl.RecipeTimeout)
        text = str(e)
        assert recipe in text
        if isinstance(e, cpl.CplError):
            assert any(bad in (err.msg or '') for err in e), text
            assert 'error reading from FITS file' in text
    finally:
        remove_run_dir(e)


def test_wrong_tag_on_a_recipe_without_declared_tags(data_dir):
    folder, manifest = data_dir
    s = step(manifest, 'uves_cal_mbias')
    r = pipeline_recipe('uves_cal_mbias')
    assert r.tags is None
    with pytest.raises(cpl.CplError) as info:
        r(raw_frames(s['sof'], 'BIAS_BLUE'), tag='BIAS_GREEN', timeout=60)
    try:
        assert 'BIAS_BLUE' in str(info.value)       # what it wanted
    finally:
        remove_run_dir(info.value)


def test_wrong_tag_on_a_recipe_with_declared_tags(data_dir, work_tmp):
    from conftest import run_dirs
    folder, manifest = data_dir
    s = step(manifest, 'muse_bias')
    r = pipeline_recipe('muse_bias')
    before = run_dirs(work_tmp, 'muse_')
    with pytest.raises(KeyError) as info:
        r(raw_frames(s['sof'], 'BIAS'), tag='DARK')
    assert "['BIAS']" in str(info.value)
    assert run_dirs(work_tmp, 'muse_') == before
