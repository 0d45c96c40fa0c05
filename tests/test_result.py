"""What a call gives back (cpl.result): products, log and statistics, and
the exceptions for errors, crashes, kills and timeouts."""
from __future__ import annotations

import logging
import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from astropy.io import fits

import cpl
from cpl.logger import LogList
from cpl.result import Stat
from conftest import (is_gone, manifest_step, pipeline_recipe,
                      recipe_processes, remove_run_dir, run_dirs, wait_until)

HAVE_GDB = shutil.which('gdb') is not None


def recipe(name, **params):
    r = cpl.Recipe(name)
    if r.tag is None:
        r.tag = 'RAW'
    for key, value in params.items():
        r.param[key] = value
    return r


# --- products -----------------------------------------------------------------
def test_products_in_memory_by_default(raw):
    res = cpl.Recipe('rtest_copy')(raw)
    assert isinstance(res, cpl.Result)
    assert res.tags == {'PRODUCT'}
    assert isinstance(res.PRODUCT, fits.HDUList)
    assert res['PRODUCT'] is res.PRODUCT
    assert 'PRODUCT' in res and 'OTHER' not in res and len(res) == 1
    assert list(res) == [('PRODUCT', res.PRODUCT)]
    with pytest.raises(KeyError):
        res['OTHER']
    assert np.array_equal(res.PRODUCT[0].data, fits.getdata(raw))
    header = res.PRODUCT[0].header
    assert header['ESO PRO CATG'] == 'PRODUCT'
    assert header['PIPEFILE'] == 'rtest_copy.fits'
    assert res.dir is None
    assert repr(res) == 'Result(PRODUCT)'


def test_products_as_paths_with_output_dir(raw, tmp_path):
    out = str(tmp_path / 'out')
    res = cpl.Recipe('rtest_copy')(raw, output_dir=out)
    assert res.PRODUCT == os.path.join(out, 'rtest_copy.fits')
    assert os.path.isfile(res.PRODUCT)
    assert fits.getheader(res.PRODUCT)['ESO PRO CATG'] == 'PRODUCT'
    assert res.dir == out
    # the recipe attribute does the same
    r = cpl.Recipe('rtest_copy')
    r.output_dir = str(tmp_path / 'out2')
    assert r(raw).PRODUCT == str(tmp_path / 'out2' / 'rtest_copy.fits')


