"""The runner processes that load and run recipes on behalf of Python.

The interpreter never loads a recipe library and is never forked.  Instead
each distinct recipe environment gets one fork server (``cplrun-runner
serve``, from ``src_c/``), started with exactly that environment, so that
libgomp and CPL read ``OMP_*`` and ``CPL_*`` as they would in a shell.  The
server forks one process per run.  Requests go to its stdin as netstrings;
answers come back as JSON lines, read by one thread per server.

The servers belong to the process that started them.  A child forked from
it (``os.fork``, multiprocessing's 'fork', a ProcessPoolExecutor on Linux)
starts with an empty pool and servers of its own: it never writes to the
parent's servers, reads their replies, signals or closes them.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
from collections import OrderedDict, deque
from typing import Iterable, Iterator, Mapping, Sequence

#: Idle servers kept alive at once; the least recently used one goes first.
#: Busy ones are never retired: more environments than this at once run
#: side by side, and the extra servers go once idle.
MAX_SERVERS = 8
#: How long a starting server may take to say it is ready.
READY_TIMEOUT_SECONDS = 60.0
#: A reply line longer than this is not one of the server's (the longest,
#: a run's report, stays under half of it: CPLRUN_MAX_REPORT in
#: src_c/runner.h): it is skipped, never kept whole in memory.
MAX_EVENT_BYTES = 1 << 20
#: The longest request payload a server reads, CPLRUN_MAX_REQUEST in
#: src_c/request.h: a longer one would end the server and every run it
#: has.  Each server says its own figure when it starts (Server.max_request);
#: this one stands for a runner that does not.
MAX_REQUEST_BYTES = 64 << 20
#: How much of the server's replies is read at once.
READ_BYTES = 1 << 16


class RunnerError(OSError):
    """The runner program is missing or could not be started."""


class RequestTooLarge(ValueError):
    """A run's request is longer than the server reads (too many frames or
    too long parameter values): it is refused before anything is sent."""


def runner_path() -> str:
    """The ``cplrun-runner`` executable: ``$CPLRUN_RUNNER``, or the one
    built into the package."""
    path = os.environ.get('CPLRUN_RUNNER') or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '_bin', 'cplrun-runner')
    if not os.access(path, os.X_OK):
        raise RunnerError(
            f'the recipe runner {path} is missing; build the package '
            f'(pip install .) or set CPLRUN_RUNNER')
    return path


def encode_netstring(data: bytes) -> bytes:
    return b'%d:%s,' % (len(data), data)


def encode_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """Alternating key and value netstrings, a request's payload.
    ValueError for a NUL character, which no C string can carry (the
    server would refuse the whole request)."""
    parts = []
    for k, v in fields:
        key, value = k.encode(), os.fsencode(v)
        if b'\0' in key or b'\0' in value:
            raise ValueError('a NUL character cannot be passed to a recipe: '
                             '%s=%r' % (k, v))
        parts.append(encode_netstring(key) + encode_netstring(value))
    return b''.join(parts)


def encode_request(fields: Iterable[tuple[str, str]]) -> bytes:
    """One request: a netstring of the fields' netstrings."""
    return encode_netstring(encode_fields(fields))


def decode_event(line: bytes) -> dict:
    """One reply line of the server; ValueError when it is not one."""
    try:
        event = json.loads(line.decode('utf-8', errors='replace'))
    except RecursionError:      # absurdly nested: not ours either
        event = None
    if not isinstance(event, dict) or not isinstance(event.get('event'), str):
        raise ValueError(f'not a runner event: {line[:200]!r}')
    return event


def _event_id(event: dict) -> int | None:
    run_id = event.get('id')
    return run_id if type(run_id) is int else None


def _int_or_null(value) -> bool:
    return value is None or type(value) is int


def _is_number(value) -> bool:
    return type(value) in (int, float)


def check_exit_event(event: dict) -> str | None:
    """Why an 'exited' event cannot be trusted, or None when it is sound:
    an exit status or a signal (a plausible one), and numeric figures."""
    code, sig = event.get('exit_code'), event.get('signal')
    if not _int_or_null(code) or not _int_or_null(sig) or \
            (code is None) == (sig is None):
        return 'neither an exit status nor a signal'
    if code is not None and not 0 <= code <= 255:
        return 'exit status %r' % code
    if sig is not None and not 0 < sig < 128:
        return 'signal %r' % sig
    for key in ('utime', 'stime', 'maxrss_kb'):
        value = event.get(key, 0)
        if not _is_number(value) or not 0 <= value < 1e15:
            return '%s %r' % (key, value)
    return None


