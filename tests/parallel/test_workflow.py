"""Whole reductions with cpl.parallel: Workflow and run_batch on the test
recipes (dependency order, failures and their dependents, fail-fast,
timeouts, retries, reuse of finished runs, strict discovery, pre-flight,
OpenMP threads, the report, Ctrl-C) and on real pipelines (UVES bias ->
dark, NACO dark)."""
from __future__ import annotations

import _thread
import collections
import json
import os
import shutil
import socket
import threading
import time
import types

import numpy as np
import psutil
import pytest
from astropy.io import fits

import cpl
from cpl import parallel
from cpl.parallel import _batch, _execution
from cpl.parallel import (MissingInputsError, PreflightError, Report,
                          RunRecord, Workflow, run_batch)
from conftest import (is_gone, manifest_step as step, pipeline_recipe,
                      recipe_processes, wait_until, write_image)

OPTS = dict(progress=False)


# --- helpers -------------------------------------------------------------------
@pytest.fixture
def out(tmp_path):
    return str(tmp_path / 'out')


def image(path, value, shape=(4, 4)):
    return write_image(str(path), np.full(shape, float(value),
                                          dtype=np.float32), OBJECT=str(value))


def pid_of(record):
    host, _, pid = record.worker.rpartition(':')
    assert host and pid.isdigit(), record.worker
    return int(pid)


def recipe_procs(prefix):
    """The recipe processes running in a work folder ``<prefix>-XXXX``."""
    found = []
    for p in recipe_processes():
        try:
            if os.path.basename(p.cwd()).startswith(prefix + '-'):
                found.append(p)
        except psutil.Error:
            pass
    return found


def record_file(out, name):
    return os.path.join(out, name, parallel.RUN_RECORD)


def chain(raw, raw2, **hang):
    """a: copy(raw) -> b: copy(a) ; c: params(raw2) -> d: copy(c)."""
    w = Workflow()
    a = w.add('rtest_copy', raw, name='a')
    w.add('rtest_copy', a.PRODUCT, calib={'CALIB': raw2}, name='b')
    c = w.add('rtest_params', raw2, param={'int_value': 7}, name='c')
    w.add('rtest_copy', c.PARAMS, name='d')
    return w


# --- the graph ---------------------------------------------------------------------
def test_products_land_in_run_folders_and_the_report_says_it_all(
        raw, raw2, out):
    w = chain(raw, raw2)
    report = w.run(n_workers=2, output_dir=out, **OPTS)
    assert isinstance(report, Report) and report.ok
    assert [r.name for r in report.runs] == ['a', 'b', 'c', 'd']
    assert report.counts() == {'success': 4}
    for r in report.runs:
        assert isinstance(r, RunRecord)
        assert r.status == 'success' and r.error is None
        assert r.attempts == 1
        assert r.wall_s is not None and 0 <= r.wall_s < 30
        assert r.cpu_s is not None and r.cpu_s >= 0
        assert r.max_rss_mb is not None and r.max_rss_mb > 0
        assert r.omp_threads is not None and r.omp_threads >= 1
        host, pid = r.worker.rsplit(':', 1)
        assert host == socket.gethostname()
        assert int(pid) > 0 and int(pid) != os.getpid()
        for path in r.products.values():
            assert os.path.dirname(path) == os.path.join(out, r.name)
            assert os.path.isfile(path)
        assert os.path.isfile(record_file(out, r.name))
    a, b, c, d = report.runs
    assert a.recipe == 'rtest_copy' and c.recipe == 'rtest_params'
    assert b.depends_on == ['a'] and d.depends_on == ['c']
    assert set(a.products) == {'PRODUCT'}
    assert set(c.products) == {'PARAMS'}
    assert fits.getheader(c.products['PARAMS'])['ESO QC INT_VALUE'] == 7
    # b really got a's product as its raw frame, and raw2 as CALIB
    header = fits.getheader(b.products['PRODUCT'])
    assert header['ESO PRO REC2 RAW1 NAME'] == 'rtest_copy.fits'
    assert header['ESO PRO REC2 CAL1 NAME'] == os.path.basename(raw2)
    assert header['OBJECT'] == 'raw1'
    np.testing.assert_array_equal(fits.getdata(b.products['PRODUCT']),
                                  fits.getdata(raw))
    # each run's own full log file, with the recipe's log lines
    for r in report.runs:
        assert r.log == os.path.join(out, r.name, r.name + '.log')
    text = open(c.log, encoding='utf-8').read()
    assert 'cplrun.rtest_params.int_value = 7' in text
    assert 'saved product rtest_copy.fits (PRODUCT)' in open(a.log).read()
    # the report is saved too
    saved = Report.from_json(os.path.join(out, 'report.json'))
    assert [r.to_dict() for r in saved.runs] == [r.to_dict() for r in report]
    # nothing left of the work folders
    for r in report.runs:
        assert not os.path.exists(os.path.join(out, r.name, '.cplrun-work'))


def test_log_dir_collects_the_logs(raw, tmp_path):
    logs = str(tmp_path / 'logs')
    w = Workflow()
    w.add('rtest_biglog', raw, tag='RAW', param={'lines': 10}, name='big')
    report = w.run(output_dir=str(tmp_path / 'o'), log_dir=logs, **OPTS)
    r = report['big']
    assert r.status == 'success'
    assert r.log == os.path.join(logs, 'big.log')
    text = open(r.log, encoding='utf-8').read()
    assert 'line 000009 abcdefghij' in text
    assert 'biglog warning' in text
    assert 'stdout line 99' in text and 'stderr line 99' in text
    assert os.path.isfile(r.products['BIGLOG_PRODUCT'])


