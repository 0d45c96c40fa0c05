"""Bad input: unknown recipes and parameters, values of the wrong type,
out of range or not allowed, awkward paths (spaces, quotes, unicode,
leading dashes, shell syntax), missing, empty, truncated or non-FITS
inputs, SOFs with unknown tags, duplicates, comments, relative paths and
CRLF line ends, .rc files with bad lines.

Each gets one clear error before anything runs (no recipe process, no run
folder), or a clear failed status; nothing is lost or overwritten."""
from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

import cpl
from cpl import parallel
from cpl.esorex import SofError, load_rc, load_sof
from cpl.frames import InputFileError
from cpl.parallel import Workflow, run_batch
from conftest import live_recipe_processes, remove_run_dir, run_dirs, write_image

OPTS = dict(progress=False)


@pytest.fixture
def nothing_runs(work_tmp, ran):
    """The block starts no run and leaves no run folder."""
    before = set(run_dirs(work_tmp))
    yield
    assert ran == []
    assert set(run_dirs(work_tmp)) == before
    assert live_recipe_processes() == []


def image(path, value=1.0):
    return write_image(str(path), np.full((3, 3), value, dtype=np.float32),
                       OBJECT='bad input')


# --- recipes and parameters --------------------------------------------------------
def test_unknown_recipe(nothing_runs, raw):
    with pytest.raises(cpl.RecipeNotFoundError) as info:
        cpl.Recipe('rtest_cpoy')
    assert "'rtest_cpoy'" in str(info.value)
    assert 'did you mean rtest_copy' in str(info.value)
    with pytest.raises(cpl.RecipeNotFoundError):
        run_batch('no_such_recipe', [raw], **OPTS)
    with pytest.raises(cpl.RecipeNotFoundError):
        Workflow().add('no_such_recipe', raw)


BAD_PARAMS = [
    ({'no_such': 1}, KeyError, "has no parameter 'no_such'"),
    ({'int_valeu': 1}, KeyError, "did you mean 'int_value'"),
    ({'int_value': 'seven'}, TypeError, 'takes a int'),
    ({'int_value': 2**32 + 7}, ValueError, 'takes a C int'),
    ({'bool_value': 'maybe'}, TypeError, 'takes a bool'),
    ({'float_value': [1.0]}, TypeError, 'takes a float'),
    ({'string_value': b'3'}, TypeError, 'takes a str'),
    ({'bool_value': 'off'}, ValueError, 'python-cpl passed it'),
    ({'int_range': 11}, ValueError, 'outside the range 0..10'),
    ({'float_range': -0.5}, ValueError, 'outside the range'),
    ({'enum_string': 'mode'}, ValueError, 'choose one of'),
    ({'enum_int': 3}, ValueError, 'choose one of'),
    ({'stack.method': 'median'}, ValueError, 'choose one of'),
    ({'string_value': 'a\0b'}, ValueError, 'NUL'),
]


@pytest.mark.parametrize('param, error, text', BAD_PARAMS)
def test_bad_parameter_values(nothing_runs, raw, tmp_path, param, error,
                              text):
    r = cpl.Recipe('rtest_params')
    with pytest.raises(error) as info:
        r(raw, param=param)
    assert text in str(info.value)
    assert "rtest_params" in str(info.value)
    # the same through a batch: refused when the run is added
    with pytest.raises(error):
        run_batch(r, [raw], param=param, output_dir=str(tmp_path / 'o'),
                  **OPTS)
    assert not (tmp_path / 'o').exists()
    # and when set on the recipe: the value it had is kept
    name = next(iter(param))
    if name in r.param:
        before = r.param[name].value
        with pytest.raises(error):
            r.param[name] = param[name]
        assert r.param[name].value == before


