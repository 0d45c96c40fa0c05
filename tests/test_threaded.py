"""Background calls (cpl.threaded): the Future-like RecipeThread,
cancelling, and the bound of cpl.Recipe.set_maxthreads."""
from __future__ import annotations

import concurrent.futures
import os
import threading
import time

import psutil
import pytest

import cpl
from cpl.threaded import RecipeThread
from conftest import (is_gone, live_recipe_processes, recipe_processes,
                      remove_run_dir, run_dirs, wait_until)


def hang(seconds=3600.0, **params):
    r = cpl.Recipe('rtest_hang')
    r.tag = 'RAW'
    r.param.seconds = seconds
    for key, value in params.items():
        r.param[key] = value
    return r


def hang_processes():
    found = []
    for p in recipe_processes():
        try:
            if os.path.basename(p.cwd()).startswith('rtest_hang-'):
                found.append(p)
        except psutil.Error:
            pass
    return found


def test_threaded_call_returns_at_once_and_behaves_like_a_future(raw):
    start = time.monotonic()
    t = hang(3600)(raw, threaded=True)
    assert time.monotonic() - start < 1
    try:
        assert isinstance(t, threading.Thread)
        assert isinstance(t, RecipeThread)
        assert not t.done() and not t.cancelled()
        assert wait_until(t.running, 5)
        with pytest.raises(TimeoutError):
            t.result(timeout=0.2)
        with pytest.raises(concurrent.futures.TimeoutError):
            t.exception(timeout=0.1)
        assert wait_until(lambda: t.last_message == 'hanging', 5)
        assert 'running' in repr(t)
    finally:
        t.cancel()


def test_cancel_kills_a_running_call(raw, work_tmp):
    before = set(run_dirs(work_tmp))
    t = hang(3600)(raw, threaded=True)
    assert wait_until(lambda: len(hang_processes()) == 1, 10)
    pid = hang_processes()[0].pid
    start = time.monotonic()
    assert t.cancel() is True
    assert time.monotonic() - start < 5
    assert t.cancelled() and t.done() and not t.running()
    with pytest.raises(concurrent.futures.CancelledError):
        t.result()
    with pytest.raises(concurrent.futures.CancelledError):
        t.exception()
    with pytest.raises(concurrent.futures.CancelledError):
        t.HANG_PRODUCT
    assert wait_until(lambda: is_gone(pid), 5)
    assert t.cancel() is True          # again: still cancelled
    t.join(timeout=5)
    assert set(run_dirs(work_tmp)) == before


def test_cancel_kills_what_the_recipe_forked(raw):
    t = hang(3600, fork_child=True)(raw, threaded=True)
    assert wait_until(lambda: len(hang_processes()) == 1, 10)
    workdir = hang_processes()[0].cwd()
    pidfile = os.path.join(workdir, 'rtest_hang_child.pid')
    assert wait_until(lambda: os.path.exists(pidfile) and
                      open(pidfile).read().strip(), 10)
    child = int(open(pidfile).read())
    assert psutil.pid_exists(child)
    assert t.cancel()
    assert wait_until(lambda: is_gone(child), 5)


def test_finished_call_cannot_be_cancelled(raw):
    t = cpl.Recipe('rtest_copy')(raw, threaded=True)
    res = t.result(timeout=30)
    assert isinstance(res, cpl.Result)
    assert t.done() and not t.cancelled() and not t.running()
    assert t.cancel() is False
    assert t.result() is res and t.exception() is None


def test_attribute_access_waits_for_the_result(raw):
    t = hang(0.5)(raw, threaded=True)
    assert not t.done()
    product = t.HANG_PRODUCT            # blocks until done
    assert t.done()
    assert product[0].header['ESO PRO CATG'] == 'HANG_PRODUCT'
    assert t['HANG_PRODUCT'] is product
    assert 'HANG_PRODUCT' in t and len(t) == 1
    assert [tag for tag, _ in t] == ['HANG_PRODUCT']
    assert t.stat.return_code == 0
    with pytest.raises(AttributeError):
        t._private_thing


