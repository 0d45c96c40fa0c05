"""Fuzzing, bounded for CI (well under a minute): the .sof and .rc
readers, the decoder of the runner's event lines (through a real
:class:`cpl._runner.Server` reading a fake runner), the result file a run
leaves (``_read_result``/``_outcome``), and the C request parser, fed
malformed netstrings through a real ``cplrun-runner serve``.

Whatever comes in, the answer is a clear error (RecipeCrash and the like)
and never a hang or a crash of the Python process.  The examples are
derandomized, so CI runs the same ones each time; set
``CPLRUN_FUZZ_RANDOM=1`` (and ``CPLRUN_FUZZ_EXAMPLES=N``) to explore."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import cpl
from cpl import _run, _runner
from cpl.esorex import SofError, load_rc, load_sof
from cpl.logger import LogReader

SCALE = int(os.environ.get('CPLRUN_FUZZ_EXAMPLES', '0')) or None
# Hypothesis keeps files of its own (even without a database): in the
# session's temporary folder, not in the work tree.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), 'hypothesis'))


def fuzz_settings(examples):
    return settings(max_examples=SCALE or examples, deadline=None,
                    derandomize=not os.environ.get('CPLRUN_FUZZ_RANDOM'),
                    database=None, suppress_health_check=list(HealthCheck))


# --- .sof and .rc ---------------------------------------------------------------------
sof_word = st.text(st.characters(blacklist_categories=('Cs',)), max_size=12)
sof_line = st.one_of(
    st.builds(lambda p, t, g, sep, end: sep.join(filter(None, (p, t, g)))
              + end,
              st.sampled_from(['/a/b.fits', 'rel/x.fits', 'x y.fits', '#',
                               '', ' ', 'caf\u00e9.fits']) | sof_word,
              st.sampled_from(['RAW', 'CALIB', 'MASTER_BIAS', '']) | sof_word,
              st.sampled_from(['', 'RAW', 'CALIB']) | sof_word,
              st.sampled_from([' ', '\t', '  ', ' \t ']),
              st.sampled_from(['\n', '\r\n', '\r', ''])),
    st.text(max_size=60))


@fuzz_settings(300)
@given(st.lists(sof_line, max_size=12))
def test_fuzz_sof_reader(lines):
    text = ''.join(line if line.endswith(('\n', '\r')) else line + '\n'
                   for line in lines)
    try:
        result = load_sof(io.StringIO(text))
    except SofError as exc:
        assert 'line ' in str(exc)
        return
    assert isinstance(result, dict)
    for tag, paths in result.items():
        assert tag and not any(c.isspace() for c in tag)
        for path in paths if isinstance(paths, list) else [paths]:
            assert isinstance(path, str) and path
            assert not any(c.isspace() for c in path)
    # the same file with other line ends reads the same
    assert load_sof(io.StringIO(text.replace('\r\n', '\n'))) == \
        load_sof(io.StringIO(text.replace('\r\n', '\n').replace(
            '\n', '\r\n')))


@fuzz_settings(300)
@given(st.lists(st.one_of(
    st.builds(lambda k, v, sp: '%s%s=%s%s' % (k, sp, sp, v),
              st.sampled_from(['a.b.c', 'esorex.caller.x', '', ' ', 'two words',
                               'cplrun.rtest_params.int_value']) | sof_word,
              sof_word, st.sampled_from(['', ' ', '\t'])),
    st.text(max_size=40)), max_size=10))
def test_fuzz_rc_reader(lines):
    text = '\n'.join(lines)
    try:
        result = load_rc(io.StringIO(text))
    except SofError as exc:
        assert 'line ' in str(exc)
        return
    for key, value in result.items():
        assert key and not any(c.isspace() for c in key)
        assert isinstance(value, str) and value == value.strip()


# --- the server's event lines, decoded alone ---------------------------------------------------------
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2 ** 70, 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def event_dict(kind=None):
    return st.fixed_dictionaries(
        {'event': kind if kind is not None else st.sampled_from(
            ['started', 'exited', 'failed', 'ready', 'x']) | json_value},
        optional={'id': st.sampled_from([1, 2, 0, -1, 1.0, '1', True, None,
                                         2 ** 64]) | json_value,
                  'pid': st.sampled_from([1234, 0, -5, '12', None]) | json_value,
                  'exit_code': st.sampled_from([0, 1, 3, 255, 256, -1, None,
                                                '0', 0.0]) | json_value,
                  'signal': st.sampled_from([None, 6, 9, 11, 0, 99, 1 << 40,
                                             '11']) | json_value,
                  'utime': st.sampled_from([0.1, -1, float('nan'), 'x'])
                  | json_value,
                  'stime': json_scalar,
                  'maxrss_kb': st.sampled_from([1024, 2 ** 62, -3, None])
                  | json_value,
                  'message': json_value})


def as_line(doc, cut, junk):
    data = json.dumps(doc).encode()
    if cut is not None:
        data = data[:cut]
    return data + junk


event_line = st.one_of(
    st.builds(as_line, event_dict(), st.none() | st.integers(0, 80),
              st.sampled_from([b'', b'', b'\xff\xfe', b'\x00', b' garbage'])),
    st.binary(max_size=80),
    st.sampled_from([b'[' * 50000, b'{"event": "exited", "id": 1e400}',
                     b'{"event": "exited", "id": 1, "exit_code": 1e400}',
                     b'{"event":"exited","id":1,"exit_code":0,"signal":null,'
                     b'"utime":0,"stime":0,"maxrss_kb":1}',
                     b'{"event":"failed","id":-1,"message":"malformed request"}',
                     b'{"event":"started","id":1,"pid":4194304}',
                     b'x' * (3 << 20)]))


@fuzz_settings(400)
@given(event_line)
def test_fuzz_decode_event(line):
    try:
        event = _runner.decode_event(line)
    except ValueError:
        return
    assert isinstance(event, dict) and isinstance(event['event'], str)
    if event['event'] == 'exited':
        problem = _runner.check_exit_event(event)
        assert problem is None or isinstance(problem, str)


# --- the server's event lines, through a real Server --------------------------------------------------
FAKE_RUNNER = '''#!/bin/sh
# A stand-in for cplrun-runner serve: says what the test wrote, then
# lives until its input ends (as the real one does).
cat "$CPLRUN_FAKE_READY"
head -c 1 > /dev/null
cat "$CPLRUN_FAKE_LINES"
[ -n "$CPLRUN_FAKE_QUIT" ] && exit 3
cat > /dev/null
'''
READY = (b'{"event":"ready","id":0,"pid":4242,"cpl_version":"7.3.2",'
         b'"gdb":null}\n')
ready_line = st.one_of(st.just(READY), st.just(READY), st.just(READY),
                       st.just(b''), st.just(b'{"event":"ready"}\n'),
                       st.builds(as_line, event_dict(st.just('ready')),
                                 st.none() | st.integers(0, 60),
                                 st.just(b'\n')),
                       st.binary(max_size=40))
ALLOWED = (cpl.RecipeCrash, _runner.RunnerError, cpl.CplError)


@pytest.fixture(scope='module')
def fake_runner(tmp_path_factory):
    folder = tmp_path_factory.mktemp('fake-runner')
    path = folder / 'cplrun-runner'
    path.write_text(FAKE_RUNNER)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def fast_kills(monkeypatch):
    monkeypatch.setattr(_run, 'TERMINATE_GRACE_SECONDS', 0.1)
    monkeypatch.setattr(_run, 'KILL_WAIT_SECONDS', 0.3)
    monkeypatch.setattr(_runner, 'READY_TIMEOUT_SECONDS', 0.3)


def fake_spec(folder, recipe_lib, raw, ready, lines, quits, timeout):
    """A run of rtest_copy whose server is the fake runner, saying the
    ready line and the lines (bytes) written into folder."""
    env = dict(os.environ)
    for name, data in (('READY', ready), ('LINES', lines)):
        env['CPLRUN_FAKE_' + name] = path = os.path.join(folder, name.lower())
        with open(path, 'wb') as f:
            f.write(data)
    if quits:
        env['CPLRUN_FAKE_QUIT'] = '1'
    return _run.RunSpec(recipe='rtest_copy', library=recipe_lib, params=[],
                        frames=[('RAW', raw)], env=env, logname='cpl.fuzz',
                        timeout=timeout, temp_dir=os.path.join(folder, 'work'))


@contextlib.contextmanager
def private_pool():
    """Servers of its own, closed at the end, for runs with another
    runner program."""
    saved, _runner.pool = _runner.pool, _runner.ServerPool()
    try:
        yield
    finally:
        _runner.pool.close()
        _runner.pool = saved


@fuzz_settings(60)
@given(ready=ready_line, lines=st.lists(event_line, max_size=6),
       quits=st.booleans())
def test_fuzz_the_server_reader(fake_runner, fast_kills, recipe_lib, raw,
                                monkeypatch, ready, lines, quits):
    monkeypatch.setenv('CPLRUN_RUNNER', fake_runner)
    folder = tempfile.mkdtemp(prefix='fuzz-')
    try:
        spec = fake_spec(folder, recipe_lib, raw, ready, b''.join(
            line if line.endswith(b'\n') else line + b'\n'
            for line in lines), quits, timeout=0.5)
        threads = threading.active_count()
        start = time.monotonic()
        with private_pool():
            try:
                result = _run.execute(spec)
            except ALLOWED as exc:
                assert 'rtest_copy' in str(exc)
            else:
                raise AssertionError('a fake run succeeded: %r' % result)
        assert time.monotonic() - start < 10
        assert threading.active_count() <= threads
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the result file -----------------------------------------------------------------------------------
product_entry = st.one_of(
    st.fixed_dictionaries({'tag': st.sampled_from(['PRODUCT', 'X', '', 3]),
                           'file': st.sampled_from(
                               ['p.fits', 'missing.fits', '../out.fits',
                                '/etc/hostname', 'link.fits', 'dir', '',
                                'p\u0000.fits', 'junk.fits', 7])}),
    json_value)
error_entry = st.one_of(
    st.fixed_dictionaries({'code': st.sampled_from([1, 10, '10', None]),
                           'message': json_scalar, 'function': json_scalar,
                           'file': json_scalar, 'line': json_scalar}),
    json_value)
result_doc = st.one_of(
    st.fixed_dictionaries(
        {'return_code': st.sampled_from([0, 0, 1, -1, '0', None, 2 ** 40]),
         'setup_error': st.sampled_from([None, None, "unknown parameter 'x'",
                                         3, '']),
         'memory_is_empty': st.sampled_from([-1, 0, 1, 2, True, None, []]),
         'errors': st.lists(error_entry, max_size=3) | json_value,
         'products': st.lists(product_entry, max_size=3) | json_value}),
    json_value)


@fuzz_settings(300)
@given(doc=result_doc, cut=st.none() | st.integers(0, 200),
       exit_event=st.sampled_from([
           {'exit_code': 0, 'signal': None, 'utime': 0.1, 'stime': 0.0,
            'maxrss_kb': 1024},
           {'exit_code': None, 'signal': 11, 'utime': 0, 'stime': 0,
            'maxrss_kb': 0},
           {'exit_code': 3, 'signal': None}]),
       output=st.booleans())
def test_fuzz_the_result_file(raw, doc, cut, exit_event, output):
    folder = tempfile.mkdtemp(prefix='fuzz-')
    workdir = os.path.join(folder, 'work')
    os.mkdir(workdir)
    try:
        shutil.copyfile(raw, os.path.join(workdir, 'p.fits'))
        with open(os.path.join(workdir, 'junk.fits'), 'wb') as f:
            f.write(b'SIMPLE  =  not really')
        os.symlink('p.fits', os.path.join(workdir, 'link.fits'))
        os.mkdir(os.path.join(workdir, 'dir'))
        data = json.dumps(doc).encode()
        with open(os.path.join(workdir, _run.RESULT_FILE), 'wb') as f:
            f.write(data[:cut] if cut is not None else data)
        spec = _run.RunSpec(recipe='rtest_copy', library='x.so', params=[],
                            frames=[('RAW', raw)], env={},
                            logname='cpl.fuzz',
                            output_dir=os.path.join(folder, 'out')
                            if output else None)
        handle = _runner.RunHandle(1)
        handle._finish(dict(exit_event, event='exited', id=1), None)
        log = LogReader(os.path.join(workdir, _run.LOG_FILE), spec.logname)
        try:
            result = _run._outcome(spec, workdir, handle, None, log, 0.1)
        except (cpl.RecipeCrash, cpl.CplError) as exc:
            assert 'rtest_copy' in str(exc)
            return
        except ValueError as exc:        # the run refused its input
            assert 'refused its input' in str(exc)
            return
        assert isinstance(result, cpl.Result)
        assert exit_event['exit_code'] == 0
        for tag, value in result:
            assert tag == 'PRODUCT' or tag == 'X'
            if output:
                assert os.path.dirname(value) == os.path.join(folder, 'out')
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the C request parser, through a real server ------------------------------------------------------
def netstring(data: bytes) -> bytes:
    return b'%d:%s,' % (len(data), data)


def request(pairs) -> bytes:
    return netstring(b''.join(netstring(k) + netstring(v) for k, v in pairs))


field = st.tuples(
    st.sampled_from([b'op', b'id', b'plugin', b'recipe', b'workdir',
                     b'signal', b'param', b'frame', b'x', b'']) |
    st.binary(max_size=6),
    st.sampled_from([b'run', b'kill', b'1', b'-1', b'99999999999999999999',
                     b'/no/such/lib.so', b'', b'9', b'a=b']) |
    st.binary(max_size=10))
malformed = st.sampled_from([
    b'5:hello', b'5:hello;', b'00:,', b'01:a,', b'12345678901:', b':,',
    b'-1:,', b'x', b'3:abc,', b'9:2:op,3:run,', b'4:\x00\x00\x00\x00,',
    b'6:2:op,0:,', b'1:a', b'64:' + b'1' * 10, b'67108864:', b'999999999:',
    b'7:3:a\x00b,0:,'])
chunk = st.one_of(st.builds(request, st.lists(field, max_size=5)),
                  st.builds(request, st.just([(b'op', b'kill'), (b'id', b'1'),
                                              (b'signal', b'9')])),
                  st.builds(request, st.just([(b'op', b'run'), (b'id', b'7'),
                                              (b'plugin', b'/no/lib.so'),
                                              (b'workdir', b'/tmp')])),
                  malformed, st.binary(max_size=30))


@fuzz_settings(120)
@given(st.lists(chunk, max_size=6))
def test_fuzz_the_request_parser(chunks):
    data = b''.join(chunks)
    proc = subprocess.Popen([_runner.runner_path(), 'serve'],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(data, timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError('the server hung on %r' % data[:200])
    # it ends by itself, cleanly: at the end of its input, or at once
    # when the framing is lost; never by a signal
    assert proc.returncode in (0, 3), (proc.returncode, data[:200])
    lines = out.splitlines()
    events = [_runner.decode_event(line) for line in lines]
    assert events and events[0]['event'] == 'ready'
    for e in events[1:]:
        assert e['event'] in ('failed', 'started', 'exited'), e
        assert isinstance(e['id'], int)
    if proc.returncode == 3:
        assert events[-1] == {'event': 'failed', 'id': -1,
                              'message': 'malformed request stream'}


# --- the reader's worst cases, one by one -------------------------------------------------
def fake_run(fake_runner, monkeypatch, recipe_lib, raw, ready, lines,
             quits=False, timeout=0.5):
    """One run through a real Server reading the fake runner; returns the
    exception and the seconds it took."""
    monkeypatch.setenv('CPLRUN_RUNNER', fake_runner)
    folder = tempfile.mkdtemp(prefix='fake-')
    try:
        spec = fake_spec(folder, recipe_lib, raw, ready, lines, quits, timeout)
        start = time.monotonic()
        with private_pool(), pytest.raises(ALLOWED) as info:
            _run.execute(spec)
        return info.value, time.monotonic() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize('case', [
    'never ready', 'silent after ready', 'malformed request', 'endless line',
    'bad exit report', 'dies mid-line'])
def test_the_reader_never_hangs(fake_runner, fast_kills, monkeypatch,
                                recipe_lib, raw, case):
    ready, lines, quits, expected, text = {
        'never ready': (b'', b'', False, _runner.RunnerError,
                        'did not start'),
        'silent after ready': (READY, b'', False, cpl.RecipeTimeout,
                               'timed out'),
        'malformed request': (READY, b'{"event":"failed","id":-1,'
                              b'"message":"malformed request"}\n', False,
                              cpl.RecipeCrash, 'malformed request'),
        'endless line': (READY, b'{"event":"exited",' + b' ' * (3 << 20),
                         True, cpl.RecipeCrash, 'ended with status 3'),
        'bad exit report': (READY, b'{"event":"started","id":1,"pid":99}\n'
                            b'{"event":"exited","id":1,"exit_code":0,'
                            b'"signal":null,"utime":"x"}\n', False,
                            cpl.RecipeCrash, 'malformed exit report'),
        'dies mid-line': (READY, b'{"event":"exited","id":1,"exit_co', True,
                          cpl.RecipeCrash, 'during the run'),
    }[case]
    exc, seconds = fake_run(fake_runner, monkeypatch, recipe_lib, raw, ready,
                            lines, quits)
    assert type(exc) is expected, exc
    assert text in str(exc) and 'rtest_copy' in str(exc)
    assert seconds < 5
