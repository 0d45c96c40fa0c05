"""cpl.synthetic: the raw data sets it writes, and the real recipes run on
them through cpl.Recipe."""
import hashlib
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits

import cpl
from cpl import synthetic


def digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def raw_pixels(path, ext=0):
    """The stored counts, without astropy's scaling."""
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        return hdul[ext].data.copy()


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """uves + naco at tiny size: (outdir, steps)."""
    out = tmp_path_factory.mktemp('synthetic') / 'data'
    steps = synthetic.make_dataset(out, size='tiny',
                                   instruments=['uves', 'naco'], seed=5)
    return out, steps


# --- the API ---------------------------------------------------------------
def test_sizes_and_instruments():
    assert synthetic.SIZES == {'tiny': 1 / 16, 'small': 1 / 8,
                               'medium': 1 / 4, 'large': 1 / 2, 'full': 1.0}
    assert set(synthetic.INSTRUMENTS) == {'muse', 'uves', 'naco', 'vimos'}
    assert 'vimos' not in synthetic.DEFAULT_INSTRUMENTS
    assert set(synthetic.MIN_FRAMES) == set(synthetic.INSTRUMENTS)
    assert synthetic.scale_of('small') == 1 / 8
    assert synthetic.scale_of(0.3) == 0.3


def test_available_instruments(tmp_path, recipe_dir, system_path):
    found = synthetic.available_instruments()
    assert set(found) <= set(synthetic.INSTRUMENTS)
    for name in found:
        for recipe in synthetic.INSTRUMENTS[name]:
            assert cpl.Recipe.get_recipefilename(recipe)
    assert synthetic.available_instruments(str(tmp_path)) == []
    assert synthetic.available_instruments([recipe_dir]) == []
    assert cpl.Recipe.path == system_path         # restored
    cpl.Recipe.path = [recipe_dir]                # only the test recipes
    assert synthetic.available_instruments() == []
    assert synthetic.available_instruments(system_path) == found


def test_steps(dataset):
    out, steps = dataset
    assert [s.name for s in steps] == ['uves_bias', 'uves_dark', 'naco_dark']
    bias, dark, naco = steps
    assert (bias.recipe, bias.tag, bias.calib) == \
        ('uves_cal_mbias', 'BIAS_BLUE', {})
    assert (dark.recipe, dark.tag) == ('uves_cal_mdark', 'DARK_BLUE')
    assert dark.calib == {'MASTER_BIAS_BLUE': ('uves_bias',
                                               'MASTER_BIAS_BLUE')}
    assert dark.depends_on == ['uves_bias']
    assert naco.recipe == 'naco_img_dark' and naco.tag == 'CAL_DARK'
    # the default 200 pixel border does not fit a 64 pixel frame
    assert naco.params == {'r': '12 12 12 12'}
    assert naco.esorex_params() == ['--r=12 12 12 12']
    assert set(naco.products) == {'NACO_IMG_DARK_AVG', 'NACO_IMG_DARK_HOT',
                                  'NACO_IMG_DARK_COLD', 'NACO_IMG_DARK_DEV'}
    for step in steps:
        assert len(step.raw) == 3
        assert set(step.files) == set(step.products)
        assert step.output_dir == str(out / 'products' / step.name)
        for path in step.raw:
            assert os.path.isabs(path) and os.path.isfile(path)
            assert os.path.dirname(path) == str(out / 'raw' / step.instrument)


def test_sofs_and_manifest(dataset):
    out, steps = dataset
    bias, dark, _ = steps
    assert bias.sof == str(out / 'sof' / 'uves_bias.sof')
    assert cpl.esorex.load_sof(bias.sof) == {'BIAS_BLUE': bias.raw}
    master = os.path.join(bias.output_dir, 'masterbias_blue.fits')
    assert cpl.esorex.load_sof(dark.sof) == {'DARK_BLUE': dark.raw,
                                             'MASTER_BIAS_BLUE': master}
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['instruments'] == ['uves', 'naco']
    assert (manifest['size'], manifest['nframes'], manifest['seed']) == \
        ('tiny', 3, 5)
    assert manifest['geometry']['naco'] == {'shape': [64, 64]}
    entries = {s['name']: s for s in manifest['steps']}
    assert list(entries) == [s.name for s in steps]
    assert entries['uves_dark']['depends_on'] == ['uves_bias']
    assert entries['uves_dark']['calib'] == {
        'MASTER_BIAS_BLUE': ['uves_bias', 'MASTER_BIAS_BLUE']}
    assert entries['naco_dark']['esorex_command'] == [
        'esorex', '--output-dir=' + steps[2].output_dir,
        '--log-dir=' + steps[2].output_dir, 'naco_img_dark',
        '--r=12 12 12 12', steps[2].sof]
    # what tools that read the manifest instead of importing the module
    # (the tests' data_dir) need: options, product files and categories
    naco = entries['naco_dark']
    assert naco['options'] == ['--r=12 12 12 12']
    assert naco['expected_pro_catg'] == steps[2].products
    assert naco['expected_products'] == [steps[2].files[t]
                                         for t in steps[2].products]
    assert entries['uves_bias']['expected_products'] == \
        ['masterbias_blue.fits']
    assert entries['uves_bias']['expected_pro_catg'] == ['MASTER_BIAS_BLUE']