def test_a_dependent_starts_only_after_its_input_exists(raw, out):
    w = Workflow()
    up = w.add('rtest_hang', raw, tag='RAW', param={'seconds': 0.6},
               name='up')
    w.add('rtest_hang', raw, tag='RAW', param={'seconds': 0.6}, name='side')
    w.add('rtest_copy', up.HANG_PRODUCT, name='down')
    report = w.run(n_workers=2, output_dir=out, **OPTS)
    assert report.ok, report.to_dict()
    up, side, down = report['up'], report['side'], report['down']
    assert up.wall_s >= 0.6
    up_end = up.started + up.wall_s
    # the dependent was started after the upstream run ended and its
    # product existed; the independent run went alongside
    assert down.started >= up_end
    assert os.path.getmtime(up.products['HANG_PRODUCT']) <= down.started
    assert side.started < up_end and up.started < side.started + side.wall_s
    assert fits.getheader(down.products['PRODUCT'])[
        'ESO PRO REC2 RAW1 NAME'] == 'rtest_hang.fits'


def test_a_failed_run_skips_its_dependents_and_the_rest_goes_on(raw, out):
    w = Workflow()
    bad = w.add('rtest_error', raw, tag='RAW', name='bad')
    mid = w.add('rtest_copy', bad.ERROR_PRODUCT, name='mid')
    w.add('rtest_copy', mid.PRODUCT, name='end')
    w.add('rtest_copy', raw, name='other')
    report = w.run(n_workers=2, output_dir=out, **OPTS)
    assert not report.ok
    assert report['bad'].status == 'failed'
    assert 'outer failure' in report['bad'].error
    assert report['bad'].attempts == 1
    assert report['mid'].status == 'skipped'
    assert 'bad' in report['mid'].error
    assert report['end'].status == 'skipped'
    assert report['mid'].attempts == report['end'].attempts == 0
    assert report['other'].status == 'success'
    assert report.counts() == {'failed': 1, 'skipped': 2, 'success': 1}
    assert not os.path.exists(record_file(out, 'bad'))
    assert not os.path.exists(os.path.join(out, 'mid'))
    # the failed run's log has the recipe's error
    log = open(report['bad'].log, encoding='utf-8').read()
    assert 'rtest_error failed: Data not found: outer failure' in log


def test_fail_fast_kills_what_runs_and_starts_nothing_more(raw, out, ran):
    w = Workflow()
    w.add('rtest_hang', raw, tag='RAW', param={'seconds': 30}, name='long')
    w.add('rtest_error', raw, tag='RAW', name='bad')
    w.add('rtest_copy', raw, name='later')
    start = time.monotonic()
    report = w.run(n_workers=2, output_dir=out, fail_fast=True, **OPTS)
    wall = time.monotonic() - start
    assert wall < 8, wall             # far below the hang's 30 s
    assert report['bad'].status == 'failed'
    long = report['long']
    assert long.status == 'cancelled'
    assert wait_until(lambda: is_gone(pid_of(long)), 5)
    assert wait_until(lambda: not recipe_procs('rtest_hang'), 5)
    assert report['later'].status == 'cancelled'
    assert report['later'].attempts == 0
    assert sorted(ran) == ['bad', 'long']
    # the killed run does not look finished: the next run reruns it
    assert not os.path.exists(record_file(out, 'long'))
    saved = json.load(open(os.path.join(out, 'report.json')))
    assert {r['name']: r['status'] for r in saved['runs']} == {
        'long': 'cancelled', 'bad': 'failed', 'later': 'cancelled'}
    del ran[:]
    report = w.run(n_workers=2, output_dir=out, timeout=0.5, **OPTS)
    assert report['long'].status == 'timeout'       # ran again
    assert report['later'].status == 'success'
    assert sorted(ran) == ['bad', 'later', 'long']


def test_timeout_kills_a_run_and_skips_its_dependents(raw, out):
    w = Workflow()
    slow = w.add('rtest_hang', raw, tag='RAW', name='slow')
    w.add('rtest_copy', slow.HANG_PRODUCT, name='after')
    w.add('rtest_copy', raw, name='quick')
    start = time.monotonic()
    report = w.run(output_dir=out, timeout=0.5, **OPTS)
    assert time.monotonic() - start < 8
    assert report['slow'].status == 'timeout'
    assert 'timed out' in report['slow'].error
    assert wait_until(lambda: is_gone(pid_of(report['slow'])), 5)
    assert report['after'].status == 'skipped'
    assert report['quick'].status == 'success'
    assert not os.path.exists(record_file(out, 'slow'))


# --- retries -----------------------------------------------------------------------
def test_a_crash_is_retried(raw, out, ran):
    w = Workflow()
    w.add('rtest_crash', raw, tag='RAW', name='segv')
    report = w.run(output_dir=out, retries=2, **OPTS)
    r = report['segv']
    assert r.status == 'crashed'
    assert r.attempts == 3
    assert ran == ['segv'] * 3
    assert 'SIGSEGV' in r.error
    assert 'about to crash: segv' in open(r.log, encoding='utf-8').read()


def test_a_run_killed_from_outside_succeeds_on_retry(raw, out):
    """A flaky run: its first process is SIGKILLed (like the OOM killer
    does), the retry finishes."""
    killed = []

    def killer():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            for p in recipe_procs('rtest_hang'):
                p.kill()
                killed.append(p.pid)
                return
            time.sleep(0.02)
    thread = threading.Thread(target=killer)
    thread.start()
    w = Workflow()
    w.add('rtest_hang', raw, tag='RAW', param={'seconds': 1.0}, name='flaky')
    try:
        report = w.run(output_dir=out, retries=1, **OPTS)
    finally:
        thread.join()
    assert len(killed) == 1
    r = report['flaky']
    assert r.status == 'success', r.error
    assert r.attempts == 2
    assert pid_of(r) != killed[0]
    assert os.path.isfile(r.products['HANG_PRODUCT'])


def test_a_cpl_error_is_not_retried(raw, out, ran):
    w = Workflow()
    w.add('rtest_error', raw, tag='RAW', name='bad')
    report = w.run(output_dir=out, retries=3, **OPTS)
    assert report['bad'].status == 'failed'
    assert report['bad'].attempts == 1
    assert ran == ['bad']


