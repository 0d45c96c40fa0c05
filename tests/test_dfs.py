"""cpl.dfs.ProcessingInfo: how a product was made, read from its header."""
from __future__ import annotations

import io
import os

import pytest
from astropy.io import fits

import cpl
from cpl.dfs import ProcessingInfo


@pytest.fixture
def product(raw, raw2, calib_file, tmp_path):
    """rtest_copy's product of raw1 and raw2 with a calibration frame, as a
    file."""
    r = cpl.Recipe('rtest_copy')
    r.param.per_frame = True
    r.calib.CALIB = calib_file
    res = r([raw, raw2], output_dir=str(tmp_path))
    return res.PRODUCT[0]


def test_processing_info_of_a_product_file(product):
    info = ProcessingInfo(product)
    assert info.name == 'rtest_copy'
    assert info.product == 'PRODUCT'
    assert info.orig_filename == 'rtest_copy.fits'
    assert info.pipeline == 'cplrun_test'
    assert info.version == (10203, '1.2.3')
    assert info.cpl_version == 'cpl-7.2.3'
    assert info.tag == 'RAW'
    assert info.raw == ['raw1.fits', 'raw2.fits']
    assert info.calib == {'CALIB': 'calib.fits'}
    assert info.param == {'per_frame': True}
    assert info.md5sum == fits.getheader(product)['DATAMD5']


def test_sources_of_every_kind(product):
    with fits.open(product) as hdulist:
        for source in (hdulist, hdulist[0], hdulist[0].header):
            info = ProcessingInfo(source)
            assert info.name == 'rtest_copy' and info.tag == 'RAW', source
    with pytest.raises(ValueError):
        ProcessingInfo(42)


def test_single_raw_frame_is_a_string(raw):
    res = cpl.Recipe('rtest_params')(raw, param={'int_value': 9,
                                                 'float_value': 2.5,
                                                 'string_value': 'x y'})
    info = ProcessingInfo(res.PARAMS)
    assert info.raw == 'raw1.fits' and info.calib == {}
    assert info.param['int_value'] == 9
    assert info.param['float_value'] == 2.5
    assert info.param['string_value'] == 'x y'
    assert info.param['bool_value'] is False
    assert info.param['stack.sigma.low'] == 3


def header_with_records():
    header = fits.Header()
    header['HIERARCH ESO PRO CATG'] = 'FINAL'
    for rec, (recipe, pipe) in enumerate([('first_step', 'pipe/1.0.2'),
                                          ('second_step', 'pipe/2.10.0')], 1):
        prefix = 'HIERARCH ESO PRO REC%d ' % rec
        header[prefix + 'ID'] = recipe
        header[prefix + 'PIPE ID'] = pipe
        header[prefix + 'DRS ID'] = 'cpl-7.2.3'
        header[prefix + 'RAW1 NAME'] = 'in%d.fits' % rec
        header[prefix + 'RAW1 CATG'] = 'RAW%d' % rec
        header[prefix + 'CAL1 NAME'] = 'a.fits'
        header[prefix + 'CAL1 CATG'] = 'FLAT'
        header[prefix + 'CAL2 NAME'] = 'b.fits'
        header[prefix + 'CAL2 CATG'] = 'FLAT'
        header[prefix + 'PARAM1 NAME'] = 'method'
        header[prefix + 'PARAM1 VALUE'] = 'MEDIAN'
        header[prefix + 'PARAM2 NAME'] = 'method'
        header[prefix + 'PARAM2 VALUE'] = '3'
        header[prefix + 'PARAM3 NAME'] = 'flag'
        header[prefix + 'PARAM3 VALUE'] = 'true'
    return header


def test_several_records():
    header = header_with_records()
    last = ProcessingInfo(header)
    assert last.name == 'second_step'
    assert last.version == (21000, '2.10.0')
    first = ProcessingInfo(header, 1)
    assert first.name == 'first_step' and first.version == (10002, '1.0.2')
    assert ProcessingInfo(header, -2).name == 'first_step'
    assert [i.name for i in ProcessingInfo.list(header)] == [
        'first_step', 'second_step']
    assert first.tag == 'RAW1' and first.raw == 'in1.fits'
    assert first.calib == {'FLAT': ['a.fits', 'b.fits']}
    assert first.product == 'FINAL'