def test_failing_threaded_call_raises_on_access(raw):
    r = cpl.Recipe('rtest_error')
    r.tag = 'RAW'
    t = r(raw, threaded=True)
    with pytest.raises(cpl.CplError) as info:
        t.ERROR_PRODUCT
    try:
        assert 'outer failure' in str(info.value)
        assert t.done() and not t.cancelled()
        assert t.exception() is info.value
        with pytest.raises(cpl.CplError):
            t.result()
        with pytest.raises(cpl.CplError):
            t['ERROR_PRODUCT']
    finally:
        remove_run_dir(info.value)


def test_crash_in_a_threaded_call(raw):
    r = cpl.Recipe('rtest_crash')
    r.tag = 'RAW'
    r.param.mode = 'abort'
    r.env['CPLRUN_GDB'] = ''
    t = r(raw, threaded=True)
    error = t.exception(timeout=30)
    assert isinstance(error, cpl.RecipeCrash) and error.signal == 6
    remove_run_dir(error)


def test_threaded_timeout(raw):
    t = hang(3600)(raw, threaded=True, timeout=0.5)
    with pytest.raises(cpl.RecipeTimeout) as info:
        t.result(timeout=10)
    remove_run_dir(info.value)


def test_done_callbacks(raw):
    calls = []
    t = hang(0.3)(raw, threaded=True)
    t.add_done_callback(lambda th: calls.append(('early', th.done())))
    t.result(timeout=30)
    assert wait_until(lambda: calls == [('early', True)], 5)
    t.add_done_callback(lambda th: calls.append(('late', th.done())))
    assert calls == [('early', True), ('late', True)]


def test_recipe_threaded_attribute(raw):
    r = cpl.Recipe('rtest_copy', threaded=True)
    t = r(raw)
    assert isinstance(t, RecipeThread)
    assert 'PRODUCT' in t.result(timeout=30)
    r.threaded = False
    assert isinstance(r(raw), cpl.Result)
    r.threaded = True
    assert isinstance(r(raw, threaded=False), cpl.Result)


def test_arguments_are_checked_before_the_thread_exists(raw):
    r = cpl.Recipe('rtest_params')
    threads = threading.active_count()
    with pytest.raises(KeyError):
        r(raw, threaded=True, param={'nope': 1})
    with pytest.raises(FileNotFoundError):
        r('/nonexistent/x.fits', threaded=True)
    assert threading.active_count() == threads


# --- set_maxthreads ---------------------------------------------------------------
def sample_while(threads, interval=0.01, timeout=60):
    """(most recipe processes, most Python threads) seen until all end."""
    most_processes = most_threads = 0
    deadline = time.monotonic() + timeout
    while not all(t.done() for t in threads):
        assert time.monotonic() < deadline, 'calls did not finish'
        most_processes = max(most_processes, len(live_recipe_processes()))
        most_threads = max(most_threads, threading.active_count())
        time.sleep(interval)
    return most_processes, most_threads


def test_maxthreads_one_runs_one_at_a_time(raw):
    r = hang(0.1)
    r(raw)      # the server is up before counting threads
    baseline = threading.active_count()
    cpl.Recipe.set_maxthreads(1)
    try:
        threads = [r(raw, threaded=True) for _ in range(20)]
        most_processes, most_threads = sample_while(threads)
        assert most_processes == 1
        # Queued calls hold no OS thread.
        assert most_threads <= baseline + 2
        assert all('HANG_PRODUCT' in t.result() for t in threads)
    finally:
        cpl.Recipe.set_maxthreads(65536)


def test_maxthreads_two_reaches_two(raw):
    r = hang(0.4)
    r(raw)
    cpl.Recipe.set_maxthreads(2)
    try:
        start = time.monotonic()
        threads = [r(raw, threaded=True) for _ in range(6)]
        most_processes, _ = sample_while(threads)
        elapsed = time.monotonic() - start
        assert most_processes == 2
        assert 1.1 < elapsed < 10       # 3 rounds of 0.4 s
        assert all(t.exception() is None for t in threads)
    finally:
        cpl.Recipe.set_maxthreads(65536)


