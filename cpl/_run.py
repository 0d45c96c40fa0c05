"""One recipe run: from checked arguments to a Result or an exception.

A run works in a fresh private folder of its own (recipes write into their
current directory, so runs sharing one clobber each other).  On success
the products are read into memory or moved into ``output_dir`` and the
folder is removed; on failure nothing is returned or moved, and the folder
stays, with the log, for inspection, as the error says (without the partial
products of a run that timed out).  A run interrupted (Ctrl-C), cancelled,
or abandoned at the interpreter's exit leaves nothing."""
from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from astropy.io import fits

from . import _runner
from ._products import (Identity, files_in, numbered_names, place_products,
                        unlink_quietly)
from ._slots import SlotWait
from .frames import MemoryFrame
from .logger import LogReader, runner_loglevel
from .result import (CplError, RecipeCrash, RecipeTimeout, Result, Stat,
                     inputs_text, signal_name)

#: How often a waiting run reads new log lines.
LOG_POLL_SECONDS = 0.2
#: After SIGTERM, how long a run may take to end before SIGKILL.
TERMINATE_GRACE_SECONDS = 2.0
#: After SIGKILL, how long the runner may take to report the end before
#: the run is given up (a process stuck in the kernel, or a runner that
#: lost the run): a timeout is a bound, whatever happens.
KILL_WAIT_SECONDS = 10.0
#: A recipe that crashed before its deadline but is still writing its
#: backtrace (gdb attaching under load can take seconds) gets this much
#: longer: it is reported as the crash it is, not as a timeout.
CRASH_REPORT_SECONDS = 30.0

LOG_FILE = '.cplrun-log'
OUTPUT_FILE = '.cplrun-output'
RESULT_FILE = '.cplrun-result.json'
BACKTRACE_FILE = '.cplrun-backtrace'


@dataclass
class RunSpec:
    """Everything one run needs, checked and in plain data."""
    recipe: str
    library: str
    params: list[tuple[str, str]]          # (full name, runner value)
    frames: list[tuple[str, Any]]          # (tag, absolute path or MemoryFrame)
    env: dict[str, str]
    logname: str
    loglevel: int | None = None
    memory_dump: int = 0
    output_dir: str | None = None
    temp_dir: str | None = None
    timeout: float | None = None
    #: -1: raw input was one frame; n: a list of n (decides list products)
    input_len: int = -1
    #: also write the run's full log here (CPL's log, then what the recipe
    #: printed directly), whatever the outcome
    log_copy: str | None = None
    #: the files in output_dir when the call was made, but the run's inputs
    #: (cpl._products.files_in): those the run's products may replace.
    #: Noted when the spec is made, that is when the call is made: a call
    #: waiting for a free slot, or a threaded one, overlaps the runs that
    #: end meanwhile.
    output_before: dict[str, Identity] | None = None

    def __post_init__(self) -> None:
        if self.output_before is None:
            self.output_before = files_in(
                self.output_dir, [f for _tag, f in self.frames
                                  if isinstance(f, str)])


class Cancelled(Exception):
    """Raised inside a run that was cancelled while running."""


@contextlib.contextmanager
def interrupts_noted():
    """While waiting in the main thread: an Event set by Ctrl-C (SIGINT),
    for loops to raise KeyboardInterrupt from when it is set.

    Python raises KeyboardInterrupt wherever the main thread is when the
    signal is handled, and that may be inside a ``__del__`` run by the
    garbage collector, where the exception is printed and dropped: a batch
    would then go on as if Ctrl-C had never been pressed.  The handler in
    place (the default one, or the user's) still runs first."""
    noted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):          # SIG_IGN, SIG_DFL: not ours to change
        yield noted
        return

    def note(signum, frame):
        noted.set()
        previous(signum, frame)
    try:
        signal.signal(signal.SIGINT, note)
    except ValueError:                  # not the main interpreter
        yield noted
        return
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class RunControl:
    """What another thread may do to a run in flight."""
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    #: the latest log message, for progress displays
    last_message: str | None = None
    #: the recipe process, once started, and how it ended (the runner's
    #: 'exited' event: exit status or signal, CPU times, peak memory)
    pid: int | None = None
    exit: dict | None = None