def test_products_dir(tmp_path):
    steps = synthetic.make_dataset(tmp_path / 'd', instruments='uves',
                                   nframes=1, products_dir=tmp_path / 'p')
    assert steps[1].output_dir == str(tmp_path / 'p' / 'uves_dark')
    assert cpl.esorex.load_sof(steps[1].sof)['MASTER_BIAS_BLUE'] == \
        str(tmp_path / 'p' / 'uves_bias' / 'masterbias_blue.fits')


def test_uves_frames(dataset):
    _, (bias, dark, _) = dataset
    with fits.open(bias.raw[0], do_not_scale_image_data=True) as hdul:
        header = hdul[0].header
        assert hdul[0].data.shape == (184, 50 + 128 + 50)
        assert hdul[0].data.dtype.kind == 'i' and header['BITPIX'] == 16
    # float keywords: the UVES recipes refuse integer ones
    assert isinstance(header['BZERO'], float) and header['BZERO'] == 32768
    assert isinstance(header['BSCALE'], float) and header['BSCALE'] == 1
    assert header['ESO DPR TYPE'] == 'BIAS' and header['EXPTIME'] == 0
    assert header['ESO DET OUT1 NX'] == 128
    assert fits.getheader(dark.raw[0])['EXPTIME'] > 0
    level = fits.getdata(bias.raw[0]).mean()     # scaled: counts
    assert 190 < level < 215


def test_muse_frames(tmp_path):
    steps = synthetic.make_dataset(tmp_path, instruments=['muse'])
    assert [(s.name, s.recipe, s.tag) for s in steps] == [
        ('muse_bias', 'muse_bias', 'BIAS'), ('muse_dark', 'muse_dark', 'DARK')]
    assert steps[1].calib == {'MASTER_BIAS': ('muse_bias', 'MASTER_BIAS')}
    assert steps[0].params == {'nifu': -1, 'merge': True}
    assert steps[0].esorex_params() == ['--nifu=-1', '--merge=true']
    with fits.open(steps[0].raw[0]) as hdul:
        assert [h.name for h in hdul[1:]] == ['CHAN%02d' % i
                                              for i in range(1, 25)]
        ext = hdul[24].header
        assert hdul[24].data.shape == (2 * (32 + 128 + 32),) * 2
    # port positions are those of the full chip at every size
    assert (ext['ESO DET OUT3 X'], ext['ESO DET OUT3 Y']) == (4096, 4112)
    assert (ext['ESO DET OUT3 NX'], ext['ESO DET OUT3 NY']) == (128, 128)
    assert ext['ESO DET CHIP NAME'] == 'MUSE-CCD24'


def test_reproducible(tmp_path, dataset):
    out, steps = dataset
    # the same seed: the same files, whatever else is generated with them
    again = synthetic.make_dataset(tmp_path / 'again', instruments=['naco'],
                                   seed=5)
    for a, b in zip(steps[2].raw, again[0].raw):
        assert digest(a) == digest(b)
    other = synthetic.make_dataset(tmp_path / 'other', instruments=['naco'],
                                   seed=6)
    assert not np.array_equal(raw_pixels(steps[2].raw[0]),
                              raw_pixels(other[0].raw[0]))
    # each exposure its own noise
    for step in steps:
        first, second = raw_pixels(step.raw[0]), raw_pixels(step.raw[1])
        assert not np.array_equal(first, second)