def test_relative_output_dir(raw, tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    res = cpl.Recipe('rtest_copy')(raw, output_dir='rel')
    assert res.PRODUCT == str(tmp_path / 'rel' / 'rtest_copy.fits')
    assert os.path.isfile(res.PRODUCT)


def test_per_frame_products_come_as_lists(raw_images, tmp_path):
    r = cpl.Recipe('rtest_copy')
    r.param.per_frame = True
    res = r(raw_images[:3])
    assert isinstance(res.PRODUCT, list) and len(res.PRODUCT) == 4
    assert all(isinstance(p, fits.HDUList) for p in res.PRODUCT)
    assert [p[0].header['PIPEFILE'] for p in res.PRODUCT] == [
        'rtest_copy.fits', 'rtest_copy_0000.fits', 'rtest_copy_0001.fits',
        'rtest_copy_0002.fits']
    assert [float(p[0].data.mean()) for p in res.PRODUCT] == [0, 0, 1, 2]
    res = r(raw_images[:2], output_dir=str(tmp_path))
    assert [os.path.basename(p) for p in res.PRODUCT] == [
        'rtest_copy.fits', 'rtest_copy_0000.fits', 'rtest_copy_0001.fits']
    assert all(os.path.isfile(p) for p in res.PRODUCT)


def test_one_element_list_gives_list_products(raw):
    # python-cpl's rule: a raw list of one gives a list of products.
    res = cpl.Recipe('rtest_copy')([raw])
    assert isinstance(res.PRODUCT, list) and len(res.PRODUCT) == 1
    assert isinstance(res.PRODUCT[0], fits.HDUList)
    res = cpl.Recipe('rtest_copy')(raw)
    assert isinstance(res.PRODUCT, fits.HDUList)


def test_log_and_stat(raw):
    res = cpl.Recipe('rtest_copy')(raw)
    assert isinstance(res.log, LogList)
    assert all(isinstance(rec, logging.LogRecord) for rec in res.log)
    assert 'rtest_save: saved product rtest_copy.fits (PRODUCT)' \
        in res.log.info
    assert res.log.warning == [] and res.log.error == []
    assert len(res.log.debug) >= len(res.log.info) > 0
    stat = res.stat
    assert isinstance(stat, Stat)
    assert stat.return_code == 0
    assert stat.user_time >= 0 and stat.sys_time >= 0
    assert 0 < stat.wall_time < 30
    assert stat.max_rss_mb > 1
    assert stat.memory_is_empty is None
    assert res.error is None


def test_cpu_time_is_measured(raw):
    # rtest_biglog formats 200000 lines: measurable CPU time.
    res = recipe('rtest_biglog', lines=200000)(raw)
    assert res.stat.user_time + res.stat.sys_time > 0.01
    assert res.stat.wall_time >= res.stat.user_time * 0.5


def test_result_pickles(raw, raw_images, tmp_path):
    res = cpl.Recipe('rtest_copy')(raw)
    copy = pickle.loads(pickle.dumps(res))
    assert copy.tags == {'PRODUCT'}
    assert isinstance(copy.PRODUCT, fits.HDUList)
    assert np.array_equal(copy.PRODUCT[0].data, res.PRODUCT[0].data)
    assert copy.PRODUCT[0].header['ESO PRO CATG'] == 'PRODUCT'
    assert copy.stat.return_code == 0
    assert copy.stat.wall_time == res.stat.wall_time
    # list products and paths
    r = cpl.Recipe('rtest_copy')
    r.param.per_frame = True
    res = r(raw_images[:2])
    copy = pickle.loads(pickle.dumps(res))
    assert [float(p[0].data.mean()) for p in copy.PRODUCT] == [0, 0, 1]
    res = r(raw_images[:2], output_dir=str(tmp_path))
    copy = pickle.loads(pickle.dumps(res))
    assert copy.PRODUCT == res.PRODUCT and copy.dir == str(tmp_path)


def test_result_log_survives_pickling(raw):
    # A handler on the way may hang anything on the records; a lock stands
    # for what does not pickle.
    class Tagging(logging.Handler):
        def emit(self, record):
            record.lock = threading.Lock()
    handler = Tagging()
    cpl_logger = logging.getLogger('cpl')
    saved_level = cpl_logger.level
    cpl_logger.addHandler(handler)
    cpl_logger.setLevel(logging.DEBUG)
    try:
        res = cpl.Recipe('rtest_copy')(raw)
    finally:
        cpl_logger.removeHandler(handler)
        cpl_logger.setLevel(saved_level)
    assert any(hasattr(rec, 'lock') for rec in res.log)
    copy = pickle.loads(pickle.dumps(res))
    assert isinstance(copy.log, LogList)
    assert all(isinstance(rec, logging.LogRecord) for rec in copy.log)
    assert [(rec.name, rec.levelno, rec.funcName, rec.getMessage(),
             rec.created) for rec in copy.log] == \
        [(rec.name, rec.levelno, rec.funcName, rec.getMessage(),
          rec.created) for rec in res.log]
    assert copy.log.info == res.log.info
    assert 'rtest_save: saved product rtest_copy.fits (PRODUCT)' \
        in copy.log.info
    assert not any(hasattr(rec, 'lock') for rec in copy.log)


def test_a_shortened_log_says_so_after_pickling(raw, monkeypatch):
    # a Result sent back by a worker process (ProcessPoolExecutor, Dask)
    # must not pass for a whole log: what was left out, and where the
    # whole log is, travel with it
    from cpl import logger
    monkeypatch.setattr(logger, 'LOG_HEAD_RECORDS', 5)
    monkeypatch.setattr(logger, 'LOG_TAIL_RECORDS', 5)
    r = cpl.Recipe('rtest_biglog')
    res = r(raw, tag='RAW', param={'lines': 50})
    assert res.log.omitted > 0 and res.log.file
    copy = pickle.loads(pickle.dumps(res))
    assert (copy.log.omitted, copy.log.cut, copy.log.file) == \
        (res.log.omitted, res.log.cut, res.log.file)
    assert len(copy.log) == len(res.log)


# --- recipe errors ---------------------------------------------------------------------
def test_recipe_error_raises_cpl_error_with_chain(raw, tmp_path):
    out = tmp_path / 'out'
    with pytest.raises(cpl.CplError) as info:
        recipe('rtest_error')(raw, output_dir=str(out))
    e = info.value
    try:
        messages = [err.msg for err in e]
        assert any('inner failure: bad value' in m for m in messages)
        assert any('outer failure' in m for m in messages)
        assert len(messages) == 2
        assert e.code == 14 and e.function == 'rtest_error_inner'
        assert e.next_error.code == 10
        assert e.next_error.function == 'rtest_error_outer'
        assert e.file.endswith('cplrun_test_recipes.c') and e.line > 0
        assert e.retval == 10 and e.recipe == 'rtest_error'
        assert 'inner failure: bad value' in str(e)
        assert 'outer failure' in str(e)
        # the log and the files are kept, and the error says where
        assert os.path.isfile(e.log_file)
        assert os.path.isdir(e.workdir)
        assert os.path.dirname(e.log_file) == e.workdir
        assert 'files kept in %s' % e.workdir in str(e)
        assert os.path.isfile(os.path.join(e.workdir, 'partial.fits'))
        with open(e.log_file) as f:
            assert 'rtest_error failed' in f.read()
        assert any('rtest_error failed' in m for m in e.log.error)
        # partial.fits is neither returned nor moved to output_dir
        assert not (out / 'partial.fits').exists()
        if out.exists():
            assert [n for n in os.listdir(str(out))
                    if n.endswith('.fits')] == []
        # it pickles, with its log
        copy = pickle.loads(pickle.dumps(e))
        assert [x.msg for x in copy] == messages
        assert copy.workdir == e.workdir
        assert copy.log.error == e.log.error and copy.log.error
    finally:
        remove_run_dir(e)


def test_recipe_error_in_memory_mode_keeps_the_folder(raw, work_tmp):
    before = set(run_dirs(work_tmp))
    with pytest.raises(cpl.CplError) as info:
        recipe('rtest_error')(raw)
    e = info.value
    try:
        assert set(run_dirs(work_tmp)) - before == {
            os.path.basename(e.workdir)}
        assert os.path.dirname(e.workdir) == work_tmp
    finally:
        remove_run_dir(e)


def test_no_error_without_failure(raw):
    res = recipe('rtest_error', fail=False)(raw)
    assert res.tags == {'ERROR_PRODUCT'} and res.error is None


# --- crashes -------------------------------------------------------------------------
@pytest.mark.parametrize('mode, signum', [
    ('segv', signal.SIGSEGV), ('abort', signal.SIGABRT),
    ('doublefree', signal.SIGABRT)])
def test_crash_raises_recipe_crash(raw, mode, signum, tmp_path):
    out = tmp_path / 'out'
    with pytest.raises(cpl.RecipeCrash) as info:
        recipe('rtest_crash', mode=mode)(raw, output_dir=str(out))
    e = info.value
    try:
        assert not isinstance(e, cpl.RecipeTimeout)
        assert e.signal == signum
        assert e.signal_name == signal.Signals(signum).name
        assert signal.Signals(signum).name in str(e)
        assert e.exit_code is None and e.recipe == 'rtest_crash'
        assert os.path.isdir(e.workdir) and e.workdir in str(e)
        assert os.path.isfile(os.path.join(e.workdir, 'partial.fits'))
        assert not (out / 'partial.fits').exists()
        with open(e.log_file) as f:
            assert 'about to crash: %s' % mode in f.read()
        if mode == 'doublefree':
            with open(os.path.join(e.workdir, '.cplrun-output')) as f:
                assert 'double free' in f.read()
        copy = pickle.loads(pickle.dumps(e))
        assert copy.signal == signum and str(copy) == str(e)
    finally:
        remove_run_dir(e)


@pytest.mark.skipif(not HAVE_GDB, reason='gdb is not installed')
def test_crash_backtrace_names_the_recipe_function(raw):
    with pytest.raises(cpl.RecipeCrash) as info:
        recipe('rtest_crash', mode='segv')(raw)
    e = info.value
    try:
        functions = [el.func for el in e.elements]
        assert 'rtest_crash' in functions
        assert 'rtest_exec' in functions
        # most recent call last: the recipe comes after its caller
        assert functions.index('rtest_crash') > functions.index('rtest_exec')
        element = e.elements[functions.index('rtest_crash')]
        assert element.filename.endswith('cplrun_test_recipes.c')
        assert element.line > 0
        assert 'in rtest_crash' in str(e)
        assert 'Recipe traceback (most recent call last)' in str(e)
        assert e.lines and any('rtest_crash' in line for line in e.lines)
    finally:
        remove_run_dir(e)


def test_crash_without_gdb_is_fast(raw):
    r = recipe('rtest_crash', mode='segv')
    r.env['CPLRUN_GDB'] = ''
    start = time.monotonic()
    with pytest.raises(cpl.RecipeCrash) as info:
        r(raw)
    elapsed = time.monotonic() - start
    e = info.value
    try:
        assert elapsed < 5
        assert e.signal == signal.SIGSEGV and 'SIGSEGV' in str(e)
        # glibc's backtrace(), not gdb's
        text = ''.join(e.lines)
        assert text.startswith('signal 11')
        assert 'cplrun_test_recipes.so' in text
        assert 'gdb' not in text.lower() and not e.elements
    finally:
        remove_run_dir(e)


def test_crash_without_gdb_from_os_environ(raw, recipe_dir, tmp_path):
    script = (
        'import os, sys, time, cpl\n'
        'os.environ["CPLRUN_GDB"] = ""\n'
        'cpl.Recipe.path = sys.argv[1]\n'
        'r = cpl.Recipe("rtest_crash")\n'
        'start = time.monotonic()\n'
        'try:\n'
        '    r(sys.argv[2], tag="RAW", param={"mode": "abort"})\n'
        'except cpl.RecipeCrash as e:\n'
        '    print(e.signal, round(time.monotonic() - start, 3))\n'
        '    print(e.lines[0].strip())\n')
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, '-c', script, recipe_dir, raw],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    first, second = proc.stdout.decode().splitlines()[:2]
    signum, elapsed = first.split()
    assert int(signum) == signal.SIGABRT and float(elapsed) < 5
    assert second == 'signal 6'