def _inputs(spec: RunSpec) -> list[str]:
    """The run's inputs as messages name them."""
    return [frame if isinstance(frame, str) else '%s (in memory)' % tag
            for tag, frame in spec.frames]


def _make_workdir(spec: RunSpec) -> str:
    """The run's private folder (0700, as mkdtemp makes it); OSError
    naming the recipe and the folder when it cannot be made."""
    try:
        return _new_workdir(spec)
    except OSError as exc:
        base = spec.temp_dir or (os.path.join(spec.output_dir, '.cplrun-work')
                                 if spec.output_dir else tempfile.gettempdir())
        raise OSError(exc.errno, 'recipe %s cannot run: no work folder can '
                      'be made in %s (%s); nothing was run'
                      % (spec.recipe, base, exc.strerror or exc),
                      exc.filename) from exc


def _new_workdir(spec: RunSpec) -> str:
    base = spec.temp_dir
    if base is None and spec.output_dir is not None:
        # Next to the destination, so that products move by rename.
        base = os.path.join(spec.output_dir, '.cplrun-work')
    if base is None:
        return tempfile.mkdtemp(prefix=spec.recipe + '-')
    for _attempt in range(10):
        os.makedirs(base, exist_ok=True)
        try:
            return tempfile.mkdtemp(prefix=spec.recipe + '-', dir=base)
        except FileNotFoundError:
            continue        # another run just removed the empty base
    raise OSError('cannot create a work folder in %s' % base)


def _remove_workdir(workdir: str) -> None:
    """Removes a run's folder, and the shared parent made for run folders
    when it is left empty."""
    shutil.rmtree(workdir, ignore_errors=True)
    parent = os.path.dirname(workdir)
    if os.path.basename(parent) == '.cplrun-work':
        try:
            os.rmdir(parent)
        except OSError:
            pass            # other runs still work there


def _write_memory_frame(frame: MemoryFrame, workdir: str,
                        written: dict[str, bytes]) -> str:
    """An in-memory input as a file in the work folder, under its name.
    Two different inputs of one name (same tag and data, headers that
    differ) get two files: python-cpl wrote the second over the first."""
    names = itertools.chain([frame.name], numbered_names(frame.name))
    name = next(names)
    while name in written and written[name] != frame.data:
        name = next(names)
    path = os.path.join(workdir, name)
    if name not in written:
        with open(path, 'wb') as f:
            f.write(frame.data)
        written[name] = frame.data
    return path


def _request(spec: RunSpec, workdir: str) -> list[tuple[str, str]]:
    fields = [('plugin', spec.library), ('recipe', spec.recipe),
              ('workdir', workdir),
              ('loglevel', runner_loglevel(spec.loglevel)),
              ('memory_dump', str(int(spec.memory_dump)))]
    fields += [('param', '%s=%s' % p) for p in spec.params]
    written: dict[str, bytes] = {}
    for tag, frame in spec.frames:
        path = _write_memory_frame(frame, workdir, written) \
            if isinstance(frame, MemoryFrame) else frame
        fields.append(('frame', '%s=%s' % (tag, path)))
    return fields