def test_maxthreads_counts_synchronous_calls(raw):
    cpl.Recipe.set_maxthreads(1)
    try:
        t = hang(1.0)(raw, threaded=True)
        assert wait_until(t.running, 5)
        start = time.monotonic()
        cpl.Recipe('rtest_copy')(raw)   # waits for the threaded call
        assert time.monotonic() - start > 0.5
        assert t.done()
    finally:
        cpl.Recipe.set_maxthreads(65536)


def test_cancel_a_queued_call(raw, work_tmp):
    cpl.Recipe.set_maxthreads(1)
    try:
        first = hang(0.5)(raw, threaded=True)
        queued = hang(0.5)(raw, threaded=True)
        assert not queued.running()
        assert queued.cancel() is True
        assert queued.cancelled() and queued.done()
        queued.join(timeout=1)
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result()
        assert 'HANG_PRODUCT' in first.result(timeout=30)
        time.sleep(0.3)
        assert not queued.running() and queued.cancelled()
        # the slot is free for others
        assert 'PRODUCT' in cpl.Recipe('rtest_copy')(raw)
    finally:
        cpl.Recipe.set_maxthreads(65536)


def test_raising_the_limit_starts_queued_calls(raw):
    cpl.Recipe.set_maxthreads(1)
    try:
        threads = [hang(0.6)(raw, threaded=True) for _ in range(3)]
        assert wait_until(threads[0].running, 5)
        assert not threads[1].running() and not threads[2].running()
        cpl.Recipe.set_maxthreads(3)
        assert wait_until(lambda: all(t.running() or t.done()
                                      for t in threads), 2)
        for t in threads:
            t.result(timeout=30)
    finally:
        cpl.Recipe.set_maxthreads(65536)


def test_maxthreads_must_be_positive():
    with pytest.raises(ValueError):
        cpl.Recipe.set_maxthreads(0)


# --- every run takes a slot -----------------------------------------------------------
def most_processes_during(work, *args, **kwargs):
    """(what work returned, most recipe processes alive at once while it
    ran)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(work, *args, **kwargs)
        most = 0
        while not future.done():
            most = max(most, len(live_recipe_processes()))
            time.sleep(0.01)
        return future.result(), most


def test_maxthreads_bounds_map_and_workflow_runs(raw, raw_images, tmp_path):
    from cpl.parallel import Workflow
    r = hang(0.3)
    r(raw)
    cpl.Recipe.set_maxthreads(1)
    report, most = most_processes_during(
        r.map, raw_images[:5], n_workers=5, output_dir=str(tmp_path / 'map'),
        progress=False)
    assert [run.status for run in report.runs] == ['success'] * 5
    assert most == 1
    w = Workflow()
    for i in range(5):
        w.add(r, raw_images[i], name='hang%d' % i)
    threaded = r(raw, threaded=True)        # and a call besides
    report, most = most_processes_during(
        w.run, n_workers=5, output_dir=str(tmp_path / 'wf'), progress=False)
    assert [run.status for run in report.runs] == ['success'] * 5
    assert 'HANG_PRODUCT' in threaded.result(timeout=30)
    assert most == 1


def test_a_run_waiting_for_its_slot_can_be_cancelled(raw, no_new_run_dirs):
    from cpl._run import Cancelled, RunControl, execute
    cpl.Recipe.set_maxthreads(1)
    busy = hang()(raw, threaded=True)
    try:
        assert wait_until(busy.running, 10)
        control = RunControl()
        spec = cpl.Recipe('rtest_copy')._spec((raw,), {})
        waiting = concurrent.futures.ThreadPoolExecutor(1)
        future = waiting.submit(execute, spec, control)
        time.sleep(0.5)
        assert not future.done()            # it waits for the slot
        control.cancel_requested.set()
        with pytest.raises(Cancelled):
            future.result(timeout=5)
        waiting.shutdown()
        assert busy.running()
    finally:
        busy.cancel()
    # the slot it never had is not lost: the next call runs at once
    assert 'PRODUCT' in cpl.Recipe('rtest_copy')(raw)