def test_parameters_reach_the_recipe_verbatim(raw):
    odd = ' -x "quoted" \'single\' $HOME `id` ; | & > < * ? \\ \u00e9\u4e2d '
    res = cpl.Recipe('rtest_params')(raw, param={'string_value': odd})
    assert "cplrun.rtest_params.string_value = '%s'" % odd in \
        [m.split(': ', 1)[1] for m in res.log.info]
    ascii_odd = ' -x "quoted" \'single\' $HOME `id` ; | & > < * ?'
    res = cpl.Recipe('rtest_params')(raw, param={'string_value': ascii_odd})
    assert res.PARAMS[0].header['ESO QC STRING_VALUE'] == ascii_odd


# --- paths -------------------------------------------------------------------------------------
AWKWARD = ['with space.fits', 'quote"d.fits', "apo'strophe.fits",
           'caf\u00e9 \u4e2d\u6587.fits', '-leading-dash.fits',
           '--help.fits', '$(touch PWNED).fits', 'semi;colon&amp.fits',
           'new\nline.fits', ' .fits']


@pytest.mark.parametrize('name', AWKWARD)
def test_awkward_input_and_output_paths(tmp_path, name, monkeypatch):
    folder = tmp_path / ('-out dir "%s"' % name.replace('/', '_'))
    folder.mkdir()
    raw = image(folder / name, 7.0)
    monkeypatch.chdir(folder)
    r = cpl.Recipe('rtest_copy')
    # relative, and starting with a dash: still a file, not an option
    res = r(os.path.basename(raw), output_dir=str(folder / 'products'))
    assert os.path.dirname(res.PRODUCT) == str(folder / 'products')
    header = fits.getheader(res.PRODUCT)
    if name.isascii() and name.isprintable():   # else FITS cannot hold it
        assert header['ESO PRO REC1 RAW1 NAME'] == name
    np.testing.assert_array_equal(fits.getdata(res.PRODUCT),
                                  np.full((3, 3), 7.0, dtype=np.float32))
    assert not os.path.exists(tmp_path / 'PWNED')
    assert not os.path.exists(folder / 'PWNED')


def test_input_path_not_utf8(tmp_path):
    name = os.fsdecode(b'latin1-\xe9\xff.fits')
    raw = image(os.path.join(str(tmp_path), name))
    res = cpl.Recipe('rtest_copy')(raw, output_dir=str(tmp_path / 'o'))
    assert os.path.isfile(res.PRODUCT)


@pytest.mark.parametrize('content, error, text', [
    (None, FileNotFoundError, 'no such file'),
    (b'', InputFileError, 'is empty'),
    (b'hello, I am not FITS\n' * 10, InputFileError, 'is not a FITS file'),
    ('folder', InputFileError, 'is a folder'),
    ('nul', InputFileError, 'NUL'),
])
def test_inputs_refused_before_anything_runs(nothing_runs, tmp_path, content,
                                             error, text):
    path = str(tmp_path / 'input.fits')
    if content == 'folder':
        os.mkdir(path)
    elif content == 'nul':
        path = str(tmp_path / 'in\0put.fits')
    elif content is not None:
        with open(path, 'wb') as f:
            f.write(content)
    with pytest.raises(error) as info:
        cpl.Recipe('rtest_copy')(path)
    message = str(info.value)
    assert text in message and 'rtest_copy' in message
    assert os.path.basename(path).replace('\0', '') in message.replace(
        '\0', '').replace('\\x00', '')


def test_a_truncated_input_fails_the_run_clearly(tmp_path, raw):
    data = open(raw, 'rb').read()
    for cut, name in ((2000, 'half_header.fits'),
                      (2880 + 10, 'half_data.fits')):
        bad = tmp_path / name
        bad.write_bytes(data[:cut])
        with pytest.raises(cpl.CplError) as info:
            cpl.Recipe('rtest_copy')(str(bad))
        e = info.value
        assert str(bad) in str(e) and 'rtest_copy' in str(e)
        assert e.log_file in str(e)
        remove_run_dir(e)
    # in a batch: that run fails, the others are not disturbed
    out = tmp_path / 'out'
    report = run_batch('rtest_copy', [raw, str(tmp_path / 'half_data.fits'),
                                      raw], names=['a', 'bad', 'b'],
                       output_dir=str(out), **OPTS)
    assert [r.status for r in report] == ['success', 'failed', 'success']
    assert 'half_data.fits' in report['bad'].error


