"""The runner protocol and processes (cpl._runner, src_c/serve.c) and the
way a run's leftovers are judged (cpl._run): requests, events, malformed
input, dead servers, garbage result files, and orphaned processes.

Every wait here is bounded: a broken server fails the test, never hangs
it."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

import cpl
from cpl import _run, _runner
from cpl.logger import LogReader
from conftest import (SPARE_NAME, is_gone, recipe_processes, remove_run_dir,
                      wait_until)


# --- the wire format ------------------------------------------------------------
def parse_netstring(data: bytes) -> tuple[bytes, bytes]:
    """(payload, rest) of a netstring at the start of data."""
    length, _, rest = data.partition(b':')
    n = int(length)
    assert rest[n:n + 1] == b',', data[:50]
    return rest[:n], rest[n + 1:]


def parse_request(data: bytes) -> list[tuple[bytes, bytes]]:
    payload, rest = parse_netstring(data)
    assert rest == b''
    fields = []
    while payload:
        key, payload = parse_netstring(payload)
        value, payload = parse_netstring(payload)
        fields.append((key, value))
    return fields


def test_netstring():
    assert _runner.encode_netstring(b'') == b'0:,'
    assert _runner.encode_netstring(b'hello') == b'5:hello,'
    assert parse_netstring(_runner.encode_netstring(b'a,b:c'))[0] == b'a,b:c'


def test_encode_request_round_trip():
    odd = os.fsdecode(b'/tmp/caf\xe9 \xff.fits')     # not UTF-8
    fields = [('op', 'run'), ('id', '7'), ('param', 'a.b=x=y, z'),
              ('frame', 'RAW=%s' % odd), ('param', 'empty='), ('k', ''),
              ('frame', 'RAW=/a/b.fits')]
    decoded = parse_request(_runner.encode_request(fields))
    assert [(os.fsdecode(k), os.fsdecode(v)) for k, v in decoded] == fields
    assert decoded[3][1] == b'RAW=/tmp/caf\xe9 \xff.fits'
    assert _runner.encode_request([]) == b'0:,'


def test_decode_event():
    event = _runner.decode_event(b'{"event":"exited","id":3,"signal":null}\n')
    assert event == {'event': 'exited', 'id': 3, 'signal': None}
    assert _runner.decode_event(b'{"event":"x","m":"\xff"}')['m'] == '\ufffd'
    for bad in (b'', b'not json', b'[1, 2]', b'{"id": 1}', b'{"event": 3}',
                b'"event"'):
        with pytest.raises(ValueError):
            _runner.decode_event(bad)


# --- a raw server -------------------------------------------------------------------
class RawServer:
    """``cplrun-runner serve`` driven by hand."""

    def __init__(self, env=None):
        self.proc = subprocess.Popen(
            [_runner.runner_path(), 'serve'], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=dict(env or os.environ), start_new_session=True)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self.event()

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def event(self, timeout=10):
        """The next event, or None at the end of the output."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError('no event from the server in %s s' % timeout)
        return None if line is None else _runner.decode_event(line)

    def send(self, data: bytes):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, *fields):
        self.send(_runner.encode_request(list(fields)))

    def exited(self, timeout=10):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError('the server did not end in %s s' % timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def server():
    s = RawServer()
    yield s
    s.close()


def run_fields(recipe_lib, workdir, recipe='rtest_copy', frames=(),
               params=(), run_id='1'):
    return ([('op', 'run'), ('id', run_id), ('plugin', recipe_lib),
             ('recipe', recipe), ('workdir', workdir), ('loglevel', 'info'),
             ('memory_dump', '0')]
            + [('param', p) for p in params]
            + [('frame', f) for f in frames])


def test_ready_event(server):
    ready = server.ready
    assert ready['event'] == 'ready'
    assert ready['pid'] == server.proc.pid
    assert ready['cpl_version'].startswith('7.')
    assert 'gdb' in ready


def test_run_through_the_raw_protocol(server, recipe_lib, raw, tmp_path):
    server.request(*run_fields(recipe_lib, str(tmp_path),
                               frames=['RAW=' + raw]))
    started = server.event()
    assert started['event'] == 'started' and started['id'] == 1
    assert started['pid'] > 0
    finished = server.event()
    assert finished['event'] == 'finished' and finished['id'] == 1
    assert finished['pid'] == started['pid']
    # the result comes in the report: no file, no disk space needed
    exit_figures, result = _runner.read_report(finished)
    assert not (tmp_path / _run.RESULT_FILE).exists()
    assert exit_figures['exit_code'] == 0 and exit_figures['signal'] is None
    assert exit_figures['maxrss_kb'] > 0 and exit_figures['utime'] >= 0
    assert result['return_code'] == 0 and result['errors'] == []
    assert result['products'] == [{'tag': 'PRODUCT',
                                   'file': 'rtest_copy.fits'}]
    assert (tmp_path / 'rtest_copy.fits').is_file()
    assert (tmp_path / _run.LOG_FILE).is_file()
    # the server goes on serving
    server.request(*run_fields(recipe_lib, str(tmp_path / 'x'), run_id='2'))
    assert server.event()['event'] == 'started'
    assert server.event()['exit_code'] == 120      # no such workdir
    server.proc.stdin.close()
    assert server.exited() == 0


def test_setup_error_through_the_raw_protocol(server, recipe_lib, raw,
                                              tmp_path):
    server.request(*run_fields(recipe_lib, str(tmp_path),
                               params=['cplrun.rtest_copy.nope=1'],
                               frames=['RAW=' + raw]))
    assert server.event()['event'] == 'started'
    result = _runner.read_report(server.event())[1]
    assert "unknown parameter 'cplrun.rtest_copy.nope'" in result['setup_error']
    server.request(*run_fields(recipe_lib, str(tmp_path), recipe='nothere',
                               run_id='5'))
    assert server.event()['event'] == 'started'
    finished = server.event()
    assert finished['id'] == 5
    assert 'no recipe' in _runner.read_report(finished)[1]['setup_error']


def test_requests_that_cannot_run(server, tmp_path):
    server.request(('op', 'run'), ('id', '4'))
    event = server.event()
    assert event == {'event': 'failed', 'id': 4,
                     'message': 'request without plugin or workdir'}
    server.request(('op', 'run'), ('id', '5'), ('plugin', '/no/such.so'),
                   ('workdir', str(tmp_path)))
    event = server.event()
    assert event['event'] == 'failed' and event['id'] == 5
    assert 'cannot load /no/such.so' in event['message']
    server.request(('op', 'dance'), ('id', '6'))
    assert server.event() == {'event': 'failed', 'id': 6,
                              'message': 'unknown request'}
    # kill of an unknown run: nothing happens, the server lives on
    server.request(('op', 'kill'), ('id', '99'), ('signal', '9'))
    server.request(('op', 'nothing'), ('id', '7'))
    assert server.event()['id'] == 7
    assert server.proc.poll() is None


def test_malformed_request_payload(server):
    # well framed, but the payload is not key/value netstrings
    for payload in (b'garbage', b'2:op,', b'2:op,3:run', b'2:o\x00,1:x,'):
        server.send(_runner.encode_netstring(payload))
        event = server.event()
        assert event['event'] == 'failed' and event['id'] == -1
        assert event['message'] == 'malformed request'
    assert server.proc.poll() is None
    server.request(('op', 'nothing'), ('id', '8'))
    assert server.event()['id'] == 8


@pytest.mark.parametrize('stream', [
    b'xyz', b'99999999999:', b'-1:,', b'01:x,', b'3:abcX', b'5:hello;',
    b'67108865:', b'2:op,x', b'\n'])
def test_malformed_stream_ends_the_server(server, stream):
    server.send(stream)
    assert server.exited() == 3
    events = []
    while True:
        event = server.event()
        if event is None:
            break
        events.append(event)
    assert events and events[-1] == {'event': 'failed', 'id': -1,
                                     'message': 'malformed request stream'}
    assert all(e['event'] == 'failed' for e in events)


def test_truncated_request_then_eof(server):
    server.send(b'100:2:op,3:run,')
    server.proc.stdin.close()
    assert server.exited() == 0


def test_kill_request(server, recipe_lib, raw, tmp_path):
    server.request(*run_fields(recipe_lib, str(tmp_path), recipe='rtest_hang',
                               frames=['RAW=' + raw]))
    started = server.event()
    assert started['event'] == 'started'
    server.request(('op', 'kill'), ('id', '1'), ('signal', '15'))
    exited = server.event()
    assert exited['event'] == 'exited' and exited['signal'] == 15
    assert is_gone(started['pid'])


def test_end_of_input_kills_running_runs(server, recipe_lib, raw, tmp_path):
    server.request(*run_fields(recipe_lib, str(tmp_path), recipe='rtest_hang',
                               frames=['RAW=' + raw],
                               params=['cplrun.rtest_hang.fork_child=true']))
    pid = server.event()['pid']
    pidfile = tmp_path / 'rtest_hang_child.pid'
    assert wait_until(lambda: pidfile.exists() and pidfile.read_text(), 10)
    child = int(pidfile.read_text())
    server.proc.stdin.close()
    assert server.exited() == 0
    assert wait_until(lambda: is_gone(pid) and is_gone(child), 5)


def test_a_library_that_crashes_when_described(tmp_path, recipe_lib):
    lib = str(tmp_path / 'libcrash.so')
    source = tmp_path / 'crash.c'
    source.write_text('int cpl_plugin_get_info(void *list) '
                      '{ (void)list; *(volatile int *)0 = 1; return 0; }\n')
    subprocess.run(['gcc', '-shared', '-fPIC', '-o', lib, str(source)],
                   check=True)
    doc = _runner.describe([lib])
    assert doc['plugins'][0]['recipes'] == []
    assert 'crashed' in doc['plugins'][0]['error']
    # next to a good library, that one is still described
    doc = _runner.describe([lib, recipe_lib])
    assert [p['file'] for p in doc['plugins']] == [lib, recipe_lib]
    assert len(doc['plugins'][1]['recipes']) == 8
    cpl.Recipe.path = [str(tmp_path), os.path.dirname(recipe_lib)]
    assert len(cpl.Recipe.list()) == 8


# --- the Python side of a server ---------------------------------------------------------
def test_describe(recipe_lib, tmp_path):
    not_a_lib = str(tmp_path / 'x.so')
    with open(not_a_lib, 'w') as f:
        f.write('text')
    doc = _runner.describe([recipe_lib, not_a_lib])
    assert doc['cpl_version'].startswith('7.')
    good, bad = doc['plugins']
    assert good['file'] == recipe_lib and good['error'] is None
    assert [r['name'] for r in good['recipes']][:2] == ['rtest_copy',
                                                        'rtest_params']
    copy = good['recipes'][0]
    assert copy['frames'][0]['tag'] == 'RAW'
    assert copy['frames'][0]['inputs'][0]['tag'] == 'CALIB'
    assert bad['recipes'] == [] and 'cannot load' in bad['error']


def started_hang(server, recipe_lib, raw, workdir):
    """An rtest_hang run on server, once its process is there."""
    handle = server.submit(run_fields(recipe_lib, workdir, recipe='rtest_hang',
                                      frames=['RAW=' + raw])[2:])
    assert wait_until(lambda: handle.pid is not None, 10)
    return handle


def test_server_class_submit_and_kill(recipe_lib, raw, tmp_path):
    s = _runner.Server(os.environ)
    try:
        handle = started_hang(s, recipe_lib, raw, str(tmp_path))
        assert s.busy
        s.kill(handle, signal.SIGKILL)
        assert handle.finished.wait(10)
        assert handle.exit['signal'] == signal.SIGKILL
        assert handle.failure is None and not s.busy
        s.kill(handle)                  # finished: nothing to do
    finally:
        s.close()
    assert s.closed
    with pytest.raises(_runner.RunnerError):
        s.submit([])


def test_server_death_fails_its_runs(recipe_lib, raw, tmp_path):
    s = _runner.Server(os.environ)
    try:
        handle = started_hang(s, recipe_lib, raw, str(tmp_path))
        run_pid = handle.pid
        os.kill(s.pid, signal.SIGKILL)
        assert handle.finished.wait(10)
        assert 'ended with status' in handle.failure
        # the run dies with its server
        assert wait_until(lambda: is_gone(run_pid), 5)
        assert wait_until(lambda: s.closed, 5)
    finally:
        s.close()


def spares(server):
    found = []
    for c in psutil.Process(server.pid).children():
        try:
            if c.name() == SPARE_NAME and c.status() not in (
                    psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                found.append(c)
        except psutil.Error:
            pass
    return found


def test_a_spare_waits_and_runs_carry_the_recipe_name(raw):
    env = {'CPLRUN_TEST_VAR': 'spare test'}
    cpl.Recipe('rtest_copy')(raw, env=env)
    server = _runner.pool.get(cpl.Recipe('rtest_copy')._run_env(env))
    # after a run, the next run's process waits, in its own group
    assert wait_until(lambda: len(spares(server)) == 1, 10)
    spare = spares(server)[0]
    assert os.getpgid(spare.pid) == spare.pid
    hang = cpl.Recipe('rtest_hang')
    first = hang(raw, tag='RAW', env=env, threaded=True)
    second = None
    try:
        assert wait_until(lambda: [p.name() for p in recipe_processes()]
                          == ['rtest_hang'], 10)
        assert recipe_processes()[0].pid == spare.pid     # it took the run
        # with runs side by side, a spare is forked at once for the next
        second = hang(raw, tag='RAW', env=env, threaded=True)
        assert wait_until(lambda: len(recipe_processes()) == 2, 10)
        assert wait_until(lambda: len(spares(server)) == 1, 10)
        spare = spares(server)[0]
    finally:
        for t in (first, second):
            if t is not None:
                t.cancel()
    # killed from outside while waiting: the next run gets a new one
    os.kill(spare.pid, signal.SIGKILL)
    assert wait_until(lambda: is_gone(spare.pid), 5)
    res = cpl.Recipe('rtest_copy')(raw, env=env)
    assert res.PRODUCT[0].data is not None
    assert wait_until(lambda: [p.pid for p in spares(server)] not in
                      ([], [spare.pid]), 10)


def test_killed_server_gives_recipe_crash_and_a_new_server(raw):
    r = cpl.Recipe('rtest_hang')
    r.tag = 'RAW'
    r.env['CPLRUN_TEST_VAR'] = 'own server for this test'
    t = r(raw, threaded=True)
    try:
        assert wait_until(lambda: len(recipe_processes()) >= 1, 10)
        server = _runner.pool.get(r._run_env(None))
        os.kill(server.pid, signal.SIGKILL)
        with pytest.raises(cpl.RecipeCrash) as info:
            t.result(timeout=20)
    finally:
        t.cancel()
    assert 'could not run' in str(info.value)
    remove_run_dir(info.value)
    # the next call gets a fresh server
    r.param.seconds = 0.01
    assert 'HANG_PRODUCT' in r(raw)


def test_missing_runner(monkeypatch, raw):
    monkeypatch.setenv('CPLRUN_RUNNER', '/no/such/runner')
    with pytest.raises(_runner.RunnerError) as info:
        _runner.runner_path()
    assert '/no/such/runner' in str(info.value)


def test_pool_one_server_per_environment():
    pool = _runner.ServerPool()
    try:
        a = pool.get(dict(os.environ, X='1'))
        assert pool.get(dict(os.environ, X='1')) is a
        b = pool.get(dict(os.environ, X='2'))
        assert b is not a and b.pid != a.pid
        assert psutil.Process(b.pid).environ().get('X') == '2'
    finally:
        pool.close()
    assert a.closed and b.closed
    assert wait_until(lambda: is_gone(a.pid) and is_gone(b.pid), 5)


def test_pool_retires_idle_servers(monkeypatch):
    monkeypatch.setattr(_runner, 'MAX_SERVERS', 2)
    pool = _runner.ServerPool()
    try:
        servers = [pool.get(dict(os.environ, N=str(i))) for i in range(4)]
        assert len(pool._servers) == 2
        assert [s.closed for s in servers] == [True, True, False, False]
    finally:
        pool.close()


# --- judging what a run left -------------------------------------------------------------
def outcome(workdir, exit_event=None, failure=None, reason=None):
    spec = _run.RunSpec(recipe='rtest_copy', library='x.so', params=[],
                        frames=[], env={}, logname='cpl.rtest_copy',
                        timeout=2.5 if reason == 'timeout' else None)
    handle = _runner.RunHandle(1)
    handle._finish(exit_event, failure)
    log = LogReader(os.path.join(workdir, _run.LOG_FILE), spec.logname)
    return _run._outcome(spec, workdir, handle, reason, log, 0.1)


EXIT_OK = {'event': 'exited', 'exit_code': 0, 'signal': None, 'utime': 0.1,
           'stime': 0.0, 'maxrss_kb': 1024}


@pytest.mark.parametrize('content', [
    b'', b'{"return_code": 0, "errors": [], "prod', b'\x00\xff garbage',
    b'[]', b'{"return_code": 0}', b'{"errors": [], "products": {}}',
    b'{"errors": null, "products": []}'])
def test_garbage_result_file_is_a_crash(tmp_path, content):
    (tmp_path / _run.RESULT_FILE).write_bytes(content)
    assert _run._read_result(str(tmp_path)) is None
    start = time.monotonic()
    with pytest.raises(cpl.RecipeCrash) as info:
        outcome(str(tmp_path), EXIT_OK)
    assert time.monotonic() - start < 5
    assert 'without finishing' in str(info.value)
    assert info.value.workdir == str(tmp_path)


def test_missing_result_file_is_a_crash(tmp_path):
    assert _run._read_result(str(tmp_path)) is None
    with pytest.raises(cpl.RecipeCrash):
        outcome(str(tmp_path), EXIT_OK)


def test_result_file_is_read(tmp_path):
    (tmp_path / 'p.fits').write_bytes(b'')
    doc = {'return_code': 0, 'errors': [], 'memory_is_empty': 1,
           'setup_error': None, 'products': []}
    (tmp_path / _run.RESULT_FILE).write_text(json.dumps(doc))
    assert _run._read_result(str(tmp_path)) == doc
    res = outcome(str(tmp_path), EXIT_OK)
    assert res.tags == set() and res.stat.memory_is_empty is True
    assert res.stat.max_rss_mb == 1.0


def test_product_outside_the_workdir_is_refused(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (tmp_path / 'outside.fits').write_bytes(b'SIMPLE  =')
    for name in ('../outside.fits', '/etc/passwd', 'missing.fits'):
        doc = {'return_code': 0, 'errors': [], 'products': [
            {'tag': 'X', 'file': name}]}
        (work / _run.RESULT_FILE).write_text(json.dumps(doc))
        with pytest.raises(cpl.RecipeCrash) as info:
            outcome(str(work), EXIT_OK)
        assert name in str(info.value)


def test_setup_error_is_value_error(tmp_path):
    doc = {'return_code': -1, 'errors': [], 'products': [],
           'setup_error': "unknown parameter 'x'"}
    (tmp_path / _run.RESULT_FILE).write_text(json.dumps(doc))
    with pytest.raises(ValueError) as info:
        outcome(str(tmp_path), EXIT_OK)
    assert "unknown parameter 'x'" in str(info.value)


def test_failure_and_signals_are_crashes(tmp_path):
    with pytest.raises(cpl.RecipeCrash) as info:
        outcome(str(tmp_path), None, failure='fork failed: no memory')
    assert 'fork failed: no memory' in str(info.value)
    (tmp_path / _run.BACKTRACE_FILE).write_text(
        'signal 7\n#0  0x00007f in my_func (x=1) at my.c:12\n')
    with pytest.raises(cpl.RecipeCrash) as info:
        outcome(str(tmp_path), dict(EXIT_OK, exit_code=None, signal=7))
    assert info.value.signal == 7 and 'SIGBUS' in str(info.value)
    assert info.value.elements[0].func == 'my_func'
    assert info.value.elements[0].line == 12
    # a timeout in a folder of its own: a crash file there would make the
    # run the crash it was (test_faults: a crash at its deadline)
    timed_out = tmp_path / 'timed-out'
    timed_out.mkdir()
    with pytest.raises(cpl.RecipeTimeout) as info:
        outcome(str(timed_out), dict(EXIT_OK, signal=9), reason='timeout')
    assert 'timed out after 2.5 s' in str(info.value)


def test_cancelled_outcome_removes_the_workdir(tmp_path):
    work = tmp_path / 'w'
    work.mkdir()
    with pytest.raises(_run.Cancelled):
        outcome(str(work), dict(EXIT_OK, signal=15), reason='cancelled')
    assert not work.exists()


def test_result_file_when_the_report_pipe_is_closed(raw, fault_recipes):
    """A recipe that closes descriptors it does not own (the runner's
    report pipe among them): the result goes to the result file."""
    res = cpl.Recipe('rtest_product')(raw, tag='RAW',
                                      param={'close_fds': True})
    assert res.PRODUCT[0].data.shape == (4, 4)
    assert res.error is None


def test_garbage_result_written_by_a_real_run(raw, fault_recipes,
                                              monkeypatch):
    # The run itself succeeds; the result file it left (its report pipe
    # was closed) is damaged before it is read.
    real = _run._outcome

    def damage(spec, workdir, *args):
        with open(os.path.join(workdir, _run.RESULT_FILE), 'r+b') as f:
            f.truncate(10)
        return real(spec, workdir, *args)
    monkeypatch.setattr(_run, '_outcome', damage)
    with pytest.raises(cpl.RecipeCrash) as info:
        cpl.Recipe('rtest_product')(raw, tag='RAW', param={'close_fds': True})
    assert 'its result is damaged' in str(info.value)
    assert os.path.isdir(info.value.workdir)
    remove_run_dir(info.value)


@pytest.mark.parametrize('report', [
    'not json', '[]', '{"return_code": 0}', '{"utime": -1, "errors": [], '
    '"products": []}', '{"maxrss_kb": "x"}', None])
def test_damaged_report_is_a_crash(tmp_path, report):
    exit_figures, result = _runner.read_report(
        {'event': 'finished', 'id': 1, 'pid': 5, 'report': report})
    assert exit_figures['exit_code'] == 0
    handle = _runner.RunHandle(1)
    handle._finish(exit_figures, None, result)
    spec = _run.RunSpec(recipe='rtest_copy', library='x.so', params=[],
                        frames=[], env={}, logname='cpl.rtest_copy')
    log = LogReader(os.path.join(str(tmp_path), _run.LOG_FILE), spec.logname)
    with pytest.raises(cpl.RecipeCrash) as info:
        _run._outcome(spec, str(tmp_path), handle, None, log, 0.1)
    assert 'its result is damaged' in str(info.value)


# --- orphans --------------------------------------------------------------------------------
ORPHAN_SCRIPT = r'''
import json, os, signal, sys, time
import psutil, cpl
cpl.Recipe.path = sys.argv[1]
r = cpl.Recipe('rtest_hang')
t = r(sys.argv[2], tag='RAW', threaded=True,
      param={'fork_child': sys.argv[3] == 'fork'})
me = psutil.Process()


def running(processes, read):
    # (process, read(process)) of those still running: a spare being
    # replaced may have gone, or be a zombie its server has not reaped
    found = []
    for p in processes:
        try:
            found.append((p, read(p)))
        except psutil.Error:
            pass
    return found


deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    servers = [p for p, cmdline in running(me.children(),
                                           psutil.Process.cmdline)
               if 'cplrun-runner' in ' '.join(cmdline)]
    children = running([c for s in servers for c in s.children()],
                       psutil.Process.cwd)
    # the run works in its own folder; the spare waits where its server is
    runs = [(c, cwd) for c, cwd in children
            if os.path.basename(cwd).startswith('rtest_hang-')]
    if runs and (sys.argv[3] != 'fork' or
                 os.path.exists(os.path.join(runs[0][1],
                                             'rtest_hang_child.pid'))):
        break
    time.sleep(0.05)
child = None
if sys.argv[3] == 'fork':
    with open(os.path.join(runs[0][1], 'rtest_hang_child.pid')) as f:
        child = int(f.read())
run_pids = [c.pid for c, _ in runs]
print(json.dumps({'servers': [s.pid for s in servers],
                  'runs': run_pids, 'child': child,
                  'spares': [c.pid for c, _ in children
                             if c.pid not in run_pids]}),
      flush=True)
os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize('variant', ['plain', 'fork'])
def test_no_orphans_when_python_is_killed(recipe_dir, raw, tmp_path, variant):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, '-c', ORPHAN_SCRIPT, recipe_dir, raw, variant],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    pids = json.loads(proc.stdout.decode())
    assert len(pids['servers']) == 1 and len(pids['runs']) == 1
    assert len(pids['spares']) <= 1
    watched = pids['servers'] + pids['runs'] + pids['spares'] + (
        [pids['child']] if pids['child'] else [])
    assert wait_until(lambda: all(is_gone(p) for p in watched), 5), \
        'still alive: %s' % [p for p in watched if not is_gone(p)]
    # nothing of that process's runner is left at all
    alive = []
    for p in psutil.process_iter(['pid', 'cmdline', 'status']):
        try:
            if 'cplrun-runner' in ' '.join(p.info['cmdline'] or []) and \
                    p.info['status'] != psutil.STATUS_ZOMBIE and \
                    os.path.basename(p.cwd()).startswith('rtest_hang-') and \
                    p.cwd().startswith(str(tmp_path)):
                alive.append(p.pid)
        except psutil.Error:
            pass
    assert alive == []


# --- more environments than servers, oversized requests --------------------------------------
#: Rounds of ENVIRONMENTS calls at once, each call with an environment of
#: its own (more than MAX_SERVERS): new ones each round.
ENV_ROUNDS = 3
ENVIRONMENTS = 12


#: How long each of them runs: long enough for all to run at once.
ENV_RUN_SECONDS = 2.0


def test_more_environments_at_once_than_servers(raw):
    """With MAX_SERVERS servers busy, the next environment's new server
    was the idle one retired, before its caller could submit its run."""
    assert ENVIRONMENTS > _runner.MAX_SERVERS
    hang = cpl.Recipe('rtest_hang')
    hang.tag = 'RAW'
    hang.param.seconds = ENV_RUN_SECONDS
    for n in range(ENV_ROUNDS):
        calls = [hang(raw, env={'CPLRUN_TEST_VAR': 'round %d env %d' % (n, i)},
                      threaded=True) for i in range(ENVIRONMENTS)]
        assert ['HANG_PRODUCT' in t.result(timeout=120) for t in calls] == \
            [True] * ENVIRONMENTS
    # once idle, the extra servers go
    cpl.Recipe('rtest_copy')(raw)
    assert len(_runner.pool._servers) <= _runner.MAX_SERVERS


def test_a_workflow_with_an_environment_per_run(raw, tmp_path):
    from cpl.parallel import Workflow
    w = Workflow()
    for i in range(ENVIRONMENTS):
        w.add('rtest_hang', raw, tag='RAW', param={'seconds': ENV_RUN_SECONDS},
              env={'CPLRUN_TEST_VAR': 'w%d' % i}, name='hang%d' % i)
    report = w.run(n_workers=ENVIRONMENTS, output_dir=str(tmp_path),
                   progress=False)
    assert [r.status for r in report.runs] == ['success'] * ENVIRONMENTS


def test_a_server_says_the_longest_request_it_reads():
    s = _runner.Server(os.environ)
    try:
        assert s.max_request == _runner.MAX_REQUEST_BYTES
    finally:
        s.close()


def test_an_oversized_request_is_refused_and_spares_the_other_runs(
        raw, no_new_run_dirs):
    env = {'CPLRUN_TEST_VAR': 'oversized request'}
    hang = cpl.Recipe('rtest_hang')
    innocent = hang(raw, tag='RAW', param={'seconds': 1.0}, env=env,
                    threaded=True)
    assert wait_until(innocent.running, 10)
    server = _runner.pool.get(hang._run_env(env))
    value = 'x' * _runner.MAX_REQUEST_BYTES
    with pytest.raises(_runner.RequestTooLarge) as info:
        cpl.Recipe('rtest_params')(raw, tag='RAW', env=env,
                                   param={'string_value': value})
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert 'rtest_params' in message and 'nothing was run' in message
    assert str(_runner.MAX_REQUEST_BYTES) in message
    size = int(re.search(r'takes (\d+) bytes', message).group(1))
    assert size > _runner.MAX_REQUEST_BYTES
    assert 'HANG_PRODUCT' in innocent.result(timeout=30)
    assert _runner.pool.get(hang._run_env(env)) is server
    assert not server.closed


def test_a_script_ends_without_resource_warnings(recipe_dir, raw, tmp_path):
    # the runner's output pipe was left to the garbage collector: under
    # python -X dev every script that ran a recipe ended with
    # "ResourceWarning: unclosed file <_io.FileIO name=5 mode='rb'>"
    script = tmp_path / 'one_call.py'
    script.write_text(
        'import cpl\n'
        'cpl.Recipe.path = [%r]\n'
        'cpl.Recipe("rtest_copy")(%r, tag="RAW")\n' % (recipe_dir, raw))
    done = subprocess.run([sys.executable, '-X', 'dev', str(script)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'ResourceWarning' not in done.stderr, done.stderr
