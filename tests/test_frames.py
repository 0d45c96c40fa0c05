"""Input frames (cpl.frames): declared calibration tags, the checks made on
every input before any process starts, and in-memory inputs."""
from __future__ import annotations

import errno
import gzip
import os
import pickle
import shutil

import numpy as np
import pytest
from astropy.io import fits

import cpl
from cpl.esorex import load_sof
from cpl.frames import FrameConfig, InputFileError, MissingInputFileError
from conftest import run_dirs, write_image


@pytest.fixture
def copy():
    return cpl.Recipe('rtest_copy')


def test_declared_calibration_tags(copy):
    assert [c.tag for c in copy.calib] == ['CALIB']
    config = copy.calib.CALIB
    assert isinstance(config, FrameConfig)
    assert config.tag == 'CALIB' and config.frames is None
    # the recipe's numbers, as python-cpl reports them
    assert (config.min, config.max) == (0, 1) and config.limits == (0, 1)
    assert config.__doc__ == 'one frame (optional)'
    assert copy.calib['CALIB'] is config
    assert 'CALIB' in copy.calib and 'RAW' not in copy.calib
    assert dir(copy.calib) == ['CALIB'] and len(copy.calib) == 1
    assert copy.calib == {'CALIB': None}
    # rtest_params declares no calibration at all
    assert list(cpl.Recipe('rtest_params').calib) == []


def test_declared_counts_are_the_recipes_numbers(system_path):
    # python-cpl reports CPL's numbers: -1 for "no minimum/maximum", so
    # that scripts compare them (f.min > 0) without meeting None
    counts = {c.tag: (c.min, c.max, c.limits, c.__doc__)
              for c in cpl.Recipe('muse_scibasic').calib}
    assert counts['MASTER_BIAS'] == (1, 1, (1, 1), 'one frame')
    assert counts['MASTER_DARK'] == (-1, 1, (0, 1), 'one frame (optional)')
    assert counts['BADPIX_TABLE'] == (
        -1, -1, (0, None), 'one frame or a list of frames (optional)')
    assert [c.min > 0 for c in cpl.Recipe('muse_bias').calib] == [False]


def test_frame_config_made_by_hand():
    # as in python-cpl: counts not above 0 read None
    assert [FrameConfig('T', 0, -1).min, FrameConfig('T', 0, -1).max] == \
        [None, None]
    config = FrameConfig('T', 2, 3)
    assert (config.min, config.max, config.limits) == (2, 3, (2, 3))
    assert config.__doc__ == 'up to 3 frames'
    assert FrameConfig('T').limits == (0, None)


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


def test_calib_from_a_sof_holding_the_raw_frames(copy, raw, calib_file,
                                                 tmp_path, recwarn):
    # calib=load_sof(sof), as scripts written for esorex do: the raw line
    # is the raw input itself, passed once (python-cpl: KeyError 'RAW').
    sof = tmp_path / 'in.sof'
    sof.write_text('%s RAW\n%s CALIB\n' % (raw, calib_file))
    for call in (lambda: copy(raw, calib=load_sof(str(sof))),
                 lambda: copy(load_sof(str(sof)), calib=load_sof(str(sof)))):
        header = call().PRODUCT[0].header
        assert header['ESO PRO REC1 RAW1 NAME'] == 'raw1.fits'
        assert 'ESO PRO REC1 RAW2 NAME' not in header
        assert header['ESO PRO REC1 CAL1 NAME'] == 'calib.fits'
    copy.calib = load_sof(str(sof))
    assert copy.calib == {'CALIB': calib_file}
    assert not [w for w in recwarn if w.category is cpl.CplWarning]


