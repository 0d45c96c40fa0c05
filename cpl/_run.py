"""One recipe run: from checked arguments to a Result or an exception.

A run works in a fresh private folder of its own (recipes write into their
current directory, so runs sharing one clobber each other).  On success
the products are read into memory or moved into ``output_dir`` and the
folder is removed; on failure nothing is returned or moved, and the folder
stays, with the log, for inspection."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from astropy.io import fits

from . import _runner
from .logger import LogReader, runner_loglevel
from .result import (CplError, RecipeCrash, RecipeTimeout, Result, Stat,
                     signal_name)

#: How often a waiting run reads new log lines.
LOG_POLL_SECONDS = 0.2
#: After SIGTERM, how long a run may take to end before SIGKILL.
TERMINATE_GRACE_SECONDS = 2.0

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
    frames: list[tuple[str, Any]]          # (tag, absolute path or HDUList)
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


class Cancelled(Exception):
    """Raised inside a run that was cancelled while running."""


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


def _make_workdir(spec: RunSpec) -> str:
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


def _write_hdulist(hdulist: fits.HDUList, tag: str, workdir: str) -> str:
    """An in-memory input as a file in the work folder, named by content
    (CPL records input names in the products' headers)."""
    buf = io.BytesIO()
    hdulist.writeto(buf)
    data = buf.getvalue()
    path = os.path.join(workdir, '%s_%s.fits'
                        % (tag, hashlib.md5(data).hexdigest()[:8]))
    with open(path, 'wb') as f:
        f.write(data)
    return path


def _request(spec: RunSpec, workdir: str) -> list[tuple[str, str]]:
    fields = [('plugin', spec.library), ('recipe', spec.recipe),
              ('workdir', workdir),
              ('loglevel', runner_loglevel(spec.loglevel)),
              ('memory_dump', str(int(spec.memory_dump)))]
    fields += [('param', '%s=%s' % p) for p in spec.params]
    for tag, frame in spec.frames:
        path = _write_hdulist(frame, tag, workdir) \
            if isinstance(frame, fits.HDUList) else frame
        fields.append(('frame', '%s=%s' % (tag, path)))
    return fields


def _wait(server: _runner.Server, handle: _runner.RunHandle, spec: RunSpec,
          log: LogReader, control: RunControl) -> str | None:
    """Waits for the run, forwarding its log; returns 'timeout' or
    'cancelled' when it had to be killed for that reason."""
    deadline = time.monotonic() + spec.timeout if spec.timeout else None
    reason = None
    kill_at = None
    while not handle.finished.wait(LOG_POLL_SECONDS):
        control.pid = handle.pid
        log.poll()
        control.last_message = log.last_message
        now = time.monotonic()
        if reason is None:
            if control.cancel_requested.is_set():
                reason = 'cancelled'
            elif deadline is not None and now >= deadline:
                reason = 'timeout'
            if reason is not None:
                server.kill(handle, signal.SIGTERM)
                kill_at = now + TERMINATE_GRACE_SECONDS
        elif now >= kill_at:
            server.kill(handle, signal.SIGKILL)
            kill_at = float('inf')
    return reason


def execute(spec: RunSpec, control: RunControl | None = None) -> Result:
    """Runs spec to its end; raises CplError, RecipeCrash, RecipeTimeout
    or Cancelled, each naming the recipe and where its log is."""
    control = control or RunControl()
    if control.cancel_requested.is_set():
        raise Cancelled()
    workdir = _make_workdir(spec)
    try:
        fields = _request(spec, workdir)
        server = _runner.pool.get(spec.env)
        handle = server.submit(fields)
    except BaseException:
        _remove_workdir(workdir)
        raise
    started = time.monotonic()
    log = LogReader(os.path.join(workdir, LOG_FILE), spec.logname,
                    spec.loglevel)
    try:
        reason = _wait(server, handle, spec, log, control)
    except BaseException:
        # Interrupted (Ctrl-C) while waiting: the run must not outlive it.
        server.kill(handle, signal.SIGKILL)
        handle.finished.wait(10)
        raise
    wall = time.monotonic() - started
    control.pid, control.exit = handle.pid, handle.exit
    log.close()
    _add_output_lines(log, os.path.join(workdir, OUTPUT_FILE))
    if spec.log_copy:
        _copy_log(workdir, spec.log_copy)
    return _outcome(spec, workdir, handle, reason, log, wall)


def _copy_log(workdir: str, path: str) -> None:
    with open(path, 'wb') as out:
        for name in (LOG_FILE, OUTPUT_FILE):
            try:
                with open(os.path.join(workdir, name), 'rb') as f:
                    shutil.copyfileobj(f, out)
            except FileNotFoundError:
                pass


def _add_output_lines(log: LogReader, path: str) -> None:
    """What the recipe printed directly, bypassing CPL's messaging."""
    try:
        with open(path, 'rb') as f:
            text = f.read().decode('utf-8', errors='replace')
    except OSError:
        return
    logger = logging.getLogger(log.logname + '.output')
    for line in text.splitlines():
        # lineno 0, not None: formats with %(lineno)d (pytest's) need one.
        record = logging.LogRecord(logger.name, logging.INFO, None, 0,
                                   line, None, None, 'output')
        record.threadid = None
        log.entries.append(record)
        if logger.isEnabledFor(logging.INFO):
            logger.handle(record)


def _read_result(workdir: str) -> dict | None:
    try:
        with open(os.path.join(workdir, RESULT_FILE), 'rb') as f:
            doc = json.loads(f.read().decode('utf-8', errors='replace'))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get('products'), list) \
            or not isinstance(doc.get('errors'), list):
        return None
    return doc