def _wait(server: _runner.Server, handle: _runner.RunHandle, spec: RunSpec,
          workdir: str, log: LogReader, control: RunControl,
          interrupted: threading.Event | None = None) -> str | None:
    """Waits for the run, forwarding its log; returns 'timeout' or
    'cancelled' when it had to be killed for that reason."""
    deadline = time.monotonic() + spec.timeout if spec.timeout else None
    crash_grace_given = False
    reason = None
    kill_at = give_up_at = None
    while not handle.finished.wait(LOG_POLL_SECONDS):
        if interrupted is not None and interrupted.is_set():
            raise KeyboardInterrupt
        control.pid = handle.pid
        log.poll()
        control.last_message = log.last_message
        now = time.monotonic()
        if reason is None:
            if control.cancel_requested.is_set():
                reason = 'cancelled'
            elif deadline is not None and now >= deadline:
                # The crash handler writes its file first, then runs gdb:
                # the file there means the recipe crashed in time.
                if not crash_grace_given and os.path.exists(
                        os.path.join(workdir, BACKTRACE_FILE)):
                    crash_grace_given = True
                    deadline = now + CRASH_REPORT_SECONDS
                else:
                    reason = 'timeout'
            if reason is not None:
                server.kill(handle, signal.SIGTERM)
                kill_at = now + TERMINATE_GRACE_SECONDS
        elif give_up_at is None and now >= kill_at:
            server.kill(handle, signal.SIGKILL)
            give_up_at = now + KILL_WAIT_SECONDS
        elif give_up_at is not None and now >= give_up_at:
            server.abandon(handle, 'the recipe runner did not report the end '
                           'of the run %g s after SIGKILL' % KILL_WAIT_SECONDS)
    return reason


class _LiveRun:
    """A run going on in this process: its folder, and once submitted,
    its server and handle."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.server: _runner.Server | None = None
        self.handle: _runner.RunHandle | None = None
        #: set when execute() is done with the run, whatever the outcome
        self.over = threading.Event()

    def kill(self) -> None:
        if self.handle is not None:
            self.server.kill(self.handle, signal.SIGKILL)

    def stop(self) -> None:
        """Kills the run and waits (a bounded time) for its end."""
        self.kill()
        if self.handle is not None:
            self.handle.finished.wait(KILL_WAIT_SECONDS)


class _LiveRuns:
    """The runs going on in this process, for the end of the interpreter:
    a script may exit with threaded runs in flight, whose threads stop
    wherever they are; their runs are then abandoned, and leave nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: set[_LiveRun] = set()

    def add(self, workdir: str) -> _LiveRun:
        run = _LiveRun(workdir)
        with self._lock:
            self._runs.add(run)
        return run

    def discard(self, run: _LiveRun) -> None:
        with self._lock:
            self._runs.discard(run)
        run.over.set()

    def forget_all(self) -> None:
        """In a forked child: the parent's runs are not the child's to
        kill or clean up (the lock may have been held at the fork)."""
        self._lock = threading.Lock()
        self._runs = set()

    def abandon_all(self) -> None:
        """Kills every run going on, lets its thread end it (up to
        KILL_WAIT_SECONDS for all), and removes its folder."""
        with self._lock:
            runs = list(self._runs)
        for run in runs:
            run.kill()
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        for run in runs:
            run.over.wait(max(0.0, deadline - time.monotonic()))
            _remove_workdir(run.workdir)


_live_runs = _LiveRuns()
# Registered after the runner pool's close (imported first), so it runs
# before it: the servers are still there to kill the runs.
atexit.register(_live_runs.abandon_all)
os.register_at_fork(after_in_child=_live_runs.forget_all)


def execute(spec: RunSpec, control: RunControl | None = None) -> Result:
    """Runs spec to its end, in a slot of :mod:`cpl._slots` (waiting for
    one until the run is cancelled); raises CplError, RecipeCrash,
    RecipeTimeout or Cancelled, each naming the recipe and where its log
    is."""
    control = control or RunControl()
    with SlotWait(control.cancel_requested) as slot:
        if not slot.granted:
            raise Cancelled()
        return _execute_in_slot(spec, control)