@pytest.mark.parametrize('code', [3, 0])
def test_exit_inside_the_recipe(raw, code):
    with pytest.raises(cpl.RecipeCrash) as info:
        recipe('rtest_crash', mode='exit', exit_code=code)(raw)
    e = info.value
    try:
        assert e.exit_code == code and e.signal is None
        assert 'exit status %d' % code in str(e)
    finally:
        remove_run_dir(e)


def test_killed_from_outside(raw):
    t = recipe('rtest_hang')(raw, threaded=True)
    try:
        def hang_process():
            for p in recipe_processes():
                try:
                    if os.path.basename(p.cwd()).startswith('rtest_hang-'):
                        return p
                except psutil.Error:
                    pass
            return None
        assert wait_until(lambda: hang_process() is not None, 10)
        os.kill(hang_process().pid, signal.SIGKILL)
        with pytest.raises(cpl.RecipeCrash) as info:
            t.result(timeout=20)
    finally:
        t.cancel()
    e = info.value
    try:
        assert e.signal == signal.SIGKILL
        assert 'SIGKILL' in str(e)
        assert not isinstance(e, cpl.RecipeTimeout)
    finally:
        remove_run_dir(e)


# --- timeouts --------------------------------------------------------------------------
def test_timeout(raw):
    start = time.monotonic()
    with pytest.raises(cpl.RecipeTimeout) as info:
        recipe('rtest_hang')(raw, timeout=1)
    elapsed = time.monotonic() - start
    e = info.value
    try:
        assert 0.9 <= elapsed < 4
        assert isinstance(e, TimeoutError) and isinstance(e, cpl.RecipeCrash)
        assert 'timed out after 1 s' in str(e)
        with open(e.log_file) as f:
            assert 'hanging' in f.read()
    finally:
        remove_run_dir(e)


