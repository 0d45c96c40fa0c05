"""Fault injection with real processes: recipes that crash, abort, free
twice, call exit(), hang with children of their own, start daemons, are
SIGKILLed from outside, write huge, chatter or bypass CPL's log; a parent
interrupted with SIGINT or SIGKILLed during a batch; an output folder that
cannot be written; a full disk.

Each case is checked for: the right exception or report status, a message
naming the recipe, the input and the log, no process left (read from
/proc), no run folder left but the one the message names, no half-written
product where the finished ones go, and the other runs of the same batch
unaffected."""
from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import psutil
import pytest
from astropy.io import fits

import cpl
from cpl import _runner, parallel
from cpl.parallel import Report, Workflow, run_batch
from cpl.parallel import _execution
from conftest import (REPO, is_gone, load_module, proc_state, recipe_build,
                      recipe_processes, remove_run_dir, run_dirs, wait_until,
                      write_image)

OPTS = dict(progress=False)
HERE = os.path.dirname(os.path.abspath(__file__))


proctree = load_module('cplrun_bench_proctree',
                       os.path.join(REPO, 'bench', 'proctree.py'))
#: pids of every live process below this one
descendants = proctree.descendants


@pytest.fixture(autouse=True)
def _faults(fault_recipes):
    """The misbehaving recipes are on the path for every test here."""


# --- helpers -------------------------------------------------------------------------
def image(folder, name, value=1.0):
    return write_image(os.path.join(str(folder), name + '.fits'),
                       np.full((3, 3), value, dtype=np.float32), OBJECT=name)


def leftover_processes():
    """Processes below the recipe servers (the servers themselves stay,
    with their waiting spares)."""
    return proctree.leftovers({p.pid for p in psutil.Process().children()})


def assert_no_processes_left(*pids, timeout=5):
    assert wait_until(lambda: not leftover_processes(), timeout), \
        'processes left: %s' % leftover_processes()
    alive = [p for p in pids if p and not is_gone(p)]
    assert not alive, 'still alive: %s' % alive


def assert_names_it(text, recipe, inputs, log_file):
    assert recipe in text, text
    for path in inputs:
        assert path in text, (path, text)
    assert log_file and log_file in text, text


def fits_files(folder):
    """FITS files in folder and below, except in kept work folders."""
    found = []
    for top, dirs, files in os.walk(str(folder)):
        dirs[:] = [d for d in dirs if d != '.cplrun-work']
        found += [os.path.join(top, f) for f in files if f.endswith('.fits')]
    return sorted(found)


def pid_file(folder, name):
    """The pid a recipe wrote into a file of its work folder(s)."""
    for top, _dirs, files in os.walk(str(folder)):
        if name in files:
            with open(os.path.join(top, name)) as f:
                return int(f.read())
    return None


@contextlib.contextmanager
def new_run_dirs_only(work_tmp):
    """No run folder appears in the temporary folder but the allowed ones
    (a list the block fills in)."""
    before = set(run_dirs(work_tmp))
    allowed = []
    yield allowed
    left = set(run_dirs(work_tmp)) - before
    assert left <= {os.path.basename(a) for a in allowed}, sorted(left)


@contextlib.contextmanager
def mounted(folder, options):
    """A tmpfs mounted at folder by this test (we are root: chmod would
    not stop us)."""
    os.makedirs(folder, exist_ok=True)
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs',
                           str(folder)], stderr=subprocess.PIPE)
    if proc.returncode != 0:
        pytest.skip('cannot mount a tmpfs: %s' % proc.stderr.decode())
    try:
        yield str(folder)
    finally:
        subprocess.run(['umount', '-l', str(folder)])


def test_descendants_sees_grandchildren_and_skips_zombies():
    # Every "no process left" check here rests on this scan.
    shell = subprocess.Popen(['sh', '-c', 'sleep 60 & echo $!; wait'],
                             stdout=subprocess.PIPE)
    grandchild = None
    try:
        grandchild = int(shell.stdout.readline())
        assert wait_until(
            lambda: {shell.pid, grandchild} <= set(descendants()), 5), \
            descendants()
        assert os.getpid() not in descendants()
        zombie = subprocess.Popen(['true'])
        assert wait_until(lambda: proc_state(zombie.pid) == 'Z', 5)
        assert zombie.pid not in descendants()
        zombie.wait()
    finally:
        if grandchild is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)
        shell.kill()
        shell.wait()
        shell.stdout.close()
    assert wait_until(lambda: shell.pid not in descendants()
                      and grandchild not in descendants(), 5)


# --- one batch, every kind of fault ------------------------------------------------------
#: run name -> (recipe, parameters, expected status, text the error holds)
FAULTS = {
    'ok1': ('rtest_copy', {}, 'success', None),
    'segv': ('rtest_crash', {'mode': 'segv'}, 'crashed', 'SIGSEGV'),
    'ok2': ('rtest_copy', {}, 'success', None),
    'abort': ('rtest_crash', {'mode': 'abort'}, 'crashed', 'SIGABRT'),
    'doublefree': ('rtest_crash', {'mode': 'doublefree'}, 'crashed',
                   'SIGABRT'),
    'exit3': ('rtest_crash', {'mode': 'exit', 'exit_code': 3}, 'crashed',
              'exit status 3'),
    'exit0': ('rtest_crash', {'mode': 'exit', 'exit_code': 0}, 'crashed',
              'exit status 0'),
    'heap': ('rtest_heap', {'threads': 2}, 'crashed', 'SIGABRT'),
    'error': ('rtest_error', {}, 'failed', 'outer failure'),
    'hang': ('rtest_hang', {'fork_child': True}, 'timeout', 'timed out'),
    'oom': ('rtest_hang', {'seconds': 60.0}, 'crashed', 'SIGKILL'),
    'daemon': ('rtest_spawn', {}, 'success', None),
    'big': ('rtest_product', {'kind': 'sparse', 'gib': 2.1}, 'success', None),
    'chatter': ('rtest_chatter', {'seconds': 1.0, 'rate': 3000}, 'success',
                None),
    'ok3': ('rtest_copy', {}, 'success', None),
}

