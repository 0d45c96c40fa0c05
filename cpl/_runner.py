"""The runner processes that load and run recipes on behalf of Python.

The interpreter never loads a recipe library and is never forked.  Instead
each distinct recipe environment gets one fork server (``cplrun-runner
serve``, from ``src_c/``), started with exactly that environment, so that
libgomp and CPL read ``OMP_*`` and ``CPL_*`` as they would in a shell.  The
server forks one process per run.  Requests go to its stdin as netstrings;
answers come back as JSON lines, read by one thread per server.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import threading
from collections import OrderedDict
from typing import Iterable, Mapping, Sequence

#: Servers kept alive at once; the least recently used idle one goes first.
MAX_SERVERS = 8


class RunnerError(OSError):
    """The runner program is missing or could not be started."""


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


def encode_request(fields: Iterable[tuple[str, str]]) -> bytes:
    """One request: a netstring of alternating key and value netstrings."""
    payload = b''.join(
        encode_netstring(k.encode()) + encode_netstring(os.fsencode(v))
        for k, v in fields)
    return encode_netstring(payload)


def decode_event(line: bytes) -> dict:
    """One reply line of the server; ValueError when it is not one."""
    event = json.loads(line.decode('utf-8', errors='replace'))
    if not isinstance(event, dict) or not isinstance(event.get('event'), str):
        raise ValueError(f'not a runner event: {line[:200]!r}')
    return event


class RunHandle:
    """One run submitted to a server: its pid, and how it ended."""

    def __init__(self, run_id: int) -> None:
        self.id = run_id
        self.pid: int | None = None
        self.exit: dict | None = None        # the 'exited' event
        self.failure: str | None = None      # why it never started or ended
        self.finished = threading.Event()

    def _finish(self, exit_event: dict | None, failure: str | None) -> None:
        self.exit = exit_event
        self.failure = failure
        self.finished.set()


class Server:
    """One ``cplrun-runner serve`` process and its reader thread."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._lock = threading.Lock()
        self._handles: dict[int, RunHandle] = {}
        self._next_id = 1
        self.closed = False
        self.last_used = 0.0
        try:
            self._process = subprocess.Popen(
                [runner_path(), 'serve'], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=self.env, close_fds=True, start_new_session=True)
        except OSError as exc:
            raise RunnerError(f'cannot start the recipe runner: {exc}') from exc
        line = self._process.stdout.readline()
        try:
            ready = decode_event(line)
        except ValueError:
            ready = {}
        if ready.get('event') != 'ready':
            self._process.kill()
            self._process.wait()
            raise RunnerError(
                f'the recipe runner {runner_path()} did not start '
                f'(exit status {self._process.returncode})')
        self.pid: int = ready['pid']
        self.cpl_version: str = ready.get('cpl_version')
        self.gdb: str | None = ready.get('gdb')
        self._reader = threading.Thread(
            target=self._read_events, name=f'cplrun-server-{self.pid}',
            daemon=True)
        self._reader.start()

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._handles)

    def submit(self, fields: Sequence[tuple[str, str]]) -> RunHandle:
        """Starts one run; fields as described in ``src_c/serve.c``."""
        with self._lock:
            if self.closed:
                raise RunnerError('the recipe runner has stopped')
            handle = RunHandle(self._next_id)
            self._next_id += 1
            self._handles[handle.id] = handle
            message = encode_request(
                [('op', 'run'), ('id', str(handle.id))] + list(fields))
            try:
                self._process.stdin.write(message)
                self._process.stdin.flush()
            except OSError as exc:
                del self._handles[handle.id]
                raise RunnerError(f'the recipe runner has stopped: {exc}') \
                    from exc
        return handle

    def kill(self, handle: RunHandle, sig: int = signal.SIGKILL) -> None:
        """Sends sig to the run's process group, if it still runs."""
        with self._lock:
            if self.closed or handle.finished.is_set():
                return
            try:
                self._process.stdin.write(encode_request(
                    [('op', 'kill'), ('id', str(handle.id)),
                     ('signal', str(int(sig)))]))
                self._process.stdin.flush()
            except OSError:
                pass

    def _read_events(self) -> None:
        for line in self._process.stdout:
            try:
                event = decode_event(line)
                run_id = int(event.get('id', -1))
            except (ValueError, TypeError):
                continue
            with self._lock:
                handle = self._handles.get(run_id)
                if handle is None:
                    continue
                kind = event['event']
                if kind == 'started':
                    handle.pid = event.get('pid')
                    continue
                del self._handles[run_id]
            if kind == 'exited':
                handle._finish(event, None)
            else:
                handle._finish(None, str(event.get('message')))
        self._process.wait()
        with self._lock:
            self.closed = True
            orphans = list(self._handles.values())
            self._handles.clear()
        for handle in orphans:
            handle._finish(None, 'the recipe runner (pid %d) ended with '
                           'status %s during the run'
                           % (self.pid, self._process.returncode))

    def close(self) -> None:
        """Ends the server; runs still going are killed by it."""
        with self._lock:
            self.closed = True
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


class ServerPool:
    """The servers, one per environment, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: OrderedDict[tuple, Server] = OrderedDict()

    def get(self, env: Mapping[str, str]) -> Server:
        key = tuple(sorted(env.items()))
        with self._lock:
            server = self._servers.get(key)
            if server is not None and not server.closed:
                self._servers.move_to_end(key)
                return server
            server = Server(env)
            self._servers[key] = server
            retired = self._retire_idle()
        for old in retired:
            old.close()
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


pool = ServerPool()
atexit.register(pool.close)


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