@pytest.mark.parametrize('kwargs, error', [
    ({'size': 'huge'}, ValueError), ({'size': 0}, ValueError),
    ({'size': 1.5}, ValueError), ({'instruments': ['hawki']}, ValueError),
    ({'instruments': []}, ValueError),
    ({'instruments': ['muse'], 'nframes': 2}, ValueError),
    ({'instruments': ['naco'], 'nframes': 1}, ValueError),
    ({'nframes': 3.0}, TypeError)])
def test_bad_arguments(tmp_path, kwargs, error):
    with pytest.raises(error):
        synthetic.make_dataset(tmp_path, **kwargs)
    assert not os.listdir(tmp_path)          # refused before writing


def test_whitespace_refused(tmp_path):
    with pytest.raises(ValueError, match='white space'):
        synthetic.make_dataset(tmp_path / 'with space', instruments=['naco'])


# --- the real recipes --------------------------------------------------------
def product_catg(path):
    return fits.getheader(path)['ESO PRO CATG']


def need_pipelines(steps):
    missing = {s.instrument for s in steps} - \
        set(synthetic.available_instruments())
    if missing:
        pytest.skip('pipelines not installed: %s' % ', '.join(sorted(missing)))


def run_through_cpl(steps, top):
    """Runs the steps in order with cpl.Recipe, each into top/<step name>;
    checks the products.  Returns step name -> Result."""
    results = {}
    for step in steps:
        recipe = cpl.Recipe(step.recipe)
        outdir = top / step.name
        result = recipe(step.raw, tag=step.tag, param=step.params,
                        calib=step.calib_frames(results),
                        output_dir=str(outdir), timeout=120)
        assert set(result.tags) == set(step.products)
        for tag in step.products:
            path = result[tag]
            assert os.path.dirname(path) == str(outdir)
            assert os.path.basename(path) == step.files[tag]
            assert product_catg(path) == tag
        results[step.name] = result
    return results


def test_recipes_run(dataset, tmp_path, system_path):
    _, steps = dataset
    need_pipelines(steps)
    results = run_through_cpl(steps, tmp_path)
    # the master dark records the master bias it was made with
    dark = fits.getheader(results['uves_dark']['MASTER_DARK_BLUE'])
    assert dark['ESO PRO REC1 CAL1 NAME'] == 'masterbias_blue.fits'
    assert dark['ESO PRO REC1 CAL1 CATG'] == 'MASTER_BIAS_BLUE'
    assert dark['ESO PRO REC1 ID'] == 'uves_cal_mdark'
    raws = {dark['ESO PRO REC1 RAW%d NAME' % i] for i in (1, 2, 3)}
    assert raws == {os.path.basename(p) for p in steps[1].raw}


def test_muse_recipes_run(tmp_path, system_path):
    steps = synthetic.make_dataset(tmp_path / 'data', instruments=['muse'])
    need_pipelines(steps)
    results = run_through_cpl(steps, tmp_path / 'products')
    with fits.open(results['muse_dark']['MASTER_DARK']) as hdul:
        header = hdul[0].header
        # merge=True: the 24 IFUs in one file
        assert len([h for h in hdul if h.name.endswith('DATA')]) == 24
    assert header['ESO PRO REC1 CAL1 NAME'] == 'MASTER_BIAS.fits'
    assert header['ESO PRO REC1 CAL1 CATG'] == 'MASTER_BIAS'


@pytest.mark.skipif(shutil.which('esorex') is None, reason='no esorex')
def test_esorex_runs_the_sofs(dataset, system_path):
    """The SOFs and command lines, as esorex takes them: each step in its
    own output folder, the dark's SOF naming the bias's product there."""
    _, steps = dataset
    need_pipelines(steps)
    for step in steps:
        os.makedirs(step.output_dir)
        proc = subprocess.run(step.esorex_command(), cwd=step.output_dir,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=120)
        assert proc.returncode == 0, proc.stdout.decode(errors='replace')
        for tag, name in step.files.items():
            assert product_catg(os.path.join(step.output_dir, name)) == tag
    dark = fits.getheader(os.path.join(steps[1].output_dir,
                                       'masterdark_blue.fits'))
    assert dark['ESO PRO REC1 CAL1 NAME'] == 'masterbias_blue.fits'


def test_calib_frames_needs_earlier_step(dataset):
    _, steps = dataset
    with pytest.raises(KeyError, match='uves_bias'):
        steps[1].calib_frames({})
    assert steps[1].calib_frames({'uves_bias': {'MASTER_BIAS_BLUE': 'x'}}) \
        == {'MASTER_BIAS_BLUE': 'x'}