def _execute_in_slot(spec: RunSpec, control: RunControl) -> Result:
    if control.cancel_requested.is_set():
        raise Cancelled()
    run = _live_runs.add(_make_workdir(spec))
    try:
        return _execute(spec, control, run)
    except (KeyboardInterrupt, SystemExit):
        # Interrupted (Ctrl-C) at any moment, even as the run ends: the
        # run must not outlive it, and leaves nothing (no error names its
        # folder).
        run.stop()
        _remove_workdir(run.workdir)
        raise
    finally:
        _live_runs.discard(run)


def _execute(spec: RunSpec, control: RunControl, run: _LiveRun) -> Result:
    workdir = run.workdir
    try:
        fields = _request(spec, workdir)
        with _runner.pool.reserved(spec.env) as server:
            run.server = server
            handle = run.handle = server.submit(fields)
    except _runner.RunnerError as exc:
        _remove_workdir(workdir)
        raise _runner.RunnerError('recipe %s could not run (%s): %s' % (
            spec.recipe, inputs_text(_inputs(spec)), exc)) from exc
    except BaseException:
        _remove_workdir(workdir)
        raise
    started = time.monotonic()
    log = LogReader(os.path.join(workdir, LOG_FILE), spec.logname,
                    spec.loglevel)
    try:
        with interrupts_noted() as interrupted:
            reason = _wait(server, handle, spec, workdir, log, control,
                           interrupted)
    except BaseException:
        run.stop()          # whatever stopped the waiting, the run stops
        log.close()
        raise
    wall = time.monotonic() - started
    control.pid, control.exit = handle.pid, handle.exit
    log.close()
    log.add_output(os.path.join(workdir, OUTPUT_FILE))
    if spec.log_copy:
        _copy_log(workdir, spec.log_copy, spec.logname)
    return _outcome(spec, workdir, handle, reason, log, wall)


def _copy_log(workdir: str, path: str, logname: str) -> None:
    """The copy of the log is a convenience: failing to write it (a full
    disk) must not hide how the run ended, so it is only warned about."""
    try:
        with open(path, 'wb') as out:
            for name in (LOG_FILE, OUTPUT_FILE):
                try:
                    with open(os.path.join(workdir, name), 'rb') as f:
                        shutil.copyfileobj(f, out)
                except FileNotFoundError:
                    pass
    except OSError as exc:
        logging.getLogger(logname).warning(
            'cannot copy the log to %s: %s (it is in %s)', path, exc, workdir)


#: The result file is small; a larger one is not the runner's.
MAX_RESULT_BYTES = 64 << 20


def _read_result(workdir: str) -> dict | None:
    """The run's result file (written when its report could not be sent),
    or None when it is missing or is not what the runner writes (every
    field is checked: it comes from the recipe's process, which the recipe
    may have damaged)."""
    try:
        with open(os.path.join(workdir, RESULT_FILE), 'rb') as f:
            data = f.read(MAX_RESULT_BYTES + 1)
        doc = json.loads(data.decode('utf-8', errors='replace'))
    except (OSError, ValueError, RecursionError):
        return None
    if len(data) > MAX_RESULT_BYTES or not _sound_result(doc):
        return None
    return doc


def _plain_str(value: Any) -> bool:
    return isinstance(value, str) and '\0' not in value