def read_report(event: dict) -> tuple[dict, dict]:
    """The exit figures and the result of a 'finished' event, both from the
    run's report.  A report that cannot be read gives an empty result,
    which the caller's checks find damaged, like a damaged result file."""
    try:
        report = json.loads(event['report'])
    except (TypeError, ValueError, RecursionError):
        report = None
    if not isinstance(report, dict):
        report = {}
    exit_event = {'event': 'finished', 'pid': event.get('pid'),
                  'exit_code': 0, 'signal': None,
                  'utime': report.pop('utime', 0.0),
                  'stime': report.pop('stime', 0.0),
                  'maxrss_kb': report.pop('maxrss_kb', 0)}
    if check_exit_event(exit_event) is not None:
        exit_event.update(utime=0.0, stime=0.0, maxrss_kb=0)
        report = {}
    return exit_event, report


class RunHandle:
    """One run submitted to a server: its pid, and how it ended."""

    def __init__(self, run_id: int) -> None:
        self.id = run_id
        self.pid: int | None = None
        #: how the process ended: the 'exited' event, or figures from the
        #: 'finished' one
        self.exit: dict | None = None
        #: the result the run reported ('finished'), unchecked; None when
        #: it ended without one (its result file is then the only one)
        self.report: dict | None = None
        self.failure: str | None = None      # why it never started or ended
        self.finished = threading.Event()

    def _finish(self, exit_event: dict | None, failure: str | None,
                report: dict | None = None) -> None:
        self.exit = exit_event
        self.failure = failure
        self.report = report
        self.finished.set()


