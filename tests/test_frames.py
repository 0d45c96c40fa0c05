"""Input frames (cpl.frames): declared calibration tags, the checks made on
every input before any process starts, and in-memory inputs."""
from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

import cpl
from cpl.frames import FrameConfig, InputFileError
from conftest import run_dirs, write_image


@pytest.fixture
def copy():
    return cpl.Recipe('rtest_copy')


def test_declared_calibration_tags(copy):
    assert [c.tag for c in copy.calib] == ['CALIB']
    config = copy.calib.CALIB
    assert isinstance(config, FrameConfig)
    assert config.tag == 'CALIB' and config.frames is None
    assert config.min is None and config.max == 1
    assert config.__doc__ == 'one frame (optional)'
    assert copy.calib['CALIB'] is config
    assert 'CALIB' in copy.calib and 'RAW' not in copy.calib
    assert dir(copy.calib) == ['CALIB'] and len(copy.calib) == 1
    assert copy.calib == {'CALIB': None}
    # rtest_params declares no calibration at all
    assert list(cpl.Recipe('rtest_params').calib) == []


def test_unknown_calibration_tag_is_refused(copy, calib_file, raw, work_tmp):
    with pytest.raises(KeyError) as info:
        copy.calib.CALIBRATION = calib_file
    text = str(info.value)
    assert 'rtest_copy' in text and 'CALIBRATION' in text
    assert 'did you mean CALIB' in text
    with pytest.raises(AttributeError):
        copy.calib.BIAS = calib_file
    assert not hasattr(copy.calib, 'BIAS')
    with pytest.raises(KeyError):
        copy.calib['BIAS'] = calib_file
    before = run_dirs(work_tmp)
    with pytest.raises(KeyError):
        copy(raw, calib={'BIAS': calib_file})
    assert run_dirs(work_tmp) == before
    assert copy.calib == {'CALIB': None}


def test_undeclared_recipes_take_any_calibration_tag(raw, calib_file):
    r = cpl.Recipe('rtest_crash')
    r.calib.ANYTHING = calib_file
    assert r.calib.ANYTHING.frames == calib_file
    with pytest.raises(KeyError):
        r.calib['NOT_SET']
    assert not hasattr(r.calib, 'NOT_SET')
    # An unused tag goes to the recipe, which says it ignores it.
    res = r(raw, tag='RAW', param={'mode': 'none'})
    assert any('ignoring frame' in m and 'ANYTHING' in m
               for m in res.log.info)


def test_calibration_file_is_recorded_in_the_product(copy, raw, calib_file):
    copy.calib.CALIB = calib_file
    header = copy(raw).PRODUCT[0].header
    assert header['ESO PRO REC1 CAL1 NAME'] == 'calib.fits'
    assert header['ESO PRO REC1 CAL1 CATG'] == 'CALIB'
    assert header['ESO PRO REC1 RAW1 NAME'] == 'raw1.fits'
    # Removed again: nothing recorded
    del copy.calib.CALIB
    assert 'ESO PRO REC1 CAL1 NAME' not in copy(raw).PRODUCT[0].header


def test_calibration_given_to_the_call(copy, raw, calib_file, raw2):
    header = copy(raw, calib={'CALIB': calib_file}).PRODUCT[0].header
    assert header['ESO PRO REC1 CAL1 NAME'] == 'calib.fits'
    assert copy.calib.CALIB.frames is None
    copy.calib.CALIB = raw2
    header = copy(raw, calib={'CALIB': None}).PRODUCT[0].header
    assert 'ESO PRO REC1 CAL1 NAME' not in header
    header = copy(raw).PRODUCT[0].header
    assert header['ESO PRO REC1 CAL1 NAME'] == 'raw2.fits'


def test_calib_from_a_sof(copy, raw, calib_file, tmp_path):
    sof = tmp_path / 'in.sof'
    sof.write_text('# raw and calibration\n%s RAW\n%s CALIB\n'
                   % (raw, calib_file))
    copy.calib = str(sof)
    # The raw line is not a calibration frame.
    assert copy.calib == {'CALIB': calib_file}
    header = copy(raw).PRODUCT[0].header
    assert header['ESO PRO REC1 CAL1 NAME'] == 'calib.fits'
    copy.calib = {'CALIB': calib_file}
    del copy.calib
    assert copy.calib == {'CALIB': None}