def test_timeout_from_the_recipe_attribute(raw):
    r = recipe('rtest_hang', seconds=0.2)
    r.timeout = 0.5
    start = time.monotonic()
    assert 'HANG_PRODUCT' in r(raw)     # done before its time
    r.param.seconds = 30
    with pytest.raises(TimeoutError) as info:
        r(raw)
    assert time.monotonic() - start < 5
    remove_run_dir(info.value)


def test_timeout_kills_what_the_recipe_forked(raw):
    with pytest.raises(cpl.RecipeTimeout) as info:
        recipe('rtest_hang', fork_child=True)(raw, timeout=1)
    e = info.value
    try:
        with open(os.path.join(e.workdir, 'rtest_hang_child.pid')) as f:
            child = int(f.read())
        assert wait_until(lambda: is_gone(child), 5), \
            'forked child %d still alive' % child
    finally:
        remove_run_dir(e)


def test_recipe_that_ignores_sigterm_is_killed(raw, monkeypatch):
    # SIGTERM first; a recipe that survives it gets SIGKILL after the grace.
    from cpl import _run
    monkeypatch.setattr(_run, 'TERMINATE_GRACE_SECONDS', 0.5)
    r = recipe('rtest_hang')
    t0 = time.monotonic()
    t = r(raw, threaded=True, timeout=0.5)

    def stop_sigterm():
        for p in recipe_processes():
            try:
                if os.path.basename(p.cwd()).startswith('rtest_hang-'):
                    p.send_signal(signal.SIGSTOP)   # SIGTERM stays pending
                    return True
            except psutil.Error:
                pass
        return False
    assert wait_until(stop_sigterm, 5)
    with pytest.raises(cpl.RecipeTimeout) as info:
        t.result(timeout=20)
    assert time.monotonic() - t0 < 6
    assert info.value.signal == signal.SIGKILL
    remove_run_dir(info.value)