def test_raw_tag_in_calib_of_an_undeclared_recipe(raw, raw2, calib_file,
                                                  tmp_path):
    # Recipes without a frame configuration take any calibration tag:
    # frames under the raw tag join the raw frames, once each.
    r = cpl.Recipe('rtest_crash')
    r.param.mode = 'none'
    sof = tmp_path / 'in.sof'
    sof.write_text('%s RAW\n%s CALIB\n' % (raw, calib_file))
    r.calib = load_sof(str(sof))
    for call in (lambda: r(raw, tag='RAW'),
                 lambda: r(raw, tag='RAW', calib=load_sof(str(sof)))):
        header = call().CRASH_PRODUCT[0].header
        assert header['ESO PRO REC1 RAW1 NAME'] == 'raw1.fits'
        assert 'ESO PRO REC1 RAW2 NAME' not in header
    # Frames the raw input does not hold are passed too, with a warning.
    with pytest.warns(cpl.CplWarning) as caught:
        header = r(raw, tag='RAW', calib={'RAW': raw2}).CRASH_PRODUCT[0].header
    assert raw2 in str(caught[0].message)
    assert 'rtest_crash' in str(caught[0].message)
    assert {header['ESO PRO REC1 RAW1 NAME'],
            header['ESO PRO REC1 RAW2 NAME']} == {'raw1.fits', 'raw2.fits'}


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
    # Scripts catch cpl.CplError around calls (python-cpl's missing file
    # was one, raised by the recipe): so does ours, found up front.
    assert isinstance(info.value, cpl.CplError)
    assert info.value.errno == errno.ENOENT
    assert info.value.recipe == 'rtest_copy'
    assert info.value.tag == ('RAW' if where == 'raw' else 'CALIB')
    assert info.value.code == 9         # CPL_ERROR_FILE_NOT_FOUND
    assert "'rtest_copy'" in str(info.value)
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
        assert isinstance(info.value, cpl.CplError)
        assert str(bad) in str(info.value) and words in str(info.value)
    assert run_dirs(work_tmp) == before


def test_input_errors_pickle(copy, tmp_path):
    missing = str(tmp_path / 'nothere.fits')
    for bad in (missing, str(tmp_path)):
        with pytest.raises(InputFileError) as info:
            copy(bad)
        e = info.value
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e)
        assert (back.recipe, back.tag, back.filename, back.code) == \
            (e.recipe, e.tag, e.filename, e.code)
        assert isinstance(back, MissingInputFileError) == (bad == missing)
    assert back.inputs == [str(tmp_path)]


def test_gzipped_and_tile_compressed_inputs_run(copy, raw, tmp_path):
    # CFITSIO reads both; esorex and python-cpl run them.
    gzipped = str(tmp_path / 'raw1.fits.gz')
    with open(raw, 'rb') as f, gzip.open(gzipped, 'wb') as g:
        shutil.copyfileobj(f, g)
    product = copy(gzipped).PRODUCT
    assert np.array_equal(product[0].data, fits.getdata(raw))
    assert product[0].header['ESO PRO REC1 RAW1 NAME'] == 'raw1.fits.gz'
    packed = str(tmp_path / 'raw1.fits.fz')
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        fits.getdata(raw))]).writeto(packed)
    assert copy(packed).PRODUCT[0].header['ESO PRO REC1 RAW1 NAME'] == \
        'raw1.fits.fz'
    # A gzip stream that is no FITS file inside is still refused.
    bad = str(tmp_path / 'text.fits.gz')
    with gzip.open(bad, 'wb') as g:
        g.write(b'this is no FITS file\n' * 10)
    with pytest.raises(InputFileError, match='not a FITS file'):
        copy(bad)
    damaged = tmp_path / 'damaged.fits.gz'
    damaged.write_bytes(b'\x1f\x8b' + b'\0' * 40)
    with pytest.raises(InputFileError, match='damaged'):
        copy(str(damaged))


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


def test_in_memory_inputs_are_named_and_keyed_as_python_cpl(copy):
    # The names and DATAMD5 python-cpl 0.7.4 gives these two HDULists
    # (measured); cpl.dfs.ProcessingInfo reads them back.
    raw = fits.HDUList([fits.PrimaryHDU(
        np.arange(16, dtype=np.float32).reshape(4, 4))])
    calib = fits.HDUList([fits.PrimaryHDU(np.ones((2, 2), np.float32))])
    header = copy(raw, calib={'CALIB': calib}).PRODUCT[0].header
    assert header['ESO PRO REC1 RAW1 NAME'] == 'RAW_4460ffea.fits'
    assert header['ESO PRO REC1 CAL1 NAME'] == 'CALIB_87138464.fits'
    assert header['ESO PRO REC1 CAL1 DATAMD5'] == \
        '87138464ab534398de2b50d084806b78'
    info = cpl.dfs.ProcessingInfo(header)
    assert info.md5sums == {
        'CALIB_87138464.fits': '87138464ab534398de2b50d084806b78'}
    # The caller's HDULists are left as they were (python-cpl wrote
    # DATAMD5 into their headers).
    assert 'DATAMD5' not in raw[0].header and 'DATAMD5' not in calib[0].header
    assert np.array_equal(raw[0].data, np.arange(16).reshape(4, 4))


