"""One workflow run as a plain-data task: :func:`run_task` runs it in this
process's recipe runner (or on a Dask worker), and settles its log."""
from __future__ import annotations

import os
import socket
import tempfile
import time
from typing import Any, Mapping

from .._records import (RUN_RECORD, WORK_FOLDER, commit, remove_staging,
                        unlink_quietly)
from .._run import Cancelled, RunControl, execute
from ..recipe import Recipe
from ..result import (CplError, RecipeCrash, RecipeTimeout, count_warnings,
                      recipe_warnings)
from ._backends import dask_worker, watch_dask_cancel


#: How many of a run's warning messages its report and summary show.
SHOWN_WARNINGS = 3


def run_task(task: Mapping[str, Any], control: RunControl | None = None
             ) -> dict:
    """Runs one workflow run described in plain data, in this process's
    recipe runner; returns its outcome (status, products, error, figures).

    Top-level and plain-data so that other executors can run it."""
    control = control or RunControl()
    started = time.time()
    outcome: dict[str, Any] = {'status': 'failed', 'products': {},
                               'error': None, 'started': started}
    log_copy = None
    worker = dask_worker() if task.get('on_dask') else None
    stop_watch = watch_dask_cancel(task['cancel_event'], control) \
        if worker is not None else None
    try:
        recipe = Recipe(task['recipe'], filename=task['library'],
                        version=task['version'])
        raw = {task['tag']: list(task['raw'])}
        spec = recipe._spec((raw,), {
            'tag': task['tag'], 'param': task['param'],
            'calib': {t: list(f) for t, f in task['calib'].items()},
            'env': task['env'], 'output_dir': task['output_dir'],
            'timeout': task.get('timeout')})
        spec.log_copy = log_copy = _attempt_log(task)
        work_base = os.path.join(task['output_dir'], WORK_FOLDER)
        spec.temp_dir = work_base
        if worker is not None:
            # Scratch on the worker's own disk; products go to output_dir,
            # which must be on a file system the client shares.
            spec.temp_dir = os.path.join(worker.local_directory, 'cplrun')
        # The products land beside the run folder first: the earlier run's
        # products stay until this run has succeeded and its record is
        # about to name the new ones.
        os.makedirs(work_base, exist_ok=True)
        spec.output_dir = staging = tempfile.mkdtemp(prefix='products-',
                                                     dir=work_base)
        try:
            result = execute(spec, control)
            _note_warnings(outcome, result.log)
            outcome['products'] = commit(
                task['output_dir'], task.get('key'), task['recipe'],
                {tag: value for tag, value in result})
        finally:
            remove_staging(staging)
        outcome['status'] = 'success'
    except Cancelled:
        outcome['status'] = 'cancelled'
        outcome['error'] = 'cancelled'
    except RecipeTimeout as exc:
        outcome['status'], outcome['error'] = 'timeout', str(exc)
    except RecipeCrash as exc:
        outcome['status'], outcome['error'] = 'crashed', str(exc)
    except CplError as exc:
        # its text names the folder kept until the run is tried again
        outcome['status'], outcome['error'] = 'failed', exc.report_text()
        _note_warnings(outcome, exc.log)
    except Exception as exc:        # bad input found at run time
        outcome['status'] = 'failed'
        outcome['error'] = '%s: %s' % (type(exc).__name__, exc)
    finally:
        if stop_watch is not None:
            stop_watch.set()
    if log_copy is not None and log_copy != task.get('log'):
        _settle_attempt_log(task, log_copy, outcome)
    exit_event = control.exit or {}
    outcome['wall_s'] = time.time() - started
    if exit_event:
        outcome['cpu_s'] = exit_event.get('utime', 0) + exit_event.get('stime', 0)
        outcome['max_rss_mb'] = exit_event.get('maxrss_kb', 0) / 1024.0
    outcome['worker'] = worker.address if worker is not None else '%s:%s' % (
        socket.gethostname(), control.pid if control.pid else os.getpid())
    return outcome


def _attempt_log(task: Mapping[str, Any]) -> str | None:
    """Where this attempt's log is copied: the run's log, unless an
    earlier run's products are kept in its folder (a rerun), whose log
    must stay with them until this attempt has succeeded."""
    log = task.get('log')
    if log is None or not os.path.exists(os.path.join(task['output_dir'],
                                                      RUN_RECORD)):
        return log
    stem, ext = os.path.splitext(log)
    return '%s.attempt%s' % (stem, ext)


def _settle_attempt_log(task: Mapping[str, Any], attempt: str,
                        outcome: dict) -> None:
    """A rerun's log: it replaces the run's log when the rerun succeeded
    (its products replaced the earlier ones); when it failed, it is kept
    as ``<run>.failed.log`` beside the earlier run's, which still
    describes the products kept; a cancelled one leaves nothing."""
    if not os.path.exists(attempt):
        return
    if outcome['status'] == 'cancelled':
        unlink_quietly(attempt)
        return
    stem, ext = os.path.splitext(task['log'])
    if outcome['status'] == 'success':
        target = task['log']
        unlink_quietly('%s.failed%s' % (stem, ext))    # of an older attempt
    else:
        target = outcome['log'] = '%s.failed%s' % (stem, ext)
    try:
        os.replace(attempt, target)
    except OSError:
        outcome['log'] = attempt        # still there, under its own name


def _note_warnings(outcome: dict, log: Any) -> None:
    """The number of warnings of a run, and its first few, in its outcome."""
    outcome['warnings'] = count_warnings(log)
    firsts: list[str] = []
    for text in recipe_warnings(log):
        if text not in firsts:
            firsts.append(text)
    outcome['warning_lines'] = firsts[:SHOWN_WARNINGS]