def _outcome(spec: RunSpec, workdir: str, handle: _runner.RunHandle,
             reason: str | None, log: LogReader, wall: float) -> Result:
    log_file = os.path.join(workdir, LOG_FILE)
    where = dict(recipe=spec.recipe, log_file=log_file, workdir=workdir)
    exit_event = handle.exit or {}
    sig = exit_event.get('signal')
    code = exit_event.get('exit_code')
    if reason == 'cancelled':
        _remove_workdir(workdir)
        raise Cancelled()
    if reason == 'timeout':
        raise RecipeTimeout('recipe %s timed out after %g s and was killed'
                            % (spec.recipe, spec.timeout), signal=sig, **where)
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
    result = _read_result(workdir)
    if code != 0 or result is None:
        raise RecipeCrash(
            'recipe %s ended (exit status %s) without finishing%s'
            % (spec.recipe, code, '; it called exit()' if code else ''),
            exit_code=code, **where)
    if result.get('setup_error'):
        raise ValueError('recipe %s refused its input: %s (log %s)'
                         % (spec.recipe, result['setup_error'], log_file))
    errors = result['errors']
    retval = result.get('return_code', 0)
    if retval:
        raise CplError(retval, errors, log.entries, **where)
    memory = {-1: None, 0: False, 1: True}.get(result.get('memory_is_empty'))
    stat = Stat(retval, exit_event.get('utime', 0.0), exit_event.get('stime', 0.0),
                memory, wall, exit_event.get('maxrss_kb', 0) / 1024.0)
    products = _collect_products(spec, workdir, result['products'])
    _remove_workdir(workdir)
    error = CplError(retval, errors, log.entries, spec.recipe) if errors else None
    return Result(products, log.entries, stat, error, spec.output_dir)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            return f.read()
    except OSError:
        return ''


def _product_path(workdir: str, name: str, recipe: str) -> str:
    """The product's file, refused when it lies outside the work folder."""
    path = os.path.realpath(os.path.join(workdir, name))
    if os.path.commonpath([path, os.path.realpath(workdir)]) != \
            os.path.realpath(workdir) or not os.path.isfile(path):
        raise RecipeCrash('recipe %s reported a product outside its work '
                          'folder or missing: %s' % (recipe, name),
                          recipe=recipe, workdir=workdir)
    return path


def _collect_products(spec: RunSpec, workdir: str, reported: list) -> dict:
    files = [(p['tag'], _product_path(workdir, p['file'], spec.recipe))
             for p in reported]
    grouped: dict[str, list] = {}
    for tag, path in files:
        if spec.output_dir is None:
            with open(path, 'rb') as f:
                value = fits.HDUList.fromstring(f.read())
        else:
            value = move_no_clobber(path, spec.output_dir, spec.logname)
        grouped.setdefault(tag, []).append(value)
    # python-cpl's rule: a one-element raw list gives list products.  (An
    # HDUList is itself a list: never append products to one.)
    return {tag: values if len(values) > 1 or spec.input_len == 1
            else values[0] for tag, values in grouped.items()}


def move_no_clobber(path: str, directory: str, logname: str) -> str:
    """Moves path into directory under its own name, or, when a file of
    that name is there already (another run's product), under the first
    free name ``stem-N.ext``, saying so in the log: a product never
    replaces another silently."""
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    stem, ext = os.path.splitext(name)
    for n in range(0, 100000):
        target = os.path.join(directory, name if n == 0 else
                              '%s-%d%s' % (stem, n, ext))
        try:
            os.link(path, target)       # fails if target exists: atomic
        except FileExistsError:
            continue
        except OSError:
            # Another file system (or no hard links): copy under a
            # temporary name, then link that into place.
            tmp = tempfile.NamedTemporaryFile(dir=directory, delete=False,
                                              prefix='.cplrun-', suffix=ext)
            tmp.close()
            shutil.copyfile(path, tmp.name)
            try:
                os.link(tmp.name, target)
            except FileExistsError:
                os.unlink(tmp.name)
                continue
            os.unlink(tmp.name)
        os.unlink(path)
        if n:
            logging.getLogger(logname).warning(
                '%s exists in %s; this product was saved as %s',
                name, directory, os.path.basename(target))
        return target
    raise OSError('no free name for %s in %s' % (name, directory))