#: esorex's switches against signing products: the DATAMD5 and CHECKSUM
#: of a sparse 2 GiB product take some 10 s to compute, more than the
#: batch's timeout, and nothing the tests of big products look at.
UNSIGNED = {'ESOREX_NO_DATAMD5': '1', 'ESOREX_NO_CHECKSUM': '1'}


def test_a_batch_with_every_fault_keeps_the_good_runs(tmp_path, work_tmp):
    out = tmp_path / 'out'
    raws = {name: image(tmp_path, 'raw_' + name) for name in FAULTS}
    w = Workflow()
    for name, (recipe, param, _status, _text) in FAULTS.items():
        w.add(recipe, raws[name], tag='RAW', param=param, name=name,
              env=UNSIGNED if name == 'big' else None)

    # 'oom' is killed from outside, as the OOM killer does
    killed = []

    def oom_killer():
        folder = str(out / 'oom' / '.cplrun-work')
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            for p in recipe_processes():
                try:
                    if p.cwd().startswith(folder):
                        p.kill()
                        killed.append(p.pid)
                        return
                except psutil.Error:
                    pass
            time.sleep(0.02)
    killer = threading.Thread(target=oom_killer)
    killer.start()
    start = time.monotonic()
    with new_run_dirs_only(work_tmp):
        try:
            report = w.run(n_workers=4, output_dir=str(out), timeout=4,
                           **OPTS)
        finally:
            killer.join()
    assert time.monotonic() - start < 40
    assert killed

    assert {r.name: r.status for r in report} == {
        name: f[2] for name, f in FAULTS.items()}
    for r in report:
        recipe, _param, status, text = FAULTS[r.name]
        run_dir = out / r.name
        assert os.path.isfile(r.log), r.name
        if status == 'success':
            assert r.error is None
            assert os.path.isfile(run_dir / parallel.RUN_RECORD)
            assert all(os.path.isfile(p) for p in r.products.values())
            assert not os.path.exists(run_dir / '.cplrun-work')
            continue
        # a message naming the recipe, the input and the log
        kept = [d for d in os.listdir(run_dir / '.cplrun-work')]
        assert len(kept) == 1, (r.name, kept)
        log_file = str(run_dir / '.cplrun-work' / kept[0] / '.cplrun-log')
        assert_names_it(r.error, recipe, [raws[r.name]], log_file)
        assert text in r.error, (r.name, r.error)
        # nothing of it looks finished
        assert r.products == {}
        assert fits_files(run_dir) == [], r.name
        assert not os.path.exists(run_dir / parallel.RUN_RECORD)

    # the good runs are whole
    for name in ('ok1', 'ok2', 'ok3'):
        data = fits.getdata(report[name].products['PRODUCT'])
        np.testing.assert_array_equal(data, fits.getdata(raws[name]))
    big = report['big'].products['BIG']
    assert os.path.getsize(big) > 2 ** 31
    assert os.stat(big).st_blocks * 512 < 2 ** 20        # still a hole
    assert fits.getheader(big)['NAXIS2'] > 32768
    chatter = open(report['chatter'].log, encoding='utf-8',
                   errors='replace').read()
    done = [line for line in chatter.splitlines() if 'chatter done:' in line]
    assert len(done) == 1 and int(done[0].split()[-2]) > 2000
    assert 'direct stderr 999' in chatter
    assert 'double free' in open(report['doublefree'].log,
                                 errors='replace').read()
    assert 'SIGKILL from outside' in report['oom'].error
    saved = Report.from_json(str(out / 'report.json'))
    assert [r.status for r in saved] == [r.status for r in report]

    # no process is left: not the hung run's child, not the daemon
    hang_child = pid_file(out / 'hang', 'rtest_hang_child.pid')
    daemon = None
    for line in open(report['daemon'].log, encoding='utf-8'):
        if 'started daemon' in line:
            daemon = int(line.split('started daemon')[1].split()[0])
    assert hang_child and daemon
    assert_no_processes_left(hang_child, daemon, *killed)


# --- the same faults in real pipeline recipes ------------------------------------------------
@pytest.fixture(scope='module')
def inject_lib(tmp_path_factory):
    """cplrun_inject.so: preloaded, makes a real recipe crash, exit or
    hang when it first writes a FITS file (tests/recipes/inject)."""
    return recipe_build.build_inject(str(tmp_path_factory.mktemp('inject')))


REAL_FAULTS = {
    'bias': ('uves_cal_mbias', '', 'success', None),
    'bias_segv': ('uves_cal_mbias', 'segv', 'crashed', 'SIGSEGV'),
    'naco': ('naco_img_dark', '', 'success', None),
    'naco_abort': ('naco_img_dark', 'abort', 'crashed', 'SIGABRT'),
    'bias_exit': ('uves_cal_mbias', 'exit', 'crashed', 'exit status 7'),
    'naco_hang': ('naco_img_dark', 'hang', 'timeout', 'timed out'),
    'bias_oom': ('uves_cal_mbias', 'hang', 'crashed', 'SIGKILL'),
    'bias2': ('uves_cal_mbias', '', 'success', None),
}