# --- reuse ---------------------------------------------------------------------------
def test_a_second_run_reuses_everything(raw, raw2, out, ran):
    w = chain(raw, raw2)
    first = w.run(n_workers=2, output_dir=out, **OPTS)
    assert first.ok and sorted(ran) == ['a', 'b', 'c', 'd']
    mtimes = {r.name: {t: os.stat(p).st_mtime_ns
                       for t, p in r.products.items()} for r in first}
    del ran[:]
    second = w.run(n_workers=2, output_dir=out, **OPTS)
    assert ran == []                 # no recipe process started
    assert second.ok
    assert [r.status for r in second] == ['cached'] * 4
    for old, new in zip(first, second):
        assert new.products == old.products
        assert new.attempts == 0 and new.worker is None
        assert {t: os.stat(p).st_mtime_ns
                for t, p in new.products.items()} == mtimes[new.name]
    # a rerun with another number of workers reuses them too
    third = w.run(n_workers=1, output_dir=out, **OPTS)
    assert ran == [] and [r.status for r in third] == ['cached'] * 4
    # force=True reruns all
    forced = w.run(n_workers=2, output_dir=out, force=True, **OPTS)
    assert [r.status for r in forced] == ['success'] * 4
    assert sorted(ran) == ['a', 'b', 'c', 'd']
    assert all(os.path.isfile(p) for r in forced
               for p in r.products.values())


def test_a_changed_parameter_reruns_that_run_and_its_dependents(
        raw, raw2, out, ran):
    chain(raw, raw2).run(output_dir=out, **OPTS)
    del ran[:]
    w = Workflow()
    a = w.add('rtest_copy', raw, name='a')
    w.add('rtest_copy', a.PRODUCT, calib={'CALIB': raw2}, name='b')
    c = w.add('rtest_params', raw2, param={'int_value': 8}, name='c')
    w.add('rtest_copy', c.PARAMS, name='d')
    report = w.run(output_dir=out, **OPTS)
    assert sorted(ran) == ['c', 'd']
    assert {r.name: r.status for r in report} == {
        'a': 'cached', 'b': 'cached', 'c': 'success', 'd': 'success'}
    assert fits.getheader(report['c'].products['PARAMS'])[
        'ESO QC INT_VALUE'] == 8
    del ran[:]
    assert all(r.status == 'cached' for r in w.run(output_dir=out, **OPTS))
    assert ran == []