def test_a_missing_input_in_a_batch_is_named_before_anything_runs(
        nothing_runs, tmp_path, raw):
    missing = [str(tmp_path / 'gone 1.fits'), str(tmp_path / 'gone-2.fits')]
    with pytest.raises(parallel.MissingInputsError) as info:
        run_batch('rtest_copy', [raw] + missing,
                  output_dir=str(tmp_path / 'out'), **OPTS)
    for path in missing:
        assert path in str(info.value)
    assert not (tmp_path / 'out').exists()


def test_existing_products_are_never_overwritten(tmp_path, raw, raw2):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'rtest_copy.fits').write_bytes(b'precious')
    res = cpl.Recipe('rtest_copy')(raw2, output_dir=str(out))
    assert res.PRODUCT == str(out / 'rtest_copy-1.fits')
    assert (out / 'rtest_copy.fits').read_bytes() == b'precious'
    # a failing run into the same folder takes nothing away either
    with pytest.raises(cpl.CplError) as info:
        cpl.Recipe('rtest_error')(raw, tag='RAW', output_dir=str(out))
    assert sorted(os.listdir(out)) == ['.cplrun-work', 'rtest_copy-1.fits',
                                       'rtest_copy.fits']
    remove_run_dir(info.value)


# --- SOF files ------------------------------------------------------------------------------
def test_sof_comments_duplicates_crlf_and_relative_paths(tmp_path,
                                                         monkeypatch):
    data = tmp_path / 'data'
    data.mkdir()
    raws = [image(data / ('r%d.fits' % i), i) for i in range(2)]
    calib = image(data / 'calib.fits')
    text = ('# a comment\r\n'
            '\r\n'
            '   # an indented comment\r\n'
            'data/r0.fits RAW\r\n'
            'data/r1.fits\tRAW  RAW\r\n'
            'data/r0.fits RAW\r\n'            # duplicate: kept once
            '%s CALIB CALIB\r\n' % calib)
    sof = tmp_path / 'in.sof'
    sof.write_bytes(text.encode())
    lf = tmp_path / 'lf.sof'
    lf.write_bytes(text.replace('\r\n', '\n').encode())
    bom = tmp_path / 'bom.sof'
    bom.write_bytes(b'\xef\xbb\xbf' + text.encode())
    expected = {'RAW': ['data/r0.fits', 'data/r1.fits'], 'CALIB': calib}
    assert load_sof(str(sof)) == load_sof(str(lf)) == load_sof(str(bom)) \
        == expected
    # relative paths are relative to the current folder, as in esorex
    monkeypatch.chdir(tmp_path)
    report = run_batch('rtest_copy', [str(sof)], output_dir='out', **OPTS)
    assert report.ok, report.runs[0].error
    header = fits.getheader(report.runs[0].products['PRODUCT'])
    assert header['ESO PRO REC1 RAW2 NAME'] == 'r1.fits'
    assert 'ESO PRO REC1 RAW3 NAME' not in header
    assert header['ESO PRO REC1 CAL1 NAME'] == 'calib.fits'
    assert raws


@pytest.mark.parametrize('line, text', [
    ('only_a_path.fits', 'expected "PATH TAG [GROUP]"'),
    ('/a/b c.fits RAW', 'cannot be written in a SOF'),
    ('/a/b c d.fits', 'cannot be written in a SOF'),
    ('/a b c d', 'expected "PATH TAG [GROUP]"'),
])
def test_sof_bad_lines(nothing_runs, tmp_path, line, text):
    sof = tmp_path / 'bad.sof'
    sof.write_text('/ok.fits RAW\n%s\n' % line)
    with pytest.raises(SofError) as info:
        load_sof(str(sof))
    assert 'line 2' in str(info.value) and str(sof) in str(info.value)
    assert text in str(info.value)
    with pytest.raises(SofError):
        run_batch('rtest_copy', [str(sof)], output_dir=str(tmp_path / 'o'),
                  **OPTS)
    assert not (tmp_path / 'o').exists()