def test_datamd5_is_python_cpls(raw):
    # Values python-cpl 0.7.4's md5sum.datamd5 gives (measured): the data
    # in memory, in their own byte order (big-endian when read from a
    # file), tables too, a strided view as its C-ordered copy.
    table = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name='x', format='E', array=[1.0, 2.0]),
         fits.Column(name='data', format='J', array=[3, 4])])])
    with fits.open(raw) as from_file:
        assert cpl.frames.datamd5(from_file) == \
            '707cbcc2699185d9924125a364285042'
    cases = [
        (fits.HDUList([fits.PrimaryHDU(
            np.arange(16, dtype=np.float32).reshape(4, 4))]),
         '4460ffeab7a75ab7a8dd5c061b45b9de'),
        (table, 'c3892c519cef298107fab964e228c286'),
        (fits.HDUList([fits.PrimaryHDU(np.arange(720, dtype=np.float32))]),
         '5daf03162c7082538a508b01f53316ff'),
        (fits.HDUList([fits.PrimaryHDU(
            np.arange(12, dtype=np.uint16).reshape(3, 4))]),
         '143274ef9411262b6712f96598450793'),
        (fits.HDUList([fits.PrimaryHDU(
            np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2])]),
         '37e83f8e141073a2c30f2539628804be')]
    for hdulist, expected in cases:
        assert cpl.frames.datamd5(hdulist) == expected


def test_the_file_of_an_in_memory_input_carries_datamd5(copy, tmp_path):
    from cpl._run import _request
    image = fits.HDUList([fits.PrimaryHDU(np.arange(6, dtype=np.int16)),
                          fits.ImageHDU(np.ones((3, 3)), name='SCI')])
    image[0].header['OBJECT'] = 'in memory'
    table = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name='x', format='E', array=[1.0, 2.0])])])
    spec = copy._spec((image,), {'calib': {'CALIB': table}})
    fields = dict((v.split('=', 1)[1], v.split('=', 1)[0])
                  for k, v in _request(spec, str(tmp_path)) if k == 'frame')
    assert sorted(fields.values()) == ['CALIB', 'RAW']
    for path, hdulist in zip(sorted(fields, key=fields.get), (table, image)):
        md5 = cpl.frames.datamd5(hdulist)
        assert os.path.basename(path) == '%s_%s.fits' % (fields[path],
                                                         md5[:8])
        with fits.open(path) as written:
            assert written[0].header['DATAMD5'] == md5
            assert len(written) == len(hdulist)
            for got, given in zip(written, hdulist):
                assert np.array_equal(got.data, given.data)
    assert image[0].header['OBJECT'] == 'in memory'
    assert 'DATAMD5' not in image[0].header


def test_threaded_calls_see_the_hdulist_as_it_was_when_called(copy):
    # The run starts later (one at a time here): what it reads is what the
    # HDUList held at the call, not at the start of the run.
    cpl.Recipe.set_maxthreads(1)
    hdulist = fits.HDUList([fits.PrimaryHDU(np.zeros((2, 2), np.float32))])
    threads = []
    for value in range(6):
        hdulist[0].data[:] = value
        threads.append(copy(hdulist, threaded=True))
    hdulist[0].data[:] = 99
    assert [float(t.PRODUCT[0].data.mean()) for t in threads] == \
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_in_memory_inputs_of_one_name_are_both_seen(copy):
    # Same tag and data, other headers: python-cpl named both alike and
    # wrote the second over the first.
    a = fits.HDUList([fits.PrimaryHDU(np.ones((2, 2), np.float32))])
    b = fits.HDUList([hdu.copy() for hdu in a])
    a[0].header['OBJECT'], b[0].header['OBJECT'] = 'a', 'b'
    products = copy([a, b], param={'per_frame': True}).PRODUCT
    assert [p[0].header['OBJECT'] for p in products[1:]] == ['a', 'b']


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