def test_real_recipes_crashing_hanging_and_killed(system_path, data_dir,
                                                  inject_lib, tmp_path,
                                                  work_tmp):
    folder, manifest = data_dir
    steps = {s['recipe']: s for s in manifest['steps']}
    try:
        cpl.Recipe('uves_cal_mbias'), cpl.Recipe('naco_img_dark')
    except cpl.RecipeNotFoundError:
        pytest.skip('the UVES and NACO pipelines are not installed')
    inputs = {'uves_cal_mbias': ('BIAS_BLUE', cpl.esorex.load_sof(
        steps['uves_cal_mbias']['sof'])['BIAS_BLUE']),
        'naco_img_dark': ('CAL_DARK', cpl.esorex.load_sof(
            steps['naco_img_dark']['sof'])['CAL_DARK'])}
    out = tmp_path / 'out'
    w = Workflow()
    for name, (recipe, mode, _status, _text) in REAL_FAULTS.items():
        tag, raw = inputs[recipe]
        param = {'r': '12 12 12 12'} if recipe == 'naco_img_dark' else {}
        env = {'LD_PRELOAD': inject_lib, 'CPLRUN_INJECT': mode} if mode \
            else {}
        w.add(recipe, raw, tag=tag, param=param, env=env, name=name)
    killed = []

    def oom_killer():
        mark = str(out / 'bias_oom' / '.cplrun-work')
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            for p in recipe_processes():
                try:
                    if p.cwd().startswith(mark) and os.path.exists(
                            os.path.join(p.cwd(), 'cplrun_inject_child.pid')):
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                        return
                except (psutil.Error, OSError):
                    pass
            time.sleep(0.02)
    killer = threading.Thread(target=oom_killer)
    killer.start()
    with new_run_dirs_only(work_tmp):
        try:
            report = w.run(n_workers=4, output_dir=str(out), timeout=4,
                           **OPTS)
        finally:
            killer.join()
    assert {r.name: r.status for r in report} == {
        name: f[2] for name, f in REAL_FAULTS.items()}, \
        {r.name: r.error for r in report}
    for r in report:
        recipe, mode, status, text = REAL_FAULTS[r.name]
        run_dir = out / r.name
        if status == 'success':
            assert r.products and all(fits.getheader(p)['ESO PRO CATG'] == t
                                      for t, p in r.products.items())
            continue
        kept = os.listdir(run_dir / '.cplrun-work')
        log_file = str(run_dir / '.cplrun-work' / kept[0] / '.cplrun-log')
        raw = inputs[recipe][1]
        assert_names_it(r.error, recipe, raw[:3], log_file)
        assert text in r.error, r.error
        assert 'cplrun_inject: %s' % mode in open(r.log).read()
        assert fits_files(run_dir) == []
        assert not os.path.exists(run_dir / parallel.RUN_RECORD)
    children = [pid_file(out / name, 'cplrun_inject_child.pid')
                for name in ('naco_hang', 'bias_oom')]
    assert all(children)
    assert_no_processes_left(*children, *killed)


# --- single calls: the exception, its message, what is left -------------------------------
@pytest.mark.parametrize('mode, exit_code, signum', [
    ('segv', 3, signal.SIGSEGV), ('abort', 3, signal.SIGABRT),
    ('doublefree', 3, signal.SIGABRT), ('exit', 3, None), ('exit', 0, None)])
def test_a_crashing_call(tmp_path, work_tmp, mode, exit_code, signum):
    raw = image(tmp_path, 'crash input')
    out = tmp_path / 'out'
    r = cpl.Recipe('rtest_crash')
    r.temp_dir = str(tmp_path / 'work')
    with pytest.raises(cpl.RecipeCrash) as info:
        r(raw, tag='RAW', param={'mode': mode, 'exit_code': exit_code},
          output_dir=str(out))
    e = info.value
    assert not isinstance(e, cpl.RecipeTimeout)
    assert e.recipe == 'rtest_crash' and e.inputs == [raw]
    assert e.signal == signum
    assert e.exit_code == (None if signum else exit_code)
    assert_names_it(str(e), 'rtest_crash', [raw], e.log_file)
    assert e.workdir in str(e)
    assert 'about to crash: %s' % mode in open(e.log_file).read()
    # the half-made product stays in the kept folder, nowhere else
    assert os.listdir(e.workdir).count('partial.fits') == 1
    assert not out.exists() or fits_files(out) == []
    assert run_dirs(str(tmp_path / 'work')) == [os.path.basename(e.workdir)]
    assert_no_processes_left()


@pytest.mark.parametrize('gdb_delay, timeout', [(3, 1), (60, 1)])
def test_a_crash_at_its_deadline_is_a_crash_not_a_timeout(
        tmp_path, work_tmp, monkeypatch, gdb_delay, timeout):
    """Under load gdb may take seconds to attach to a recipe that crashed
    in time: the run is the crash it is (signal, and the backtrace when
    gdb finishes within the grace), not a timeout.  A gdb slower than the
    grace is killed, the crash still reported."""
    real_gdb = shutil.which('gdb')
    slow_gdb = tmp_path / 'gdb'
    slow_gdb.write_text('#!/bin/sh\nsleep %d\nexec %s "$@"\n'
                        % (gdb_delay, real_gdb))
    slow_gdb.chmod(0o755)
    r = cpl.Recipe('rtest_crash')
    r.env['CPLRUN_GDB'] = str(slow_gdb)
    monkeypatch.setattr(cpl._run, 'CRASH_REPORT_SECONDS', 10.0)
    with pytest.raises(cpl.RecipeCrash) as info:
        r(image(tmp_path, 'crash input'), tag='RAW',
          param={'mode': 'segv'}, timeout=timeout)
    e = info.value
    assert not isinstance(e, cpl.RecipeTimeout), str(e)
    assert e.signal == signal.SIGSEGV
    assert 'SIGSEGV' in str(e)
    if gdb_delay < 10:
        assert any('rtest_crash' in line or 'crash' in line
                   for line in e.lines[1:]), e.lines
    assert_no_processes_left()