def test_repeated_parameter_names_give_lists():
    # UVES products record some parameter names more than once.
    info = ProcessingInfo(header_with_records())
    assert info.param == {'method': ['MEDIAN', 3], 'flag': True}


def test_create_recipe(product, calib_file):
    info = ProcessingInfo(product)
    r = info.create_recipe()
    assert isinstance(r, cpl.Recipe) and r.__name__ == 'rtest_copy'
    assert r.param.per_frame.value is True
    assert r.calib.CALIB.frames == 'calib.fits'
    assert r.tag == 'RAW'


def test_create_script_reruns_the_step(product, raw, monkeypatch):
    info = ProcessingInfo(product)
    out = io.StringIO()
    info.create_script(out)
    script = out.getvalue()
    assert "cpl.Recipe('rtest_copy', version=10203)" in script
    assert "rtest_copy.param['per_frame'] = True" in script
    assert "rtest_copy.calib['CALIB'] = 'calib.fits'" in script
    # The names are relative to where the inputs are.
    monkeypatch.chdir(os.path.dirname(raw))
    namespace = {}
    exec(compile(script, 'rerun.py', 'exec'), namespace)
    res = namespace['res']
    assert [p[0].header['PIPEFILE'] for p in res.PRODUCT] == [
        'rtest_copy.fits', 'rtest_copy_0000.fits', 'rtest_copy_0001.fits']
    rerun = ProcessingInfo(res.PRODUCT[0])
    assert (rerun.raw, rerun.calib, rerun.param) == (info.raw, info.calib,
                                                     info.param)


def test_create_script_to_a_file(product, tmp_path):
    path = str(tmp_path / 'rerun.py')
    ProcessingInfo(product).create_script(path)
    with open(path) as f:
        assert f.read().startswith('import cpl\n')


def test_text(product, capsys):
    info = ProcessingInfo(product)
    text = str(info)
    assert text.startswith('Recipe: rtest_copy, Version (10203')
    assert ' cplrun_test.rtest_copy.per_frame = True' in text
    assert ' calib.fits CALIB' in text
    assert ' raw1.fits RAW' in text and ' raw2.fits RAW' in text
    info.printinfo()
    assert capsys.readouterr().out == text + '\n'


def data_md5(path):
    """The MD5 of a FITS file's data units, as DATAMD5 is defined."""
    import hashlib
    digest = hashlib.md5()
    with fits.open(path) as hdus:
        for hdu in hdus:
            offset, size = hdu.fileinfo()['datLoc'], hdu.fileinfo()['datSpan']
            with open(path, 'rb') as f:
                f.seek(offset)
                digest.update(f.read(size))
    return digest.hexdigest()


def test_products_are_signed_as_esorex_signs_them(product):
    # DATAMD5 was 'Not computed' and CHECKSUM missing (esorex and
    # python-cpl compute both)
    info = ProcessingInfo(product)
    assert info.md5sum == data_md5(product)
    with fits.open(product, checksum=True) as hdus:
        assert 'CHECKSUM' in hdus[0].header and 'DATASUM' in hdus[0].header


@pytest.mark.parametrize('variable', ['ESOREX_NO_DATAMD5',
                                      'ESOREX_NO_CHECKSUM'])
def test_esorex_switches_leave_products_unsigned(raw, tmp_path, variable):
    r = cpl.Recipe('rtest_copy')
    r.env[variable] = 'TRUE'
    path = r(raw, output_dir=str(tmp_path)).PRODUCT
    header = fits.getheader(path)
    # what esorex writes then: CPL drops the 'Not computed' placeholder
    if variable == 'ESOREX_NO_DATAMD5':
        assert 'DATAMD5' not in header and 'CHECKSUM' in header
    else:
        assert header['DATAMD5'] == data_md5(path)
        assert 'CHECKSUM' not in header