class Server:
    """One ``cplrun-runner serve`` process and its reader thread."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._lock = threading.Lock()
        #: held while writing to the server (see submit)
        self._write_lock = threading.Lock()
        self._handles: dict[int, RunHandle] = {}
        #: runs whose request the server has not answered yet, in order:
        #: a reply it cannot attribute ('malformed request') is theirs
        self._unanswered: deque[RunHandle] = deque()
        self._next_id = 1
        self.closed = False
        #: callers between ServerPool.reserved and their submit (the pool's
        #: lock guards it): the server is not idle while one is there
        self.reservations = 0
        #: the process that started the server: the only one that uses it
        self.owner_pid = os.getpid()
        try:
            # Unbuffered pipes: a buffered file's lock, held by the reader
            # thread while it waits, would stay held for ever in a forked
            # child, and closing the file there would hang.
            self._process = subprocess.Popen(
                [runner_path(), 'serve'], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=self.env, close_fds=True, start_new_session=True,
                bufsize=0)
        except OSError as exc:
            raise RunnerError(f'cannot start the recipe runner: {exc}') from exc
        line = self._ready_line()
        try:
            ready = decode_event(line)
        except ValueError:
            ready = {}
        if ready.get('event') != 'ready' or type(ready.get('pid')) is not int:
            self._process.kill()
            self._process.wait()
            self._process.stdin.close()
            self._process.stdout.close()
            raise RunnerError(
                f'the recipe runner {runner_path()} did not start '
                f'(exit status {self._process.returncode}'
                f'{", it said " + repr(line[:200]) if line else ""})')
        self.pid: int = ready['pid']
        max_request = ready.get('max_request')
        self.max_request: int = max_request if type(max_request) is int \
            and max_request > 0 else MAX_REQUEST_BYTES
        cpl_version, gdb = ready.get('cpl_version'), ready.get('gdb')
        self.cpl_version: str | None = cpl_version \
            if isinstance(cpl_version, str) else None
        self.gdb: str | None = gdb if isinstance(gdb, str) else None
        self._reader = threading.Thread(
            target=self._read_events, name=f'cplrun-server-{self.pid}',
            daemon=True)
        self._reader.start()

    def _ready_line(self) -> bytes:
        """The server's first line, within READY_TIMEOUT_SECONDS (b''
        when it does not come).  Read byte by byte from the pipe, so that
        nothing after it is taken from the reader thread."""
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        line = b''
        while not line.endswith(b'\n') and len(line) < MAX_EVENT_BYTES:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return b''
            byte = os.read(fd, 1)
            if not byte:
                break
            line += byte
        return line

    def _lines(self) -> Iterable[bytes]:
        """The server's reply lines; overlong ones, and a last one without
        its newline, are skipped."""
        fd = self._process.stdout.fileno()
        pending, skipping = b'', False
        while True:
            chunk = os.read(fd, READ_BYTES)
            if not chunk:
                return
            if skipping:            # the rest of an overlong line
                end = chunk.find(b'\n')
                if end < 0:
                    continue
                chunk, skipping = chunk[end + 1:], False
            lines = (pending + chunk).split(b'\n')
            pending = lines.pop()
            for line in lines:
                if len(line) < MAX_EVENT_BYTES:
                    yield line
            if len(pending) >= MAX_EVENT_BYTES:
                pending, skipping = b'', True

    def _write(self, message: bytes) -> None:
        """Writes all of message (an unbuffered pipe may take part of it)."""
        view = memoryview(message)
        while view:
            view = view[self._process.stdin.write(view):]

    @property
    def busy(self) -> bool:
        """A run is registered, or a caller is about to submit one."""
        with self._lock:
            return bool(self._handles) or self.reservations > 0

    def _check_owner(self) -> None:
        if os.getpid() != self.owner_pid:
            raise RunnerError('the recipe runner (pid %d) belongs to process '
                              '%d, not to this one' % (self.pid, self.owner_pid))

    def submit(self, fields: Sequence[tuple[str, str]]) -> RunHandle:
        """Starts one run; fields as described in ``src_c/serve.c``.
        RequestTooLarge, before anything is sent, when the request is
        longer than the server reads."""
        self._check_owner()
        body = encode_fields(fields)
        # Written under a lock of its own, not the one the reader thread
        # takes for every event: a request longer than the pipe holds is
        # written while the server sends replies, and a reader kept from
        # reading them would leave the server blocked on its replies, never
        # reading the rest of the request.  Registered and written in one
        # order: an unreadable request is attributed by that order.
        with self._write_lock:
            with self._lock:
                if self.closed:
                    raise RunnerError('the recipe runner has stopped')
                handle = RunHandle(self._next_id)
                payload = encode_fields(
                    [('op', 'run'), ('id', str(handle.id))]) + body
                if len(payload) > self.max_request:
                    raise RequestTooLarge(
                        'recipe %s cannot run: its request (frame names and '
                        'parameter values) takes %d bytes, more than the %d '
                        'bytes (%d MiB) the recipe runner reads; nothing was '
                        'run' % (dict(fields).get('recipe', '?'), len(payload),
                                 self.max_request, self.max_request >> 20))
                self._next_id += 1
                self._handles[handle.id] = handle
                self._unanswered.append(handle)
            try:
                self._write(encode_netstring(payload))
            except (OSError, ValueError) as exc:
                with self._lock:
                    self._handles.pop(handle.id, None)
                    if handle in self._unanswered:
                        self._unanswered.remove(handle)
                raise RunnerError(f'the recipe runner has stopped: {exc}') \
                    from exc
        return handle

    def kill(self, handle: RunHandle, sig: int = signal.SIGKILL) -> None:
        """Sends sig to the run's process group, if it still runs."""
        with self._write_lock:
            if self.closed or handle.finished.is_set() or \
                    os.getpid() != self.owner_pid:
                return
            try:
                self._write(encode_request(
                    [('op', 'kill'), ('id', str(handle.id)),
                     ('signal', str(int(sig)))]))
            except (OSError, ValueError):
                pass

    def abandon(self, handle: RunHandle, failure: str) -> None:
        """Gives up on a run the server does not end (it never answers
        for it): the run is finished with failure, whatever comes later."""
        with self._lock:
            if self._handles.pop(handle.id, None) is None:
                return
            if handle in self._unanswered:
                self._unanswered.remove(handle)
        handle._finish(None, failure)

    def _read_events(self) -> None:
        # Whatever the server sends, this thread must reach the end: runs
        # still waiting then learn that the server is gone.
        try:
            for line in self._lines():
                try:
                    self._take_event(line)
                except Exception:       # a line that is not a sound event
                    continue
        finally:
            try:
                # Its output ended: it ends too (or is made to).
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            finally:
                with self._lock:
                    self.closed = True
                    orphans = list(self._handles.values())
                    self._handles.clear()
                    self._unanswered.clear()
                for handle in orphans:
                    handle._finish(None, 'the recipe runner (pid %d) ended '
                                   'with status %s during the run'
                                   % (self.pid, self._process.returncode))
                # its end read: the pipe is of no more use (left to the
                # garbage collector, it is a ResourceWarning at exit)
                self._process.stdout.close()

    def _take_event(self, line: bytes) -> None:
        event = decode_event(line)
        kind = event['event']
        run_id = _event_id(event)
        with self._lock:
            handle = self._handles.get(run_id)
            if handle is None and kind == 'failed' and run_id == -1 \
                    and self._unanswered:
                # A request the server could not read: the oldest one
                # it has not answered (requests are answered in order).
                handle = self._unanswered[0]
            if handle is None:
                return
            if handle in self._unanswered:
                self._unanswered.remove(handle)
            if kind == 'started':
                pid = event.get('pid')
                handle.pid = pid if type(pid) is int and pid > 0 else None
                return
            if kind not in ('exited', 'finished', 'failed'):
                return
            del self._handles[handle.id]
        if kind == 'finished':
            exit_event, report = read_report(event)
            handle._finish(exit_event, None, report)
        elif kind == 'exited':
            problem = check_exit_event(event)
            if problem is None:
                handle._finish(event, None)
            else:
                handle._finish(None, 'the recipe runner sent a malformed '
                               'exit report (%s)' % problem)
        else:
            message = event.get('message')
            handle._finish(None, message if isinstance(message, str)
                           else 'the recipe runner refused the run')

    def close(self) -> None:
        """Ends the server; runs still going are killed by it.  Nothing in
        a forked child (see release_after_fork)."""
        if os.getpid() != self.owner_pid:
            return
        with self._lock:
            self.closed = True
        with self._write_lock:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=10)

    def release_after_fork(self) -> None:
        """In a forked child: lets go of the parent's server without
        touching it.  The child's copies of the pipes become /dev/null, so
        the server still sees the end of its input when the parent goes,
        and nothing the child does later (closing, collecting) reaches it."""
        self.closed = True
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._handles = {}
        self._unanswered = deque()
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            for pipe in (self._process.stdin, self._process.stdout):
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(devnull, pipe.fileno())
        finally:
            os.close(devnull)