@pytest.mark.parametrize('threads', [0, 2])
def test_a_crash_inside_free_with_threads_running(raw, work_tmp, threads):
    """glibc finds the heap corrupted inside free() and aborts, holding
    its malloc lock: the crash handler must not wait for it (fork() in
    the handler did, and the run hung until its timeout)."""
    start = time.monotonic()
    with pytest.raises(cpl.RecipeCrash) as info:
        cpl.Recipe('rtest_heap')(raw, tag='RAW', param={'threads': threads},
                                 timeout=60)
    assert time.monotonic() - start < 30
    e = info.value
    assert not isinstance(e, cpl.RecipeTimeout)
    assert e.signal == signal.SIGABRT
    output = open(os.path.join(e.workdir, '.cplrun-output'),
                  errors='replace').read()
    assert 'corruption' in output or 'invalid next size' in output, output
    assert_no_processes_left()
    remove_run_dir(e)


def test_a_timeout_kills_the_whole_process_group(raw, work_tmp):
    r = cpl.Recipe('rtest_hang')
    start = time.monotonic()
    with new_run_dirs_only(work_tmp) as kept:
        with pytest.raises(cpl.RecipeTimeout) as info:
            r(raw, tag='RAW', param={'fork_child': True}, timeout=1)
        kept.append(info.value.workdir)
    assert time.monotonic() - start < 1 + 5
    e = info.value
    assert 'timed out after 1 s' in str(e)
    assert_names_it(str(e), 'rtest_hang', [raw], e.log_file)
    child = pid_file(e.workdir, 'rtest_hang_child.pid')
    assert child is not None
    assert_no_processes_left(child)
    remove_run_dir(e)


@pytest.mark.parametrize('seconds, timeout', [(0.0, None), (30.0, 1.0)])
def test_a_daemon_the_recipe_detached_does_not_outlive_the_run(
        raw, work_tmp, seconds, timeout):
    """setsid() and a double fork leave the run's process group: the
    runner still finds and ends it when the run ends."""
    r = cpl.Recipe('rtest_spawn')
    t = r(raw, tag='RAW', param={'seconds': seconds}, timeout=timeout,
          threaded=True)
    daemon = None
    deadline = time.monotonic() + 10
    while daemon is None and time.monotonic() < deadline:
        for p in recipe_processes():
            try:
                daemon = pid_file(p.cwd(), 'rtest_spawn_child.pid')
            except psutil.Error:
                continue
            if daemon:
                break
        if t.done() and daemon is None:
            break
        time.sleep(0.02)
    if timeout is None:
        res = t.result(timeout=20)
        line = [m for m in res.log.info if 'started daemon' in m][0]
        daemon = int(line.split('started daemon')[1].split()[0])
    else:
        with pytest.raises(cpl.RecipeTimeout) as info:
            t.result(timeout=20)
        remove_run_dir(info.value)
    assert daemon is not None
    assert_no_processes_left(daemon)


def test_sigkill_from_outside(raw, work_tmp):
    r = cpl.Recipe('rtest_hang')
    t = r(raw, tag='RAW', threaded=True)
    assert wait_until(lambda: t._control.pid is not None, 10)
    os.kill(t._control.pid, signal.SIGKILL)
    with pytest.raises(cpl.RecipeCrash) as info:
        t.result(timeout=20)
    e = info.value
    assert e.signal == signal.SIGKILL
    assert 'SIGKILL from outside' in str(e) and 'out-of-memory' in str(e)
    assert_names_it(str(e), 'rtest_hang', [raw], e.log_file)
    assert 'hanging' in open(e.log_file).read()
    assert_no_processes_left()
    remove_run_dir(e)


# --- the parent interrupted or killed ---------------------------------------------------
BATCH_SCRIPT = textwrap.dedent(r'''
    import json, sys
    import cpl
    from cpl.parallel import run_batch
    cpl.Recipe.path = [sys.argv[1]]
    raws = json.loads(sys.argv[2])
    try:
        run_batch('rtest_hang', raws, tag='RAW', param={'fork_child': True},
                  n_workers=int(sys.argv[4]), output_dir=sys.argv[3],
                  progress=False)
    except KeyboardInterrupt:
        print('interrupted', flush=True)
        sys.exit(130)
    print('finished', flush=True)
''')