def _sound_result(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    products, errors = doc.get('products'), doc.get('errors')
    if not isinstance(products, list) or not isinstance(errors, list):
        return False
    if type(doc.get('return_code', 0)) is not int or \
            doc.get('memory_is_empty', -1) not in (-1, 0, 1) or \
            isinstance(doc.get('memory_is_empty'), bool):
        return False
    setup_error = doc.get('setup_error')
    if setup_error is not None and not isinstance(setup_error, str):
        return False
    for p in products:
        if not isinstance(p, dict) or not _plain_str(p.get('tag')) or \
                not p['tag'] or not _plain_str(p.get('file')) or \
                not p['file']:
            return False
    for e in errors:
        if not isinstance(e, dict) or type(e.get('code')) is not int:
            return False
        for key in ('message', 'function', 'file'):
            if e.get(key) is not None and not isinstance(e[key], str):
                return False
        if e.get('line') is not None and type(e['line']) is not int:
            return False
    return True


def _crash_signal(workdir: str) -> int | None:
    """The signal the crash handler caught, from the first line
    ("signal N") of the file it writes; None when there was no crash."""
    first = _read_text(os.path.join(workdir, BACKTRACE_FILE)).split('\n', 1)[0]
    name, _, number = first.partition(' ')
    return int(number) if name == 'signal' and number.isdigit() else None


def _outcome(spec: RunSpec, workdir: str, handle: _runner.RunHandle,
             reason: str | None, log: LogReader, wall: float) -> Result:
    log_file = os.path.join(workdir, LOG_FILE)
    where = dict(recipe=spec.recipe, log_file=log_file, workdir=workdir,
                 inputs=_inputs(spec))
    exit_event = handle.exit or {}
    sig = exit_event.get('signal')
    code = exit_event.get('exit_code')
    if reason == 'cancelled':
        _remove_workdir(workdir)
        raise Cancelled()
    if reason == 'timeout':
        crash_signal = _crash_signal(workdir)
        if crash_signal is not None:
            # Crashed in time, killed while gdb was still writing: a
            # crash, with the signal the handler caught and what gdb had
            # written.
            reason, sig = None, crash_signal
    if reason == 'timeout':
        # Partial products may be large (109 MB for a MUSE bias), and are
        # of no use: the folder keeps what tells why it took so long.
        removed = _remove_partial_products(workdir)
        raise RecipeTimeout('recipe %s timed out after %g s and was killed; '
                            'its partial products (%d FITS files) were '
                            'removed, its log is kept'
                            % (spec.recipe, spec.timeout, removed),
                            signal=sig, **where)
    if handle.failure is not None:
        raise RecipeCrash('recipe %s could not run: %s'
                          % (spec.recipe, handle.failure), **where)
    if sig is not None:
        backtrace = _read_text(os.path.join(workdir, BACKTRACE_FILE))
        if sig == signal.SIGKILL:
            text = ('recipe %s was killed by SIGKILL from outside (the '
                    'out-of-memory killer does this)' % spec.recipe)
        else:
            text = 'recipe %s crashed with %s' % (spec.recipe, signal_name(sig))
        raise RecipeCrash(text, signal=sig, backtrace=backtrace, **where)
    if handle.report is not None:
        result = handle.report if _sound_result(handle.report) else None
    else:
        result = _read_result(workdir)
    if code != 0 or result is None:
        if code:
            why = '; it called exit()'
        elif handle.report is not None or \
                os.path.exists(os.path.join(workdir, RESULT_FILE)):
            why = '; its result is damaged'
        else:
            why = _no_space_hint(workdir)
        raise RecipeCrash(
            'recipe %s ended (exit status %s) without finishing%s'
            % (spec.recipe, code, why), exit_code=code, **where)
    if result.get('setup_error'):
        raise ValueError('recipe %s refused its input: %s (%s; log %s)'
                         % (spec.recipe, result['setup_error'],
                            inputs_text(_inputs(spec)), log_file))
    errors = result['errors']
    retval = result.get('return_code', 0)
    if retval:
        raise CplError(retval, errors, log.entries, **where)
    memory = {-1: None, 0: False, 1: True}.get(result.get('memory_is_empty'))
    stat = Stat(retval, exit_event.get('utime', 0.0), exit_event.get('stime', 0.0),
                memory, wall, exit_event.get('maxrss_kb', 0) / 1024.0)
    products = _collect_products(spec, workdir, result['products'], where)
    entries = log.entries_outliving(spec.log_copy, spec.temp_dir)
    _remove_workdir(workdir)
    error = CplError(retval, errors, entries, spec.recipe) if errors else None
    return Result(products, entries, stat, error, spec.output_dir)


def _remove_partial_products(workdir: str) -> int:
    """Removes the FITS files a killed run left in workdir (what a recipe
    writes as products is FITS, whatever its name); its log and other
    small files stay.  Returns how many were removed."""
    removed = 0
    for name in os.listdir(workdir):
        path = os.path.join(workdir, name)
        try:
            with open(path, 'rb') as f:
                is_fits = f.read(len(FITS_SIGNATURE)) == FITS_SIGNATURE
        except OSError:         # a folder, or gone
            continue
        if is_fits and not os.path.islink(path):
            unlink_quietly(path)
            removed += 1
    return removed


#: How every FITS file begins.
FITS_SIGNATURE = b'SIMPLE  ='


def _no_space_hint(workdir: str) -> str:
    """Why a run that exited normally may have left no result file."""
    try:
        if shutil.disk_usage(workdir).free == 0:
            return ('; no space is left on the device of its work folder, '
                    'so it could not write its result')
    except OSError:
        pass
    return ''


def _read_text(path: str) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def _product_path(workdir: str, name: str, where: dict) -> str:
    """The product's file: a regular file inside the work folder.  A name
    leading out of it (``../x``, an absolute path, a symlinked folder) or
    a symlink is refused, and so is a missing file."""
    if os.sep in name or name in ('.', '..'):
        top = os.path.realpath(workdir)
        joined = os.path.join(top, name)
        path = os.path.realpath(joined)
        inside = os.path.commonpath([path, top]) == top and path != top
    else:
        # A plain name (what recipes write) cannot lead out: one lstat
        # tells the rest, where resolving paths takes one per component.
        joined = path = os.path.join(workdir, name)
        inside = True
    try:
        mode = os.lstat(joined).st_mode
    except OSError:
        mode = None
    problem = None
    if not inside:
        problem = 'outside its work folder'
    elif mode is None:
        problem = 'that is missing'
    elif stat.S_ISLNK(mode):
        problem = 'that is a symbolic link'
    elif not (stat.S_ISREG(mode) if path == joined else os.path.isfile(path)):
        problem = 'that is not a regular file'
    if problem is not None:
        raise RecipeCrash('recipe %s reported a product %s: %s; it was not '
                          'taken' % (where['recipe'], problem, name), **where)
    return path


def _collect_products(spec: RunSpec, workdir: str, reported: list,
                      where: dict) -> dict:
    files = [(p['tag'], _product_path(workdir, p['file'], where))
             for p in reported]
    grouped: dict[str, list] = {}
    if spec.output_dir is not None:
        unique = list(dict.fromkeys(p for _t, p in files))  # reported twice
        try:
            moved = dict(zip(unique, place_products(
                unique, spec.output_dir, spec.logname, spec.output_before)))
        except OSError as exc:
            raise OSError(exc.errno, 'recipe %s: its products could not be '
                          'saved in %s (%s); none was, they are kept in %s '
                          '(%s; log %s)' % (
                              spec.recipe, spec.output_dir,
                              exc.strerror or exc, workdir,
                              inputs_text(where['inputs']),
                              where['log_file'])) from exc
        files = [(t, moved[p]) for t, p in files]
    for tag, path in files:
        if spec.output_dir is None:
            value = _read_product(path, where)
        else:
            value = path
        grouped.setdefault(tag, []).append(value)
    # python-cpl's rule: a one-element raw list gives list products.  (An
    # HDUList is itself a list: never append products to one.)
    return {tag: values if len(values) > 1 or spec.input_len == 1
            else values[0] for tag, values in grouped.items()}


def _read_product(path: str, where: dict) -> fits.HDUList:
    try:
        with open(path, 'rb') as f:
            return fits.HDUList.fromstring(f.read())
    except Exception as exc:        # astropy's many ways to say "not FITS"
        raise RecipeCrash('recipe %s wrote a product that cannot be read as '
                          'FITS: %s (%s: %s)' % (
                              where['recipe'], os.path.basename(path),
                              type(exc).__name__, exc), **where) from exc