def test_a_changed_input_file_reruns_its_runs_and_their_dependents(
        tmp_path, out, ran):
    one = image(tmp_path / 'one.fits', 1)
    two = image(tmp_path / 'two.fits', 2)
    w = Workflow()
    a = w.add('rtest_copy', one, name='a')
    w.add('rtest_copy', a.PRODUCT, name='b')
    c = w.add('rtest_copy', two, name='c')
    w.add('rtest_copy', c.PRODUCT, name='d')
    w.run(output_dir=out, **OPTS)
    del ran[:]
    # new pixel values, same size, and the old modification time (as
    # cp -p or rsync -t leave it): only the content tells
    st = os.stat(two)
    image(tmp_path / 'two.fits', 5)
    os.utime(two, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(two).st_size == st.st_size
    report = w.run(output_dir=out, **OPTS)
    assert sorted(ran) == ['c', 'd']
    assert [report[n].status for n in 'abcd'] == [
        'cached', 'cached', 'success', 'success']
    assert fits.getdata(report['d'].products['PRODUCT'])[0, 0] == 5
    # a missing product of a finished run makes it run again
    del ran[:]
    os.unlink(report['a'].products['PRODUCT'])
    report = w.run(output_dir=out, **OPTS)
    assert ran[0] == 'a'
    assert report['a'].status == 'success'
    assert os.path.isfile(report['a'].products['PRODUCT'])


def test_a_rerun_that_dies_keeps_the_earlier_run(raw, out, ran):
    w = Workflow()
    w.add('rtest_hang', raw, tag='RAW', param={'seconds': 0.3}, name='h')
    first = w.run(output_dir=out, **OPTS)
    assert first['h'].status == 'success'
    product = first['h'].products['HANG_PRODUCT']
    record = open(record_file(out, 'h'), 'rb').read()
    content = open(product, 'rb').read()
    # a forced rerun killed mid-way: the earlier record and product stay
    second = w.run(output_dir=out, force=True, timeout=0.1, **OPTS)
    assert second['h'].status == 'timeout'
    assert open(record_file(out, 'h'), 'rb').read() == record
    assert open(product, 'rb').read() == content
    assert fits_in(os.path.join(out, 'h')) == ['rtest_hang.fits']
    del ran[:]
    third = w.run(output_dir=out, **OPTS)
    assert ran == [] and third['h'].status == 'cached'
    assert third['h'].products == first['h'].products


def test_a_rerun_kept_apart_from_a_file_of_its_name_names_its_own_file(
        raw, out):
    # a damaged record: the file there is no product this run may replace,
    # so the new one is saved beside it, and says so in its header
    w = Workflow()
    w.add('rtest_copy', raw, tag='RAW', name='c')
    w.run(output_dir=out, **OPTS)
    with open(record_file(out, 'c'), 'w') as f:
        f.write('{')
    again = w.run(output_dir=out, **OPTS)
    product = again['c'].products['PRODUCT']
    assert os.path.basename(product) == 'rtest_copy-1.fits'
    with fits.open(product, checksum=True) as hdul:
        assert hdul[0].header['PIPEFILE'] == 'rtest_copy-1.fits'
        assert hdul[0]._checksum_valid and hdul[0]._datasum_valid
    with fits.open(os.path.join(out, 'c', 'rtest_copy.fits')) as hdul:
        assert hdul[0].header['PIPEFILE'] == 'rtest_copy.fits'
    # and the record's checksum is the renamed file's: it is reused
    assert w.run(output_dir=out, **OPTS)['c'].status == 'cached'


def test_an_hdulist_input_is_refused_when_the_run_is_added(raw, out):
    # a workflow run is planned and reused by its input files: an HDUList
    # is refused up front, naming the run, recipe and tag (it failed at
    # run time: "expected str, bytes or os.PathLike object, not HDUList")
    hdulist = fits.HDUList([fits.PrimaryHDU(np.zeros((4, 4), np.float32))])
    with pytest.raises(TypeError, match='run a .recipe rtest_copy.: its RAW '
                       'input is an HDUList'):
        Workflow().add('rtest_copy', hdulist, tag='RAW', name='a')
    with pytest.raises(TypeError, match='its RAW input is an HDUList'):
        cpl.Recipe('rtest_copy').map([hdulist], tag='RAW', output_dir=out,
                                     **OPTS)
    r = cpl.Recipe('rtest_copy')
    r.calib.CALIB = hdulist
    with pytest.raises(TypeError, match='its CALIB input is an HDUList'):
        Workflow().add(r, raw, tag='RAW', name='b')
    # a recipe's calibration set after the run was added: the run fails,
    # saying why
    r.calib.CALIB = None
    w = Workflow()
    w.add(r, raw, tag='RAW', name='c')
    r.calib.CALIB = hdulist
    report = w.run(output_dir=out, **OPTS)
    assert report['c'].status == 'failed'
    assert 'its CALIB input is an HDUList' in report['c'].error


def test_a_copied_output_folder_reuses_its_own_products(raw, out, ran):
    # cp -r of a night's folder, then the workflow run on the copy: the
    # records named the first folder's files, so the copy's runs were
    # 'cached' with products outside it; with the first folder gone they
    # ran again beside the copied products (rtest_copy-1.fits)
    def workflow():
        w = Workflow()
        first = w.add('rtest_copy', raw, tag='RAW', name='c')
        w.add('rtest_copy', first.PRODUCT, tag='RAW', name='d')
        return w
    workflow().run(output_dir=out, **OPTS)
    copy = out + '-copy'
    shutil.copytree(out, copy)
    del ran[:]
    report = workflow().run(output_dir=copy, **OPTS)
    assert ran == []
    assert {r.name: (r.status, r.products) for r in report} == {
        name: ('cached', {'PRODUCT': os.path.join(copy, name,
                                                  'rtest_copy.fits')})
        for name in ('c', 'd')}
    shutil.rmtree(out)
    report = workflow().run(output_dir=copy, **OPTS)
    assert ran == [] and report.ok
    assert fits_in(os.path.join(copy, 'c')) == ['rtest_copy.fits']


def fits_in(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith('.fits'))


def test_a_failed_rerun_keeps_the_products_and_the_report_keeps_every_run(
        raw, raw2, out, ran):
    # as cplrun run X a.sof b.sof c.sof, then cplrun run X b.sof with
    # parameters that make it fail
    names = ['a', 'b', 'c']
    first = run_batch('rtest_error', [raw, raw2, raw], tag='RAW', names=names,
                      param={'fail': False}, output_dir=out, **OPTS)
    assert first.ok
    product = first['b'].products['ERROR_PRODUCT']
    content = open(product, 'rb').read()
    record = open(record_file(out, 'b'), 'rb').read()
    good_log = open(first['b'].log, 'rb').read()
    failed = run_batch('rtest_error', [raw2], tag='RAW', names=['b'],
                       param={'fail': True}, output_dir=out, **OPTS)
    assert failed['b'].status == 'failed'
    # the kept products keep their log; the failure's is beside it
    assert open(first['b'].log, 'rb').read() == good_log
    assert failed['b'].log == os.path.join(out, 'b', 'b.failed.log')
    assert b'outer failure' in open(failed['b'].log, 'rb').read()
    assert b'outer failure' not in good_log
    kept = os.path.join(out, 'b', parallel.WORK_FOLDER)
    (workdir,) = os.listdir(kept)
    assert '; files kept in %s)' % os.path.join(kept, workdir) in \
        failed['b'].error
    assert len(failed) == 1                 # the returned report: this call
    assert open(product, 'rb').read() == content
    assert open(record_file(out, 'b'), 'rb').read() == record
    assert fits_in(os.path.join(out, 'b')) == ['rtest_error.fits']
    saved = Report.from_json(os.path.join(out, 'report.json'))
    assert {r.name: (r.status, r.earlier_invocation) for r in saved} == {
        'b': ('failed', False), 'a': ('success', True),
        'c': ('success', True)}
    assert saved['a'].products == first['a'].products
    # the earlier run is reused as it was: the failure changed nothing
    del ran[:]
    again = run_batch('rtest_error', [raw2], tag='RAW', names=['b'],
                      param={'fail': False}, output_dir=out, **OPTS)
    assert ran == [] and again['b'].status == 'cached'
    # a successful rerun replaces the products, in place, under their names
    del ran[:]
    replaced = run_batch('rtest_error', [raw], tag='RAW', names=['b'],
                         param={'fail': False}, output_dir=out, **OPTS)
    assert ran == ['b'] and replaced['b'].status == 'success'
    assert replaced['b'].log == first['b'].log     # and no b.failed.log:
    assert replaced['b'].products == first['b'].products
    assert fits_in(os.path.join(out, 'b')) == ['rtest_error.fits']
    assert fits.getval(product, 'ESO PRO REC1 RAW1 NAME') == \
        os.path.basename(raw)
    assert sorted(os.listdir(os.path.join(out, 'b'))) == [
        parallel.RUN_RECORD, 'b.log', 'rtest_error.fits']
    saved = Report.from_json(os.path.join(out, 'report.json'))
    assert {r.name: (r.status, r.earlier_invocation) for r in saved} == {
        'b': ('success', False), 'a': ('success', True),
        'c': ('success', True)}


@pytest.mark.parametrize('damage', ['truncated', 'rewritten'])
def test_a_damaged_product_is_not_reused(raw, out, ran, damage):
    w = Workflow()
    a = w.add('rtest_copy', raw, name='a')
    w.add('rtest_copy', a.PRODUCT, name='b')
    first = w.run(output_dir=out, **OPTS)
    product = first['a'].products['PRODUCT']
    content = open(product, 'rb').read()
    st = os.stat(product)
    if damage == 'truncated':
        os.truncate(product, st.st_size - 2880)
    else:
        # the same size and modification time, other bytes
        with open(product, 'r+b') as f:
            f.seek(st.st_size - 4)
            f.write(b'\x7f\x7f\x7f\x7f')
        os.utime(product, ns=(st.st_atime_ns, st.st_mtime_ns))
    del ran[:]
    report = w.run(output_dir=out, **OPTS)
    # a reruns and makes its product again.  CPL writes the second it
    # makes it in into DATE: in the same second the product is the same
    # again, b's input is what b had, and b is reused; a second later (the
    # first run's report.html took that long) b's input changed: b reruns
    remade = open(product, 'rb').read()
    same = remade == content
    assert ran == (['a'] if same else ['a', 'b'])
    assert [report[n].status for n in 'ab'] == [
        'success', 'cached' if same else 'success']
    assert len(remade) == len(content)
    assert np.array_equal(fits.getdata(product), fits.getdata(raw))
    assert fits_in(os.path.join(out, 'a')) == ['rtest_copy.fits']
    del ran[:]
    assert [r.status for r in w.run(output_dir=out, **OPTS)] == \
        ['cached', 'cached'] and ran == []


# --- before anything runs -------------------------------------------------------------
def test_strict_discovery_lists_every_missing_file(raw, tmp_path, ran):
    out = str(tmp_path / 'never')
    gone1 = str(tmp_path / 'gone1.fits')
    gone2 = str(tmp_path / 'gone2.fits')
    gone3 = str(tmp_path / 'gone3.fits')
    w = Workflow()
    a = w.add('rtest_copy', raw, gone1, name='a')
    w.add('rtest_copy', a.PRODUCT, calib={'CALIB': gone2}, name='b')
    w.add('rtest_copy', raw, name='fine')
    r = cpl.Recipe('rtest_copy')
    r.calib.CALIB = gone3
    w.add(r, raw, name='own_calib')
    with pytest.raises(MissingInputsError) as info:
        w.run(output_dir=out, **OPTS)
    err = info.value
    assert isinstance(err, FileNotFoundError)
    assert sorted(err.missing) == [('a', 'RAW', gone1), ('b', 'CALIB', gone2),
                                   ('own_calib', 'CALIB', gone3)]
    text = str(err)
    for run, path in (('a', gone1), ('b', gone2), ('own_calib', gone3)):
        assert any(run in line and path in line for line in text.splitlines())
    assert not os.path.exists(out)
    assert ran == []


def test_not_strict_skips_the_runs_missing_inputs(raw, tmp_path, out):
    gone = str(tmp_path / 'gone.fits')
    w = Workflow()
    a = w.add('rtest_copy', gone, name='a')
    w.add('rtest_copy', a.PRODUCT, name='b')
    w.add('rtest_copy', raw, name='fine')
    report = w.run(output_dir=out, strict=False, **OPTS)
    assert report['a'].status == 'skipped'
    assert 'missing' in report['a'].error and gone in report['a'].error
    assert report['b'].status == 'skipped' and 'a' in report['b'].error
    assert report['fine'].status == 'success'
    text = _summary(report)
    assert gone in text


def _summary(report):
    import io
    buf = io.StringIO()
    report.summary(file=buf)
    return buf.getvalue()


def _memory(available):
    return lambda: types.SimpleNamespace(available=available, total=available,
                                         percent=0.0)


def test_preflight_refuses_too_much_memory(raw, tmp_path, monkeypatch, ran):
    out = str(tmp_path / 'never')
    monkeypatch.setattr(_execution, 'RAM_PER_INPUT_BYTE', 1e15)
    w = Workflow()
    w.add('rtest_copy', raw, name='a')
    with pytest.raises(PreflightError) as info:
        w.run(output_dir=out, **OPTS)
    assert 'memory' in str(info.value) and 'force_run' in str(info.value)
    assert not os.path.exists(out)
    assert ran == []
    with pytest.warns(parallel.PreflightWarning, match='memory'):
        report = w.run(output_dir=out, force_run=True, **OPTS)
    assert report['a'].status == 'success'
    # preflight=False does not look at all
    report = w.run(output_dir=out, preflight=False, force=True, **OPTS)
    assert report['a'].status == 'success'


def test_preflight_refuses_too_little_disk(raw, tmp_path, monkeypatch):
    out = str(tmp_path / 'never')
    seen = []

    def usage(path):
        seen.append(path)
        return shutil._ntuple_diskusage(100, 90, 10)
    monkeypatch.setattr(shutil, 'disk_usage', usage)
    w = Workflow()
    w.add('rtest_copy', raw, name='a')
    with pytest.raises(PreflightError, match='disk'):
        w.run(output_dir=out, **OPTS)
    assert seen and not os.path.exists(out)


def test_preflight_warns_near_the_limit(raw, tmp_path, monkeypatch):
    need = parallel.RAM_PER_INPUT_BYTE * os.path.getsize(raw)
    monkeypatch.setattr(psutil, 'virtual_memory', _memory(int(need / 0.9)))
    w = Workflow()
    w.add('rtest_copy', raw, name='a')
    with pytest.warns(parallel.PreflightWarning, match='memory'):
        report = w.run(output_dir=str(tmp_path / 'o'), **OPTS)
    assert report['a'].status == 'success'


def test_preflight_counts_the_runs_going_at_once(raw, tmp_path, monkeypatch):
    """Memory for n_workers runs at once; for one at a time, one."""
    need = parallel.RAM_PER_INPUT_BYTE * os.path.getsize(raw)
    monkeypatch.setattr(psutil, 'virtual_memory', _memory(int(need * 2.5)))
    w = Workflow()
    for i in range(3):
        w.add('rtest_copy', raw, name='r%d' % i)
    with pytest.raises(PreflightError, match='memory'):
        w.run(n_workers=3, output_dir=str(tmp_path / 'o3'), **OPTS)
    report = w.run(n_workers=1, output_dir=str(tmp_path / 'o1'), **OPTS)
    assert report.ok


# --- the workflow's shape ----------------------------------------------------------------
def test_cycles_and_unknown_runs_are_refused(raw, tmp_path):
    w = Workflow()
    a = w.add('rtest_copy', raw, name='a')
    with pytest.raises(ValueError, match='already has a run named'):
        w.add('rtest_copy', raw, name='a')
    other = Workflow()
    stranger = other.add('rtest_copy', raw, name='stranger')
    with pytest.raises(ValueError, match='stranger'):
        w.add('rtest_copy', stranger.PRODUCT, name='b')
    with pytest.raises(ValueError, match='not an earlier run'):
        w.add('rtest_copy', parallel.ProductRef('x', 'PRODUCT'), name='x')
    with pytest.raises(AttributeError, match='makes no NOPE'):
        a.NOPE
    with pytest.raises(ValueError):
        w.add('rtest_params', raw, param={'int_range': 99})
    with pytest.raises(ValueError, match='plain folder name'):
        w.add('rtest_copy', raw, name='../up')
    b = w.add('rtest_copy', a.PRODUCT, name='b')
    # a cycle made behind add()'s back
    a.calib['CALIB'] = b.PRODUCT
    with pytest.raises(ValueError, match='cycle'):
        w.order()
    out = str(tmp_path / 'never')
    with pytest.raises(ValueError, match='cycle'):
        w.run(output_dir=out, **OPTS)
    assert not os.path.exists(out)


def test_names_are_unique_by_default(raw):
    w = Workflow()
    names = [w.add('rtest_copy', raw).name for _ in range(3)]
    assert names == ['rtest_copy', 'rtest_copy-2', 'rtest_copy-3']


# --- run_batch --------------------------------------------------------------------------------
def test_run_batch_with_lists_sofs_and_dicts(tmp_path, calib_file, raw_images):
    sofs = []
    for i in range(2):
        sof = tmp_path / ('night%d.sof' % i)
        sof.write_text('%s RAW\n%s CALIB\n' % (raw_images[i], calib_file))
        sofs.append(str(sof))
    report = run_batch('rtest_copy', sofs, output_dir=str(tmp_path / 's'),
                       **OPTS)
    assert [r.name for r in report] == ['night0', 'night1']
    for i, r in enumerate(report):
        assert r.status == 'success'
        path = r.products['PRODUCT']
        assert os.path.dirname(path) == str(tmp_path / 's' / r.name)
        header = fits.getheader(path)
        assert header['OBJECT'] == 'img%d' % i
        assert header['ESO PRO REC1 CAL1 NAME'] == 'calib.fits'

    lists = [[raw_images[2], raw_images[3]], [raw_images[4]]]
    report = run_batch('rtest_copy', lists, output_dir=str(tmp_path / 'l'),
                       param={'per_frame': True}, **OPTS)
    assert [r.name for r in report] == ['rtest_copy', 'rtest_copy-2']
    assert report.ok
    header = fits.getheader(report['rtest_copy'].products['PRODUCT'][0])
    assert header['ESO PRO REC1 RAW2 NAME'] == 'img3.fits'
    assert len(report['rtest_copy'].products['PRODUCT']) == 3

    dicts = [{'RAW': raw_images[5], 'CALIB': calib_file},
             {'RAW': [raw_images[6]]}]
    report = run_batch('rtest_copy', dicts, output_dir=str(tmp_path / 'd'),
                       names=['with', 'without'], **OPTS)
    assert [r.name for r in report] == ['with', 'without']
    assert report.ok
    h_with = fits.getheader(report['with'].products['PRODUCT'])
    h_without = fits.getheader(report['without'].products['PRODUCT'])
    assert h_with['ESO PRO REC1 CAL1 CATG'] == 'CALIB'
    assert 'ESO PRO REC1 CAL1 NAME' not in h_without
    assert h_without['OBJECT'] == 'img6'

    # a recipe without declared tags: tag= says which
    report = run_batch('rtest_hang', [{'RAW': raw_images[7]}], tag='RAW',
                       param={'seconds': 0.0}, output_dir=str(tmp_path / 'h'),
                       **OPTS)
    assert report.ok and report.runs[0].name == 'rtest_hang'


# --- OpenMP --------------------------------------------------------------------------------
def team(record):
    return fits.getheader(record.products['OMP_PRODUCT'])['ESO QC OMP TEAM']


@pytest.fixture
def no_user_omp(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)


def test_omp_threads_share_the_cores(raw, tmp_path, monkeypatch, no_user_omp):
    monkeypatch.setattr(os, 'cpu_count', lambda: 2)
    report = run_batch('rtest_omp', [raw] * 4, tag='RAW', n_workers=2,
                       output_dir=str(tmp_path / 'four'), **OPTS)
    assert report.ok
    assert [r.omp_threads for r in report] == [1] * 4
    assert [team(r) for r in report] == [1] * 4
    report = run_batch('rtest_omp', [raw], tag='RAW', n_workers=2,
                       output_dir=str(tmp_path / 'one'), **OPTS)
    assert report.runs[0].omp_threads == 2 and team(report.runs[0]) == 2


def test_omp_threads_with_more_cores(raw, tmp_path, monkeypatch, no_user_omp):
    monkeypatch.setattr(os, 'cpu_count', lambda: 6)
    report = run_batch('rtest_omp', [raw] * 4, tag='RAW', n_workers=2,
                       output_dir=str(tmp_path / 'four'), **OPTS)
    assert [r.omp_threads for r in report] == [3] * 4
    assert [team(r) for r in report] == [3] * 4
    # a chain runs one at a time: each gets all cores
    w = Workflow()
    first = w.add('rtest_omp', raw, tag='RAW', name='first')
    w.add('rtest_omp', first.OMP_PRODUCT, tag='RAW', name='second')
    report = w.run(n_workers=4, output_dir=str(tmp_path / 'chain'), **OPTS)
    assert [r.omp_threads for r in report] == [6, 6]
    assert [team(r) for r in report] == [6, 6]
    # the report on disk says it too
    saved = Report.from_json(os.path.join(str(tmp_path / 'chain'),
                                          'report.json'))
    assert [r.omp_threads for r in saved] == [6, 6]


def test_omp_threads_set_by_the_user_are_kept(raw, tmp_path, monkeypatch,
                                              no_user_omp):
    monkeypatch.setattr(os, 'cpu_count', lambda: 2)
    w = Workflow()
    w.add('rtest_omp', raw, tag='RAW', env={'OMP_NUM_THREADS': '3'},
          name='three')
    r = cpl.Recipe('rtest_omp')
    r.env['OMP_NUM_THREADS'] = '5'
    w.add(r, raw, tag='RAW', name='five')
    w.add('rtest_omp', raw, tag='RAW', name='auto',
          env={'CPLRUN_TEST_VAR': 'hi'})
    report = w.run(n_workers=3, output_dir=str(tmp_path / 'a'), **OPTS)
    assert [(x.omp_threads, team(x)) for x in report] == [(3, 3), (5, 5),
                                                         (1, 1)]
    assert fits.getheader(report['auto'].products['OMP_PRODUCT'])[
        'ESO QC ENV VAR'] == 'hi'
    monkeypatch.setenv('OMP_NUM_THREADS', '4')
    report = run_batch('rtest_omp', [raw], tag='RAW',
                       output_dir=str(tmp_path / 'b'), **OPTS)
    assert report.runs[0].omp_threads == 4 and team(report.runs[0]) == 4


# --- the bound on processes ---------------------------------------------------------------
def test_n_workers_bounds_the_recipe_processes(raw, out):
    counts = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            counts.append(len(recipe_procs('rtest_hang')))
            time.sleep(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        start = time.monotonic()
        report = run_batch('rtest_hang', [raw] * 6, tag='RAW',
                           param={'seconds': 0.5}, n_workers=2,
                           output_dir=out, **OPTS)
        wall = time.monotonic() - start
    finally:
        stop.set()
        sampler.join()
    assert report.ok and len(report) == 6
    assert max(counts) == 2, collections.Counter(counts)
    assert wall >= 1.5                  # three rounds of two
    workers = {r.worker for r in report}
    assert len(workers) == 6            # a process of its own each


# --- the report ---------------------------------------------------------------------------------
def test_report_json_round_trip_and_summary(raw, out, capsys):
    w = Workflow()
    good = w.add('rtest_copy', raw, name='good')
    w.add('rtest_error', good.PRODUCT, tag='RAW', name='bad')
    w.add('rtest_crash', raw, tag='RAW', param={'mode': 'abort'}, name='boom')
    report = w.run(n_workers=2, output_dir=out, **OPTS)
    path = os.path.join(out, 'mine.json')
    report.to_json(path)
    doc = json.load(open(path))
    assert doc['output_dir'] == out
    assert doc['counts'] == {'success': 1, 'failed': 1, 'crashed': 1}
    keys = {'name', 'recipe', 'status', 'products', 'log', 'error', 'wall_s',
            'cpu_s', 'max_rss_mb', 'omp_threads', 'attempts', 'worker'}
    assert all(keys <= set(r) for r in doc['runs'])
    back = Report.from_json(path)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in report]
    assert back.output_dir == out and back.wall_s == report.wall_s
    assert back['bad'].status == 'failed'

    text = _summary(report)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ['run', 'recipe', 'status']
    for name, status in (('good', 'success'), ('bad', 'failed'),
                         ('boom', 'crashed')):
        assert any(line.split()[:3] == [name, report[name].recipe, status]
                   for line in lines)
    assert '3 runs' in text
    problems = text[text.index('Problems:'):]
    assert 'good' not in problems.split('bad (')[0]
    # each failure's full error and its log
    for line in report['bad'].error.splitlines():
        assert line.strip() in problems
    assert 'SIGABRT' in problems
    assert report['bad'].log in problems and report['boom'].log in problems
    assert os.path.isfile(report['boom'].log)
    report.summary()                    # to stdout by default
    assert capsys.readouterr().out == text


# --- Ctrl-C -----------------------------------------------------------------------------------
def test_ctrl_c_kills_the_runs_and_saves_the_report(raw, out):
    w = Workflow()
    w.add('rtest_hang', raw, tag='RAW', name='h1')
    w.add('rtest_hang', raw, tag='RAW', name='h2')
    w.add('rtest_copy', raw, name='waiting')
    timer = threading.Timer(1.0, _thread.interrupt_main)
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            w.run(n_workers=2, output_dir=out, **OPTS)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 10
    saved = Report.from_json(os.path.join(out, 'report.json'))
    assert {r.name: r.status for r in saved} == {
        'h1': 'cancelled', 'h2': 'cancelled', 'waiting': 'cancelled'}
    for name in ('h1', 'h2'):
        assert wait_until(lambda: is_gone(pid_of(saved[name])), 5)
        assert not os.path.exists(record_file(out, name))
    assert wait_until(lambda: not recipe_procs('rtest_hang'), 5)


def recorded(folder):
    """The products the run record in folder names ({} without one)."""
    try:
        with open(os.path.join(folder, parallel.RUN_RECORD)) as f:
            return json.load(f)['products']
    except FileNotFoundError:
        return {}


#: Ctrl-C at as many moments around the end of the runs, to catch the
#: runs that end just as it comes.
CTRL_C_TRIES = 30


def test_ctrl_c_as_runs_end_leaves_every_folder_consistent(raw, tmp_path):
    """Whatever the moment of Ctrl-C: a run reported success has its
    record, and the record names exactly the products in its folder; a
    run not reported success has no record and no product."""
    def workflow():
        w = Workflow()
        for i in range(4):
            w.add('rtest_hang', raw, tag='RAW', name='h%d' % i,
                  param={'seconds': 0.1 + 0.1 * (i % 2)})
        return w
    workflow().run(n_workers=4, output_dir=str(tmp_path / 'warm'), **OPTS)
    start = time.monotonic()
    workflow().run(n_workers=4, output_dir=str(tmp_path / 'timing'), **OPTS)
    # the moment of Ctrl-C follows the end of the runs as the load moves
    # it: earlier after an attempt where all ended, later after one where
    # none did, and a little off each time
    delay = time.monotonic() - start
    outcomes = collections.Counter()
    for attempt in range(CTRL_C_TRIES):
        out = str(tmp_path / ('r%02d' % attempt))
        timer = threading.Timer(delay * (0.9 + 0.05 * (attempt % 5)),
                                _thread.interrupt_main)
        timer.start()
        try:
            workflow().run(n_workers=4, output_dir=out, **OPTS)
            timer.join()
            time.sleep(0.1)         # a Ctrl-C after the end lands here
        except KeyboardInterrupt:
            pass
        finally:
            timer.cancel()
        for name in os.listdir(out) if os.path.isdir(out) else ():
            folder = os.path.join(out, name)
            if os.path.isdir(folder):
                # a record names exactly the products in its folder
                assert fits_in(folder) == sorted(
                    os.path.basename(p)
                    for p in recorded(folder).values()), (attempt, name)
        if not os.path.exists(os.path.join(out, 'report.json')):
            delay *= 1.25   # stopped before anything ran
            continue
        statuses = []
        for r in Report.from_json(os.path.join(out, 'report.json')):
            outcomes[r.status] += 1
            statuses.append(r.status)
            products = recorded(os.path.join(out, r.name))
            if r.status == 'success':
                assert products == r.products, (attempt, r)
            else:
                assert r.status == 'cancelled', (attempt, r)
                assert products == {}, (attempt, r)
        if 'cancelled' not in statuses:
            delay *= 0.8
        elif 'success' not in statuses:
            delay *= 1.25
    # the moments really were around the end: both outcomes were seen
    assert outcomes['success'] and outcomes['cancelled'], outcomes


# --- real pipelines --------------------------------------------------------------------------
def test_uves_bias_then_dark_workflow(system_path, data_dir, tmp_path, ran):
    folder, manifest = data_dir
    pipeline_recipe('uves_cal_mbias')
    pipeline_recipe('uves_cal_mdark')
    bias_raw = cpl.esorex.load_sof(step(manifest, 'uves_cal_mbias')['sof'])
    dark_raw = cpl.esorex.load_sof(step(manifest, 'uves_cal_mdark')['sof'])
    w = Workflow()
    bias = w.add('uves_cal_mbias', bias_raw['BIAS_BLUE'], tag='BIAS_BLUE',
                 name='bias')
    w.add('uves_cal_mdark', dark_raw['DARK_BLUE'], tag='DARK_BLUE',
          calib={'MASTER_BIAS_BLUE': bias.MASTER_BIAS_BLUE}, name='dark')
    out = str(tmp_path / 'uves')
    report = w.run(n_workers=2, output_dir=out, timeout=120, **OPTS)
    assert report.ok, _summary(report)
    master_bias = report['bias'].products['MASTER_BIAS_BLUE']
    assert master_bias == os.path.join(out, 'bias', 'masterbias_blue.fits')
    master_dark = report['dark'].products['MASTER_DARK_BLUE']
    assert os.path.dirname(master_dark) == os.path.join(out, 'dark')
    assert report['dark'].started >= report['bias'].started + \
        report['bias'].wall_s
    header = fits.getheader(master_dark)
    assert header['ESO PRO CATG'] == 'MASTER_DARK_BLUE'
    assert header['ESO PRO REC1 CAL1 NAME'] == 'masterbias_blue.fits'
    assert header['ESO PRO REC1 CAL1 CATG'] == 'MASTER_BIAS_BLUE'
    # it was this workflow's bias, not another one of that name
    assert master_bias in open(report['dark'].log, encoding='utf-8').read()
    assert sorted(ran) == ['bias', 'dark']
    del ran[:]
    again = w.run(n_workers=2, output_dir=out, **OPTS)
    assert [r.status for r in again] == ['cached', 'cached'] and ran == []


def test_naco_dark_batch_from_its_sof(system_path, data_dir, tmp_path):
    folder, manifest = data_dir
    pipeline_recipe('naco_img_dark')
    s = step(manifest, 'naco_img_dark')
    out = str(tmp_path / 'naco')
    report = run_batch('naco_img_dark', [s['sof']], param={'r': '12 12 12 12'},
                       output_dir=out, timeout=120, **OPTS)
    assert report.ok, _summary(report)
    r = report.runs[0]
    sof_name = os.path.splitext(os.path.basename(s['sof']))[0]
    assert r.name == sof_name                   # a run is named by its SOF
    assert set(r.products) == set(s['expected_pro_catg'])
    assert sorted(os.path.basename(p) for p in r.products.values()) == \
        sorted(s['expected_products'])
    for tag, path in r.products.items():
        assert os.path.dirname(path) == os.path.join(out, sof_name)
        assert fits.getheader(path)['ESO PRO CATG'] == tag
        assert cpl.dfs.ProcessingInfo(path).param['r'] == '12 12 12 12'
    assert os.path.isfile(r.log)


def test_run_batch_says_what_is_wrong_with_the_raw_tag(tmp_path, raw):
    empty = tmp_path / 'empty.sof'
    empty.write_text('')
    with pytest.raises(parallel.RawTagError,
                       match='^SOF %s is empty: it lists no frames$' % empty):
        run_batch('rtest_copy', [str(empty)], **OPTS)
    with pytest.raises(ValueError, match=r'^cannot tell the raw frames of '
                       r'rtest_copy in the input of rtest_copy among its tags '
                       r'OTHER \(it takes RAW\): give tag=$'):
        run_batch('rtest_copy', [{'OTHER': raw}], **OPTS)
    with pytest.raises(parallel.RawTagError,
                       match=r'has no frames tagged RAW2 \(it has RAW\)'):
        run_batch('rtest_copy', [{'RAW': raw}], tag='RAW2', **OPTS)


def test_batch_run_names_tell_alike_sofs_apart_by_their_folders(tmp_path):
    sofs = [str(tmp_path / p) for p in ('a/x/bias.sof', 'b/x/bias.sof',
                                        'b/flat.sof', 'c/dark.sof')]
    assert _batch._sof_run_names(sofs + [['raw.fits']]) == {
        0: 'a-x-bias', 1: 'b-x-bias', 2: 'flat', 3: 'dark'}