# --- memory ---------------------------------------------------------------------------
def test_memory_check(raw):
    cpl.Recipe.memory_mode = 1
    assert recipe('rtest_leak')(raw).stat.memory_is_empty is False
    assert recipe('rtest_leak', kbytes=0)(raw).stat.memory_is_empty is False
    assert cpl.Recipe('rtest_copy')(raw).stat.memory_is_empty is True
    assert cpl.Recipe('rtest_params')(raw).stat.memory_is_empty is True
    cpl.Recipe.memory_mode = 0
    assert recipe('rtest_leak')(raw).stat.memory_is_empty is None


def test_long_folder_names(raw, tmp_path):
    # CPL truncates long log file names; runs use a relative one.
    deep = tmp_path.joinpath(*(['a_rather_long_folder_name_%d' % i
                                for i in range(8)]))
    r = cpl.Recipe('rtest_copy')
    r.temp_dir = str(deep / 'work')
    res = r(raw, output_dir=str(deep / 'out'))
    assert len(res.PRODUCT) > 250 and os.path.isfile(res.PRODUCT)
    assert 'rtest_save: saved product rtest_copy.fits (PRODUCT)' \
        in res.log.info
    assert os.listdir(str(deep / 'work')) == []


# --- warnings ----------------------------------------------------------------------
def test_cpl_warning_is_a_user_warning_of_the_package():
    # What cplrun accepts as python-cpl did, but warns about.
    assert issubclass(cpl.CplWarning, UserWarning)
    assert 'CplWarning' in cpl.__all__
    assert cpl.result.CplWarning is cpl.CplWarning


def test_input_errors_are_cpl_errors_raised_before_running(raw, tmp_path,
                                                           work_tmp):
    # A script's "except cpl.CplError" catches a bad input, as python-cpl's
    # (raised by the recipe) was caught.
    before = run_dirs(work_tmp)
    empty = tmp_path / 'empty.fits'
    empty.write_bytes(b'')
    for bad in (str(tmp_path / 'nothere.fits'), str(empty)):
        try:
            recipe('rtest_copy')(bad)
        except cpl.CplError as e:
            assert e.recipe == 'rtest_copy' and e.inputs == [bad]
            assert e.code in (6, 9) and bad in e.msg
        else:
            raise AssertionError('no CplError for %s' % bad)
    assert run_dirs(work_tmp) == before