def test_a_missing_sof_file(nothing_runs, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_sof(str(tmp_path / 'nowhere.sof'))
    assert 'nowhere.sof' in str(info.value)
    with pytest.raises(FileNotFoundError):
        run_batch('rtest_copy', [str(tmp_path / 'nowhere.sof')], **OPTS)


def test_sof_with_an_unknown_tag(nothing_runs, tmp_path, raw, calib_file):
    sof = tmp_path / 'unknown.sof'
    sof.write_text('%s RAW\n%s MYSTERY\n' % (raw, calib_file))
    r = cpl.Recipe('rtest_copy')        # declares RAW and CALIB only
    with pytest.raises(KeyError) as info:
        r.calib = str(sof)
    assert 'MYSTERY' in str(info.value) and 'CALIB' in str(info.value)
    with pytest.raises(KeyError) as info:
        run_batch(r, [str(sof)], output_dir=str(tmp_path / 'o'), **OPTS)
    assert 'MYSTERY' in str(info.value)
    assert not (tmp_path / 'o').exists()


def test_sof_with_an_unknown_tag_for_a_recipe_without_declared_tags(
        tmp_path, raw, calib_file):
    # esorex passes every frame; the recipe ignores what it does not use
    sof = tmp_path / 'unknown.sof'
    sof.write_text('%s RAW\n%s MYSTERY\n' % (raw, calib_file))
    r = cpl.Recipe('rtest_crash')
    r.calib = str(sof)
    res = r(raw, tag='RAW', param={'mode': 'none'})
    assert "ignoring frame %s with tag MYSTERY" % calib_file in \
        [m.split(': ', 1)[1] for m in res.log.info]
    report = run_batch('rtest_crash', [str(sof)], tag='RAW',
                       param={'mode': 'none'},
                       output_dir=str(tmp_path / 'o'), **OPTS)
    assert report.ok, report.runs[0].error


# --- .rc files --------------------------------------------------------------------------------
@pytest.mark.parametrize('line, error, text', [
    ('no equals sign', SofError, 'expected "name=value"'),
    ('two words=1', SofError, 'expected "name=value"'),
    ('=value', SofError, 'expected "name=value"'),
    ('cplrun.rtest_params.int_valeu=7', KeyError, "did you mean 'int_value'"),
    ('cplrun.rtest_params.int_value=seven', TypeError, 'takes a int'),
    ('cplrun.rtest_params.int_range=99', ValueError, 'outside the range'),
])
def test_rc_bad_lines(nothing_runs, tmp_path, line, error, text):
    rc = tmp_path / 'bad.rc'
    rc.write_text('# comment\ncplrun.rtest_params.int_value=5\n%s\n' % line)
    r = cpl.Recipe('rtest_params')
    r.param.float_value = 2.5
    with pytest.raises(error) as info:
        r.param = str(rc)
    assert text in str(info.value)
    if error is SofError:
        assert 'line 3' in str(info.value) and str(rc) in str(info.value)
    # the recipe's parameters are as they were
    assert r.param.float_value.value == 2.5
    assert r.param.int_value.value is None


def test_rc_of_other_recipes_and_esorex_is_passed_over(tmp_path, raw):
    rc = tmp_path / 'mixed.rc'
    rc.write_bytes(b'esorex.caller.recipe-dir=/x\r\n'
                   b'uves.uves_cal_mbias.debug=true\r\n'
                   b'cplrun.rtest_params.int_value = 9 \r\n')
    assert load_rc(str(rc))['cplrun.rtest_params.int_value'] == '9'
    r = cpl.Recipe('rtest_params')
    r.param = str(rc)
    assert r(raw).PARAMS[0].header['ESO QC INT_VALUE'] == 9