def start_batch(recipe_dir, tmp_path, n_runs, n_workers):
    raws = [image(tmp_path, 'in%d' % i) for i in range(n_runs)]
    out = str(tmp_path / 'out')
    proc = subprocess.Popen(
        [sys.executable, '-c', BATCH_SCRIPT, recipe_dir, json.dumps(raws),
         out, str(n_workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(os.environ, TMPDIR=str(tmp_path)))
    me = psutil.Process(proc.pid)

    def running():
        """(servers, recipe processes, their forked children) once all
        n_workers runs have forked their child."""
        try:
            servers = [c for c in me.children()
                       if 'cplrun-runner' in ' '.join(c.cmdline())]
            runs = [r for s in servers for r in s.children()
                    if r.cwd().startswith(out)]
            children = [pid_file(r.cwd(), 'rtest_hang_child.pid')
                        for r in runs]
        except psutil.Error:
            return None
        if len(runs) == n_workers and all(children):
            return [s.pid for s in servers], [r.pid for r in runs], children
        return None
    found = None
    deadline = time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        found = running()
        time.sleep(0.05)
    assert found, 'the batch did not start its runs'
    return proc, out, found


def test_ctrl_c_during_a_batch(recipe_dir, tmp_path):
    proc, out, (servers, runs, children) = start_batch(
        recipe_dir, tmp_path, n_runs=4, n_workers=2)
    os.kill(proc.pid, signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, stderr.decode()
    assert stdout.decode().strip() == 'interrupted'
    report = Report.from_json(os.path.join(out, 'report.json'))
    assert [r.status for r in report] == ['cancelled'] * 4
    for r in report:
        assert not os.path.exists(os.path.join(out, r.name,
                                               parallel.RUN_RECORD))
        assert fits_files(os.path.join(out, r.name)) == []
    assert wait_until(lambda: all(is_gone(p) for p in
                                  servers + runs + children), 10), \
        [p for p in servers + runs + children if not is_gone(p)]
    # cancelled runs leave no folder
    assert run_dirs(str(tmp_path)) == []
    for r in report:
        assert not os.path.exists(os.path.join(out, r.name, '.cplrun-work'))


def test_sigkill_of_the_parent_during_a_batch(recipe_dir, tmp_path):
    proc, out, (servers, runs, children) = start_batch(
        recipe_dir, tmp_path, n_runs=4, n_workers=4)
    proc.kill()
    proc.communicate(timeout=30)
    watched = servers + runs + children
    assert wait_until(lambda: all(is_gone(p) for p in watched), 10), \
        [p for p in watched if not is_gone(p)]


# --- where the products go cannot be written --------------------------------------------
@contextlib.contextmanager
def unwritable_folder(kind, tmp_path):
    if kind == 'readonly mount':
        with mounted(tmp_path / 'ro', 'ro,size=1m') as folder:
            yield folder
    elif kind == 'file':
        path = tmp_path / 'a_file'
        path.write_bytes(b'not a folder')
        yield str(path)
        assert path.read_bytes() == b'not a folder'
    else:
        path = tmp_path / 'immutable'
        path.mkdir()
        if subprocess.run(['chattr', '+i', str(path)]).returncode != 0:
            pytest.skip('chattr +i is not supported here')
        try:
            yield str(path)
        finally:
            subprocess.run(['chattr', '-i', str(path)])


@pytest.mark.parametrize('kind', ['readonly mount', 'file', 'immutable'])
def test_an_output_folder_that_cannot_be_written(raw, tmp_path, work_tmp,
                                                 monkeypatch, kind):
    started = []
    real = _execution.run_task
    monkeypatch.setattr(_execution, 'run_task',
                        lambda *a, **k: started.append(1) or real(*a, **k))
    with unwritable_folder(kind, tmp_path) as folder:
        before = set(run_dirs(work_tmp))
        r = cpl.Recipe('rtest_copy')
        with pytest.raises(OSError) as info:
            r(raw, output_dir=folder)
        text = str(info.value)
        assert 'rtest_copy' in text and folder in text
        assert 'nothing was run' in text
        with pytest.raises(OSError) as info:
            run_batch('rtest_copy', [raw, raw], output_dir=folder, **OPTS)
        assert folder in str(info.value) and 'nothing was run' in \
            str(info.value)
        assert started == []
        assert set(run_dirs(work_tmp)) == before
        if kind != 'file':
            assert os.listdir(folder) == []
    assert_no_processes_left()


def test_products_that_cannot_be_moved_are_kept(raw, tmp_path, work_tmp):
    """The work folder can be made elsewhere, the output folder is
    read-only: the run happens, its products stay in its folder."""
    with mounted(tmp_path / 'ro', 'ro,size=1m') as folder:
        r = cpl.Recipe('rtest_product')
        r.temp_dir = str(tmp_path / 'work')
        with pytest.raises(OSError) as info:
            r(raw, tag='RAW', param={'also_ok': True}, output_dir=folder)
        text = str(info.value)
        assert 'rtest_product' in text and raw in text and folder in text
        assert os.listdir(folder) == []
    kept = run_dirs(str(tmp_path / 'work'))
    assert len(kept) == 1 and kept[0] in text
    workdir = tmp_path / 'work' / kept[0]
    assert os.path.join(str(workdir), '.cplrun-log') in text
    assert {'rtest_product.fits', 'rtest_product_ok.fits'} <= set(
        os.listdir(workdir))
    assert fits.getdata(str(workdir / 'rtest_product.fits')).shape == (4, 4)


def test_a_run_folder_that_is_a_file_fails_that_run_only(raw, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'bad').write_bytes(b'in the way')
    w = Workflow()
    w.add('rtest_copy', raw, name='good')
    w.add('rtest_copy', raw, name='bad')
    w.add('rtest_copy', raw, name='good2')
    report = w.run(n_workers=2, output_dir=str(out), **OPTS)
    assert {r.name: r.status for r in report} == {
        'good': 'success', 'bad': 'failed', 'good2': 'success'}
    assert str(out / 'bad') in report['bad'].error
    assert (out / 'bad').read_bytes() == b'in the way'


# --- a full disk ---------------------------------------------------------------------------
def test_a_full_disk_fails_that_run_only(tmp_path, work_tmp):
    out = tmp_path / 'out'
    raws = {n: image(tmp_path, 'raw_' + n) for n in ('a', 'full', 'b')}
    with mounted(out / 'full', 'size=2m'):
        w = Workflow()
        w.add('rtest_product', raws['a'], tag='RAW', name='a')
        w.add('rtest_product', raws['full'], tag='RAW',
              param={'size': 1024}, name='full')     # 4 MiB
        w.add('rtest_product', raws['b'], tag='RAW', name='b')
        with new_run_dirs_only(work_tmp):
            report = w.run(n_workers=3, output_dir=str(out), **OPTS)
        assert {r.name: r.status for r in report} == {
            'a': 'success', 'full': 'failed', 'b': 'success'}
        r = report['full']
        kept = os.listdir(out / 'full' / '.cplrun-work')
        log_file = str(out / 'full' / '.cplrun-work' / kept[0] / '.cplrun-log')
        assert_names_it(r.error, 'rtest_product', [raws['full']], log_file)
        assert 'error writing' in r.error or 'write error' in r.error
        assert fits_files(out / 'full') == []
        assert not os.path.exists(out / 'full' / parallel.RUN_RECORD)
        for name in ('a', 'b'):
            assert fits.getdata(report[name].products['PRODUCT']).shape == \
                (4, 4)
    assert_no_processes_left()


def fill(folder):
    """Fills the file system of folder to the last byte (a file of zeros
    written until ENOSPC); returns the file."""
    path = os.path.join(folder, 'filler')
    with open(path, 'wb') as f:
        try:
            while True:
                f.write(b'\0' * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == 28
    return path


def test_a_full_disk_when_the_run_record_is_written(tmp_path, work_tmp,
                                                    monkeypatch):
    """The disk fills up just after the run ended well, before its record
    is written: that run fails, saying so; the others go on."""
    out = tmp_path / 'out'
    raws = {n: image(tmp_path, 'raw_' + n) for n in ('a', 'full', 'b')}
    with mounted(out / 'full', 'size=2m') as disk:
        real_remove = cpl._run._remove_workdir

        def then_fill(workdir):
            # the last step of a run that succeeded, before any record
            real_remove(workdir)
            if workdir.startswith(disk + os.sep):
                fill(disk)
        monkeypatch.setattr(cpl._run, '_remove_workdir', then_fill)
        w = Workflow()
        w.add('rtest_hang', raws['a'], tag='RAW', param={'seconds': 1.5},
              name='a')
        w.add('rtest_product', raws['full'], tag='RAW', name='full')
        w.add('rtest_hang', raws['b'], tag='RAW', param={'seconds': 1.5},
              name='b')
        with new_run_dirs_only(work_tmp):
            report = w.run(n_workers=3, output_dir=str(out), **OPTS)
        assert {r.name: r.status for r in report} == {
            'a': 'success', 'full': 'failed', 'b': 'success'}
        error = report['full'].error
        assert os.path.join(str(out), 'full', parallel.RUN_RECORD) in error
        assert 'No space left on device' in error
        # nothing stray: no product, no record, no temporary file
        assert sorted(os.listdir(disk)) == ['filler', 'full.log']
        for name in ('a', 'b'):
            assert os.path.isfile(report[name].products['HANG_PRODUCT'])
            assert os.path.isfile(out / name / parallel.RUN_RECORD)
    assert_no_processes_left()


def test_a_full_disk_while_products_are_copied(raw, tmp_path):
    """Products copied across file systems: a copy that does not fit
    leaves nothing in the output folder, not even a part."""
    with mounted(tmp_path / 'small', 'size=2m') as folder:
        r = cpl.Recipe('rtest_product')
        r.temp_dir = str(tmp_path / 'work')
        with pytest.raises(OSError) as info:
            # 2.5 MB, after a small one that fits
            r(raw, tag='RAW', param={'size': 800, 'also_ok': True},
              output_dir=folder)
        assert info.value.errno == 28
        assert 'rtest_product' in str(info.value) and raw in str(info.value)
        assert os.listdir(folder) == []
        # a later run that fits is not disturbed by anything left
        res = r(raw, tag='RAW', output_dir=folder)
        assert os.listdir(folder) == ['rtest_product.fits']
        assert res.PRODUCT == os.path.join(folder, 'rtest_product.fits')
    kept = run_dirs(str(tmp_path / 'work'))
    assert len(kept) == 1
    assert os.path.getsize(tmp_path / 'work' / kept[0] /
                           'rtest_product.fits') > 2 * 10 ** 6


# --- huge products, floods of log lines, direct output ------------------------------------
def test_a_result_too_long_for_the_report_pipe(raw, tmp_path):
    """Thousands of products, a result over 1 MB: it goes to the result
    file instead (a report line that long Python would not read), and
    nothing is lost."""
    out = tmp_path / 'out'
    name = 'p' * 200
    res = cpl.Recipe('rtest_product')(
        raw, tag='RAW', output_dir=str(out), timeout=60,
        param={'kind': 'many', 'copies': 5000, 'name': name})
    assert sorted(os.path.basename(p) for p in res.PRODUCT) == \
        ['%s_%05d' % (name, i) for i in range(5000)]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p)
                                             for p in res.PRODUCT)


def test_long_requests_while_long_reports_come_back(raw, fault_dir,
                                                   tmp_path):
    """Requests longer than the pipe to the server holds, written while
    the server sends reports longer than the pipe back: neither side may
    wait for the other (a deadlock needs the two to meet, hence tries)."""
    library = os.path.join(fault_dir, 'cplrun_fault_recipes.so')
    server = _runner.Server(dict(os.environ))
    folders = iter(range(10 ** 6))

    def fields(params=(), frames=()):
        workdir = str(tmp_path / str(next(folders)))
        os.makedirs(workdir)
        return ([('plugin', library), ('recipe', 'rtest_product'),
                 ('workdir', workdir), ('loglevel', 'info'),
                 ('memory_dump', '0')]
                + [('param', 'cplrun.rtest_product.' + p) for p in params]
                + [('frame', 'RAW=' + f) for f in frames])
    # reports of about 200 KB (under the limit for the pipe; their quotes
    # make the server's reply line twice as long), a request of about
    # 50 MB (it takes a while to write)
    long_report = ['kind=none', 'copies=700', 'name=' + '"' * 100 + 'p' * 100]
    long_frames = ['/nonexistent/' + 'x' * 200] * 250000
    try:
        for _ in range(5):
            # the end of the first comes while the request is being
            # written, that of the others (long reports) soon after
            quick = server.submit(fields(['kind=none'], [raw]))
            reports = [server.submit(fields(long_report, [raw]))
                       for _ in range(2)]
            request = threading.Thread(target=server.submit, daemon=True,
                                       args=(fields(['kind=none'],
                                                    long_frames),))
            request.start()
            request.join(10)
            assert not request.is_alive(), 'the request never got through'
            assert quick.finished.wait(10)
            for handle in reports:
                assert handle.finished.wait(10), 'a report never came back'
                assert len(handle.report['products']) == 700
    finally:
        server.close()


def test_a_product_larger_than_2_gib(raw, tmp_path, work_tmp, no_new_run_dirs):
    out = str(tmp_path / 'out')
    res = cpl.Recipe('rtest_product')(raw, tag='RAW', output_dir=out,
                                      param={'kind': 'sparse', 'gib': 2.5},
                                      env=UNSIGNED)
    assert res.BIG == os.path.join(out, 'rtest_product.fits')
    size = os.path.getsize(res.BIG)
    assert size > 2.5 * 2 ** 30
    with fits.open(res.BIG) as hdul:
        assert hdul[0].header['NAXIS1'] * hdul[0].header['NAXIS2'] + 2880 \
            <= size
    assert not os.path.exists(os.path.join(out, '.cplrun-work'))


def test_thousands_of_log_lines_per_second(raw, capfd, caplog):
    """5000 lines a second for two seconds: every line arrives, in order,
    while the recipe runs, and nothing reaches our own stdout/stderr."""
    r = cpl.Recipe('rtest_chatter')
    seen = []
    with caplog.at_level(logging.INFO, logger='cpl.rtest_chatter'):
        start = time.monotonic()
        t = r(raw, tag='RAW', param={'seconds': 2.0, 'rate': 5000},
              threaded=True)
        while not t.done():
            if t.last_message:
                seen.append(t.last_message)
            time.sleep(0.1)
        res = t.result()
        elapsed = time.monotonic() - start
    assert elapsed < 10
    chatter = [m for m in res.log.info if m.startswith('rtest_chatter: chatter 0')]
    assert len(chatter) >= 9000
    numbers = [int(m.split()[-1]) for m in chatter]
    assert numbers == list(range(len(numbers)))
    # progress was visible while it ran
    assert len({m for m in seen if m.startswith('chatter')}) >= 5
    # the lines went to Python logging too
    assert sum(1 for rec in caplog.records
               if rec.getMessage().startswith('chatter 0')) == len(chatter)
    # what the recipe wrote to its stdout and stderr directly is in its log
    output = [rec.getMessage() for rec in res.log
              if rec.name == 'cpl.rtest_chatter.output']
    assert output.count('direct stdout 999') == 1
    assert output.count('direct stderr 999') == 1
    assert 'no newline at the end' in output
    assert any(m.startswith('bytes \ufffd\ufffd') for m in output)
    out, err = capfd.readouterr()
    assert 'direct' not in out and 'direct' not in err


# --- Ctrl-C that the interpreter drops ------------------------------------------------
class _DroppedInterrupt:
    """Its __del__ (run by the garbage collector, in whatever thread
    allocates) gets the KeyboardInterrupt of a SIGINT, which Python then
    prints and drops: what happens to a real Ctrl-C now and then."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.01)            # the handler runs, raises, is dropped


def drop_an_interrupt_once(monkeypatch, cls, name):
    real = getattr(cls, name)
    state = {'calls': 0}

    def wrapped(*args, **kwargs):
        state['calls'] += 1
        if state['calls'] == 4:
            _DroppedInterrupt()     # collected at once, in this thread
        return real(*args, **kwargs)
    monkeypatch.setattr(cls, name, wrapped)
    return state


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_a_dropped_ctrl_c_still_stops_a_batch(raw, tmp_path, monkeypatch):
    from cpl.parallel._backends import LocalBackend
    drop_an_interrupt_once(monkeypatch, LocalBackend, 'wait')
    out = str(tmp_path / 'out')
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_batch('rtest_hang', [raw, raw, raw], tag='RAW', n_workers=2,
                  output_dir=out, **OPTS)
    assert time.monotonic() - start < 15
    report = Report.from_json(os.path.join(out, 'report.json'))
    assert [r.status for r in report] == ['cancelled'] * 3
    assert_no_processes_left()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_a_dropped_ctrl_c_still_stops_a_call(raw, work_tmp, monkeypatch):
    from cpl.logger import LogReader
    drop_an_interrupt_once(monkeypatch, LogReader, 'poll')
    start = time.monotonic()
    with new_run_dirs_only(work_tmp):       # an interrupted run leaves none
        with pytest.raises(KeyboardInterrupt):
            cpl.Recipe('rtest_hang')(raw, tag='RAW')
    assert time.monotonic() - start < 15
    assert_no_processes_left()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


#: Ctrl-C at as many moments of a call's life: before its process
#: started, while it runs, as it ends and after
CALL_CTRL_C_TRIES = 16


def test_a_call_stopped_by_ctrl_c_leaves_no_folder(raw, tmp_path, work_tmp):
    r = cpl.Recipe('rtest_hang')
    out = str(tmp_path / 'out')
    interrupted = 0
    with new_run_dirs_only(work_tmp):
        for attempt in range(CALL_CTRL_C_TRIES):
            timer = threading.Timer(0.05 * (attempt + 1),
                                    _thread.interrupt_main)
            timer.start()
            try:
                # half of them with their folder in the output folder
                r(raw, tag='RAW', param={'seconds': 0.3},
                  output_dir=out if attempt % 2 else None)
                timer.join()
                time.sleep(0.1)     # a Ctrl-C after the end lands here
            except KeyboardInterrupt:
                interrupted += 1
            finally:
                timer.cancel()
            assert not os.path.exists(os.path.join(out, '.cplrun-work'))
    assert interrupted
    assert_no_processes_left()


EXIT_SCRIPT = textwrap.dedent('''
    import sys
    import cpl
    cpl.Recipe.path = [sys.argv[1]]
    r = cpl.Recipe('rtest_hang')
    r.threaded = True
    runs = [r(sys.argv[2], tag='RAW'), r(sys.argv[2], tag='RAW'),
            r(sys.argv[2], tag='RAW', output_dir=sys.argv[3])]
    sys.stdin.readline()        # then exits, the runs still going
''')


def test_a_script_exiting_with_threaded_runs_in_flight_leaves_nothing(
        recipe_dir, raw, tmp_path):
    out = str(tmp_path / 'out')
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, '-c', EXIT_SCRIPT, recipe_dir, raw, out],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE,
        env=dict(os.environ, TMPDIR=str(tmp)))
    me = psutil.Process(proc.pid)

    def runs():
        try:
            return [r.pid for s in me.children() for r in s.children()
                    if r.cwd().startswith((str(tmp), out))]
        except psutil.Error:
            return []
    try:
        assert wait_until(lambda: len(runs()) == 3, 30), 'the runs never ran'
        pids = runs()
        proc.stdin.write(b'\n')
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()
    finally:
        proc.kill()
    assert wait_until(lambda: all(is_gone(p) for p in pids), 10)
    assert run_dirs(str(tmp)) == []
    assert not os.path.exists(os.path.join(out, '.cplrun-work'))


def test_a_timed_out_muse_run_keeps_its_log_only(system_path, data_dir,
                                                 tmp_path, work_tmp):
    folder, manifest = data_dir
    try:
        r = cpl.Recipe('muse_bias')
    except cpl.RecipeNotFoundError:
        pytest.skip('the MUSE pipeline is not installed')
    sof = next(s['sof'] for s in manifest['steps']
               if s['recipe'] == 'muse_bias')
    raw = cpl.esorex.load_sof(sof)['BIAS']
    out = tmp_path / 'out'
    stopped = []

    def stop_after_the_first_product():
        # frozen with products written (SIGSTOP): the timeout finds it so
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopped:
            for p in recipe_processes():
                try:
                    if p.cwd().startswith(str(out)) and any(
                            n.endswith('.fits') for n in os.listdir(p.cwd())):
                        p.suspend()
                        stopped.append(p.pid)
                except (psutil.Error, OSError):
                    pass
            time.sleep(0.01)
    watcher = threading.Thread(target=stop_after_the_first_product)
    watcher.start()
    try:
        with pytest.raises(cpl.RecipeTimeout) as info:
            r(raw, tag='BIAS', output_dir=str(out), timeout=15)
    finally:
        watcher.join()
    assert stopped, 'muse_bias never wrote a product'
    exc = info.value
    assert re.search(r'its partial products \((\d+) FITS files\) were '
                     r'removed, its log is kept', str(exc)), str(exc)
    assert int(re.search(r'\((\d+) FITS', str(exc)).group(1)) >= 1
    assert exc.workdir in str(exc) and exc.log_file in str(exc)
    assert sorted(os.listdir(exc.workdir)) in (
        ['.cplrun-log'], ['.cplrun-log', '.cplrun-output'])
    assert 'muse_bias' in open(exc.log_file).read()
    assert fits_files(out) == []
    remove_run_dir(exc)



def test_a_forked_child_leaves_the_parents_runs_alone(raw):
    """What a forked child's exit does to the runs going on (kill them,
    remove their folders) is for its own runs: the parent's run goes on."""
    t = cpl.Recipe('rtest_hang')(raw, tag='RAW', param={'seconds': 1.0},
                                 threaded=True)
    assert wait_until(recipe_processes, 30)
    pid = os.fork()
    if pid == 0:
        cpl._run._live_runs.abandon_all()   # what its exit would run
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert t.HANG_PRODUCT[0].header['ESO PRO CATG'] == 'HANG_PRODUCT'