# --- what the recipe said, in the error ----------------------------------------------
@contextlib.contextmanager
def pipeline_failure(manifest, recipe, tag, frames=slice(None)):
    """The CplError of recipe run on (some of) its manifest step's raw
    frames under tag; its kept run folder is removed afterwards."""
    run = pipeline_recipe(recipe)
    step = manifest_step(manifest, recipe)
    with pytest.raises(cpl.CplError) as info:
        run(step['raw'][frames], tag=tag, timeout=120)
    try:
        yield info.value
    finally:
        remove_run_dir(info.value)

def test_a_muse_dark_without_its_bias_says_what_is_missing(system_path,
                                                           data_dir):
    """CPL's error is only 'An unspecified error'; the recipe's log says
    which frames are missing, and so must the error."""
    _folder, manifest = data_dir
    with pipeline_failure(manifest, 'muse_dark', 'DARK') as e:
        said = 'Required 1, found 0 frames with tag "MASTER_BIAS" with IFU 1'
        cpl_error = 'An unspecified error (1) in muse_dark_compute() ' \
                    '(muse_dark.c:117)'
        # the first line is CPL's first error, as python-cpl's
        assert str(e).splitlines()[:2] == [cpl_error,
                                           '    recipe error: ' + said]
        # for summaries and displays, what the recipe said comes first
        assert e.report_text().splitlines()[:3] == [
            said, '    Found 1 error(s)', '    CPL error: ' + cpl_error]
        # the recipe's dumps of the CPL error chain are not repeated
        assert 'Dumping' not in str(e) and 'Dumping' not in e.report_text()
        assert e.msg == 'An unspecified error'      # the attributes as before


def test_a_one_frame_muse_bias_says_how_many_it_needs(system_path, data_dir):
    _folder, manifest = data_dir
    with pipeline_failure(manifest, 'muse_bias', 'BIAS', slice(1)) as e:
        assert '\n    recipe error: Required 3, found 1 input frames with ' \
            'tag "BIAS"' in str(e)
        assert e.report_text().startswith('Required 3, found 1 input frames '
                                          'with tag "BIAS"')
        # and it pickles with it (a failed run's error crosses processes)
        assert str(pickle.loads(pickle.dumps(e))) == str(e)


def test_a_failed_run_names_the_recipes_last_warning(system_path, data_dir):
    """UVES frames all mistagged: CPL's errors say 'No valid input frames',
    the recipe's last warning says which tag it did not know."""
    _folder, manifest = data_dir
    with pipeline_failure(manifest, 'uves_cal_mbias', 'BIAS_BLU') as e:
        assert 'No valid input frames' in str(e).splitlines()[0]
        assert '    last warning: Unrecognized tag BIAS_BLU' in str(e)
        assert e.report_text() == str(e)    # the recipe said no error


def test_recipe_error_messages_are_capped_and_each_said_once():
    records = [logging.makeLogRecord({'levelno': logging.ERROR,
                                      'msg': 'frame %d is bad' % (i % 8),
                                      'funcName': 'check'})
               for i in range(20)]
    e = cpl.CplError(1, [], LogList(records), 'some_recipe')
    assert e.recipe_messages() == [
        'frame %d is bad' % i for i in range(5)] + [
        '(and 3 more error messages in the log)']


def test_warnings_of_a_shortened_log_are_counted_in_its_whole_file(tmp_path):
    whole = tmp_path / 'whole.log'
    whole.write_text('10:00:00 [WARNING] f: one\n10:00:00 [ INFO  ] f: x\n'
                     '10:00:01 [WARNING] f: two\n10:00:02 [WARNING] g: three\n')
    kept = LogList([logging.makeLogRecord({'levelno': logging.WARNING,
                                           'msg': 'one', 'funcName': 'f'})])
    assert cpl.result.count_warnings(kept) == 1
    kept.omitted, kept.file = 2, str(whole)
    assert cpl.result.count_warnings(kept) == 3