class ServerPool:
    """The servers, one per environment, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: OrderedDict[tuple, Server] = OrderedDict()
        self._pid = os.getpid()
        #: a forked child's servers of its parent: kept, never used or
        #: collected (a collected Popen would warn that it still runs)
        self._inherited: list[Server] = []

    @contextlib.contextmanager
    def reserved(self, env: Mapping[str, str]) -> Iterator[Server]:
        """The server for env, started if needed, for the duration of the
        block: it is not retired meanwhile, and a run submitted in the block
        keeps it busy after."""
        if self._pid != os.getpid():    # forked without the fork hook
            self.forget_after_fork()
        key = tuple(sorted(env.items()))
        with self._lock:
            server = self._servers.get(key)
            if server is None or server.closed:
                server = self._servers[key] = Server(env)
            self._servers.move_to_end(key)
            server.reservations += 1
            retired = self._retire_idle()
        for old in retired:
            old.close()
        try:
            yield server
        finally:
            with self._lock:
                server.reservations -= 1

    def get(self, env: Mapping[str, str]) -> Server:
        """The server for env, started if needed (unreserved: it may be
        retired once idle)."""
        with self.reserved(env) as server:
            return server

    def _retire_idle(self) -> list[Server]:
        retired = []
        for key, server in list(self._servers.items()):
            if len(self._servers) <= MAX_SERVERS:
                break
            if server.closed or not server.busy:
                retired.append(self._servers.pop(key))
        return retired

    def close(self) -> None:
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.close()

    def forget_after_fork(self) -> None:
        """In a forked child: starts empty, the parent's servers released
        (their lock may have been held by a thread the child does not
        have)."""
        self._lock = threading.Lock()
        for server in self._servers.values():
            server.release_after_fork()
            self._inherited.append(server)
        self._servers = OrderedDict()
        self._pid = os.getpid()


pool = ServerPool()


def _forget_servers_after_fork() -> None:
    pool.forget_after_fork()


def _close_servers_at_exit() -> None:
    pool.close()


os.register_at_fork(after_in_child=_forget_servers_after_fork)
atexit.register(_close_servers_at_exit)


def describe(files: Sequence[str]) -> dict:
    """The runner's JSON description of the recipes in some plugin files.

    A library that crashes the describing process is described alone, and
    reported with its error, so one broken plugin does not hide the rest."""
    def run(batch):
        proc = subprocess.run([runner_path(), 'describe', *batch],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, env=_describe_env())
        if proc.returncode == 0:
            try:
                return json.loads(proc.stdout.decode('utf-8', errors='replace'))
            except ValueError:
                pass
        return None

    doc = run(files)
    if doc is not None or len(files) == 1:
        if doc is None:
            return {'cpl_version': None, 'plugins': [
                {'file': files[0], 'recipes': [],
                 'error': 'describing it crashed the runner'}]}
        return doc
    merged = {'cpl_version': None, 'plugins': []}
    for f in files:
        single = describe([f])
        merged['cpl_version'] = merged['cpl_version'] or single['cpl_version']
        merged['cpl_description'] = single.get('cpl_description')
        merged['plugins'].extend(single['plugins'])
    return merged


def _describe_env() -> dict:
    # Describing runs no recipe: keep OpenMP from starting threads anyway.
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    return env