@pytest.mark.parametrize('where', ['raw', 'calib'])
def test_missing_file_refused_before_anything_runs(copy, raw, tmp_path,
                                                   work_tmp, where):
    missing = str(tmp_path / 'nothere.fits')
    out = tmp_path / 'out'
    before = run_dirs(work_tmp)
    with pytest.raises(FileNotFoundError) as info:
        if where == 'raw':
            copy([raw, missing], output_dir=str(out))
        else:
            copy(raw, calib={'CALIB': missing}, output_dir=str(out))
    assert missing in str(info.value)
    assert info.value.filename == missing
    assert run_dirs(work_tmp) == before
    assert not out.exists()


@pytest.mark.parametrize('content, words', [
    (b'', 'empty'), (b'this is no FITS file\n' * 10, 'not a FITS file'),
    (b'SIMPL', 'not a FITS file')])
def test_empty_or_non_fits_input_is_value_error(copy, raw, tmp_path,
                                                work_tmp, content, words):
    bad = tmp_path / 'bad.fits'
    bad.write_bytes(content)
    before = run_dirs(work_tmp)
    for call in (lambda: copy(str(bad)),
                 lambda: copy(raw, calib={'CALIB': str(bad)})):
        with pytest.raises(ValueError) as info:
            call()
        assert isinstance(info.value, InputFileError)
        assert str(bad) in str(info.value) and words in str(info.value)
    assert run_dirs(work_tmp) == before


def test_folder_as_input_is_refused(copy, tmp_path):
    with pytest.raises(InputFileError) as info:
        copy(str(tmp_path))
    assert 'folder' in str(info.value)


def test_relative_paths_are_made_absolute(copy, raw, monkeypatch):
    monkeypatch.chdir(os.path.dirname(raw))
    header = copy(os.path.basename(raw)).PRODUCT[0].header
    assert header['OBJECT'] == 'raw1'


def test_hdulist_input(copy):
    data = np.arange(30, dtype=np.float32).reshape(5, 6)
    hdulist = fits.HDUList([fits.PrimaryHDU(data)])
    hdulist[0].header['OBJECT'] = 'in memory'
    product = copy(hdulist).PRODUCT
    assert np.array_equal(product[0].data, data)
    assert product[0].header['OBJECT'] == 'in memory'
    name = product[0].header['ESO PRO REC1 RAW1 NAME']
    assert name.startswith('RAW_') and name.endswith('.fits')


def test_hdulist_inputs_as_list_and_calib(copy, raw):
    a = fits.HDUList([fits.PrimaryHDU(np.full((2, 2), 1.0, np.float32))])
    b = fits.HDUList([fits.PrimaryHDU(np.full((2, 2), 2.0, np.float32))])
    c = fits.HDUList([fits.PrimaryHDU(np.zeros((1, 1), np.float32))])
    res = copy([a, b], calib={'CALIB': c}, param={'per_frame': True})
    # the combined product, then one per raw frame
    assert [float(p[0].data.mean()) for p in res.PRODUCT] == [1.0, 1.0, 2.0]
    header = res.PRODUCT[0][0].header
    names = {header['ESO PRO REC1 RAW1 NAME'], header['ESO PRO REC1 RAW2 NAME']}
    assert len(names) == 2      # named by content: distinct
    assert header['ESO PRO REC1 CAL1 NAME'].startswith('CALIB_')
    # mixed with a file
    res = copy([a, raw])
    assert float(res.PRODUCT[0].data.mean()) == 1.0


def test_non_image_fits_input(copy, tmp_path):
    # No primary image: the recipe makes a 4x4 zero image.
    path = str(tmp_path / 'table.fits')
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name='x', format='E', array=[1.0, 2.0])])]).writeto(path)
    product = copy(path).PRODUCT
    assert product[0].data.shape == (4, 4)


def test_integer_input_image(copy, tmp_path):
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    path = write_image(str(tmp_path / 'int.fits'), data)
    product = copy(path).PRODUCT
    assert np.array_equal(product[0].data, data)
