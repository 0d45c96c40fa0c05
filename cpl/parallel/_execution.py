"""The execution of one :meth:`Workflow.run`: checks before anything runs,
then the loop that submits ready runs to a backend and takes their
outcomes, each run's status moving only as :data:`TRANSITIONS` allows."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings as _warnings
from typing import Any, Mapping

from .._records import file_digest, forget_failures, reusable_products
from .._run import interrupts_noted
from ..frames import frame_items
from ._backends import backend_for
from ._graph import Node, ProductRef, input_path
from ._report import DONE_OK, Report, RunRecord, with_earlier_runs
from ._task import run_task


#: The moves of a run's status, the whole state machine of a workflow's
#: run: each status -> those it may become.  A run starts ``pending``;
#: without running it becomes ``cached`` (its earlier products are
#: reused), ``skipped`` (an input is missing, or a run it needs did not
#: succeed), ``failed`` (its task could not be prepared) or ``cancelled``
#: (the workflow stopped first); else it is submitted, ``running``, and
#: ends as its outcome says.  Only a ``crashed`` run runs again (while
#: ``retries`` last).  The other statuses are final.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    'pending': ('running', 'cached', 'skipped', 'failed', 'cancelled'),
    'running': ('success', 'failed', 'crashed', 'timeout', 'cancelled'),
    'crashed': ('running',),
}
#: RAM a run needs per byte of input, for the pre-flight estimate.
RAM_PER_INPUT_BYTE = 4.0
#: Disk a run needs per byte of input.
DISK_PER_INPUT_BYTE = 1.5


class MissingInputsError(FileNotFoundError):
    """Input files of some runs do not exist; ``missing`` lists
    (run name, tag, path) for all of them."""

    def __init__(self, missing: list[tuple[str, str, str]]) -> None:
        self.missing = missing
        lines = ['%d input file(s) missing; nothing was run:' % len(missing)]
        lines += ['  %s: %s (tag %s)' % (run, path, tag)
                  for run, tag, path in missing]
        super().__init__('\n'.join(lines))

    def __str__(self) -> str:
        return self.args[0]


class PreflightError(RuntimeError):
    """The estimated memory or disk use exceeds what the machine has."""


class PreflightWarning(UserWarning):
    """The estimated memory or disk use is close to what the machine has
    (or above it, with ``force_run=True``)."""


class Execution:
    """One :meth:`Workflow.run`: its runs' records and the products made so
    far, the backend the runs go to, and the options of the call.

    :meth:`run` checks first (inputs, pre-flight, the output folder), then
    loops: it submits the runs that are ready (every run they need made or
    reused its products) while fewer than ``n_workers`` are running, and
    takes each finished run's outcome, moving its record's status along
    :data:`TRANSITIONS` only (with :func:`move`).  The loop ends when no
    run is running and none can start; a ``pending`` run left then is
    ``skipped`` (it needs a run that did not succeed), or ``cancelled``
    when the workflow stopped (``fail_fast``, or an interrupt, after which
    every running run is cancelled and the report still written)."""

    def __init__(self, nodes: list[Node], **options: Any) -> None:
        """nodes: the workflow's runs, each after those it needs."""
        self.nodes = nodes
        self.o = options
        self.output_dir = os.path.abspath(options['output_dir'])
        self.log_dir = os.path.abspath(options['log_dir']) \
            if options['log_dir'] else None
        self.n_workers = int(options['n_workers']) if options['n_workers'] \
            else None        # None: what the backend has
        self.backend = None
        self.records = {n.name: RunRecord(n.name, n.recipe.__name__,
                                          depends_on=n.depends_on())
                        for n in self.nodes}
        self.products: dict[str, dict] = {}
        self.omp = '1'

    def _width(self) -> int:
        """How many runs can be going at once at most: the largest number
        of runs at the same depth of the graph."""
        depth: dict[str, int] = {}
        for node in self.nodes:
            depth[node.name] = 1 + max((depth[d] for d in node.depends_on()),
                                       default=0)
        per_level: dict[int, int] = {}
        for d in depth.values():
            per_level[d] = per_level.get(d, 0) + 1
        return max(per_level.values(), default=1)

    # -- before anything runs
    def _check_inputs(self) -> None:
        missing = []
        for node in self.nodes:
            for tag, f in node.inputs():
                if isinstance(f, ProductRef) or not isinstance(
                        f, (str, os.PathLike)):
                    continue
                if not os.path.isfile(f):
                    missing.append((node.name, tag, os.path.abspath(f)))
        if not missing:
            return
        if self.o['strict']:
            raise MissingInputsError(missing)
        for name in sorted({m[0] for m in missing}):
            record = self.records[name]
            move(record, 'skipped')
            record.error = 'missing input(s): ' + ', '.join(
                p for n, _t, p in missing if n == name)

    def _preflight(self) -> list[str]:
        import psutil
        sizes = []
        for node in self.nodes:
            if self.records[node.name].status != 'pending':
                continue
            total = 0
            for _t, f in node.inputs():
                if isinstance(f, (str, os.PathLike)) and os.path.isfile(f):
                    total += os.path.getsize(f)
            sizes.append(total)
        sizes.sort(reverse=True)
        ram_need = RAM_PER_INPUT_BYTE * sum(sizes[:self.n_workers])
        ram_have = psutil.virtual_memory().available
        # output_dir may not exist yet, and a refusal must not create it:
        # its nearest existing folder is on the same file system.
        where = self.output_dir
        while not os.path.isdir(where) and os.path.dirname(where) != where:
            where = os.path.dirname(where)
        disk_need = DISK_PER_INPUT_BYTE * sum(sizes)
        disk_have = shutil.disk_usage(where).free
        warnings, refusals = [], []
        checks = [('disk space at %s' % self.output_dir, disk_need, disk_have)]
        if self.backend.is_local:
            # On a cluster the runs use the workers' memory, not ours.
            checks.insert(0, ('memory', ram_need, ram_have))
        for what, need, have in checks:
            text = ('estimated %s need %.1f GB, %.1f GB available'
                    % (what, need / 1e9, have / 1e9))
            if need > have:
                refusals.append(text)
            elif need > 0.8 * have:
                warnings.append(text)
        if refusals and not self.o['force_run']:
            raise PreflightError('; '.join(refusals) + ' (force_run=True '
                                 'runs anyway)')
        for text in warnings + refusals:
            _warnings.warn(PreflightWarning(text), stacklevel=4)
        return warnings + refusals

    # -- tasks
    def _resolve(self, value: Any, node: Node, tag: str) -> list[str]:
        if isinstance(value, ProductRef):
            products = self.products.get(value.run, {})
            if value.tag not in products:
                raise ValueError('run %s made no %s product'
                                 % (value.run, value.tag))
            return frame_items(products[value.tag])
        return [input_path(value, node, tag)]

    def _task(self, node: Node) -> dict:
        env = dict(node.recipe.env)
        env.update(node.env)
        auto_env = []
        if 'OMP_NUM_THREADS' not in env and 'OMP_NUM_THREADS' not in os.environ:
            env['OMP_NUM_THREADS'] = self.omp
            auto_env.append('OMP_NUM_THREADS')
        elif 'OMP_NUM_THREADS' not in env and self.backend is not None and \
                not self.backend.is_local:
            # ours, which a worker elsewhere does not inherit, goes along
            env['OMP_NUM_THREADS'] = os.environ['OMP_NUM_THREADS']
            auto_env.append('OMP_NUM_THREADS')
        param = {p.fullname: p.value for p in node.recipe.param
                 if p.value is not None}
        param.update(node.param)
        calib = {}
        for tag, frames in node.calib.items():
            calib[tag] = [f for item in frame_items(frames)
                          for f in self._resolve(item, node, tag)]
        for c in node.recipe.calib:
            if c.frames is not None and c.tag not in calib:
                calib[c.tag] = [input_path(f, node, c.tag)
                                for f in frame_items(c.frames)]
        raw = [f for item in node.raw
               for f in self._resolve(item, node, node.tag)]
        log = os.path.join(self.log_dir or os.path.join(self.output_dir,
                                                        node.name),
                           node.name + '.log')
        return {'name': node.name, 'recipe': node.recipe.__name__,
                'library': node.recipe.__file__,
                'version': node.recipe.version[0], 'tag': node.tag,
                'raw': raw, 'calib': calib, 'param': param, 'env': env,
                'auto_env': auto_env,
                'output_dir': os.path.join(self.output_dir, node.name),
                'log': log, 'timeout': self.o['timeout']}

    @staticmethod
    def _key(task: Mapping[str, Any]) -> str:
        digest = {
            'recipe': task['recipe'], 'library': task['library'],
            'version': task['version'], 'tag': task['tag'],
            'param': sorted((k, repr(v)) for k, v in task['param'].items()),
            # not what cplrun chose itself (OMP_NUM_THREADS depends on
            # n_workers): another n_workers reuses the same runs
            'env': sorted((k, v) for k, v in task['env'].items()
                          if k not in task.get('auto_env', ())),
            'raw': [file_digest(f) for f in task['raw']],
            'calib': sorted((t, [file_digest(f) for f in fs])
                            for t, fs in task['calib'].items())}
        return hashlib.sha256(json.dumps(digest, sort_keys=True).encode()
                              ).hexdigest()

    # -- the loop
    def run(self) -> Report:
        started = time.monotonic()
        self.backend = backend_for(self.o['executor'], run_task,
                                   self.n_workers)
        futures: dict[Any, tuple[Node, dict, str]] = {}
        try:
            self.n_workers = max(1, self.n_workers or self.backend.slots)
            self.omp = str(self.backend.omp_threads(
                min(self.n_workers, self._width())))
            self._check_inputs()
            if self.o['preflight']:
                self._preflight()
            _check_output_dir(self.output_dir)
            display = _make_display(self.o['progress'],
                                    list(self.records.values()))
            with display, interrupts_noted() as interrupted:
                try:
                    self._loop(futures, display, interrupted)
                except BaseException:
                    # Interrupted (Ctrl-C): every run is killed, the report
                    # (and the display's last state) says so.
                    self._cancel_running(futures)
                    for fut, (node, _task, _key) in list(futures.items()):
                        self._record_outcome(
                            node, self.backend.outcome(fut, timeout=30))
                    self._settle_unstarted('cancelled')
                    self._refresh(futures, display)
                    self._write_report(started)
                    raise
        finally:
            self.backend.close()
        return self._write_report(started)

    def _loop(self, futures: dict, display,
              interrupted: threading.Event | None = None) -> None:
        stopping = False
        while True:
            if interrupted is not None and interrupted.is_set():
                raise KeyboardInterrupt     # one the interpreter dropped
            if not stopping:
                stopping = self._submit_ready(futures)
            if not futures:
                break
            for fut in self.backend.wait(futures, 0.25):
                node, task, key = futures[fut]
                if self._finish(node, task, key, self.backend.outcome(fut),
                                futures):
                    stopping = True
                # only now: a Ctrl-C before this line finds the run in
                # futures, and the report takes its outcome then
                del futures[fut]
            if stopping:
                self._cancel_running(futures)
            self._refresh(futures, display)
        self._settle_unstarted('cancelled' if stopping else 'skipped')
        self._refresh(futures, display)

    def _write_report(self, started: float) -> Report:
        """The report of this invocation; the folder's report.json has the
        runs of earlier invocations in it too."""
        report = Report([self.records[n.name] for n in self.nodes],
                        self.output_dir, time.monotonic() - started)
        path = os.path.join(self.output_dir, 'report.json')
        try:
            with_earlier_runs(report, path).to_json(path)
        except OSError:
            pass
        return report

    def _ready(self) -> list[Node]:
        ready = []
        for node in self.nodes:
            record = self.records[node.name]
            if record.status != 'pending':
                continue
            deps = [self.records[d].status for d in node.depends_on()]
            if any(s not in DONE_OK + ('pending', 'running') for s in deps):
                move(record, 'skipped')
                record.error = 'skipped: needs %s, which did not succeed' % \
                    ', '.join(d for d in node.depends_on()
                              if self.records[d].status not in DONE_OK)
            elif all(s in DONE_OK for s in deps):
                ready.append(node)
        return ready

    def _submit_ready(self, futures: dict) -> bool:
        """Submits what is ready; True when a run failed to prepare and
        the workflow must stop (fail_fast)."""
        # A reused run makes its dependents ready at once: look again.
        while True:
            settled, failed = self._submit_some(futures)
            if failed and self.o['fail_fast']:
                return True
            if not settled:
                return False

    def _submit_some(self, futures: dict) -> tuple[bool, bool]:
        """Submits ready runs while there is room; returns whether a run
        was settled without running (reused or failed to prepare), and
        whether one failed to prepare."""
        settled = failed = False
        for node in self._ready():
            if len(futures) >= self.n_workers:
                break
            record = self.records[node.name]
            try:
                task = self._task(node)
                key = self._key(task)
            except (ValueError, TypeError, OSError) as exc:
                move(record, 'failed')
                record.error = str(exc)
                settled = failed = True
                continue
            record.omp_threads = _int_or_none(task['env'].get(
                'OMP_NUM_THREADS', os.environ.get('OMP_NUM_THREADS')))
            record.log = task['log']
            reused = None if self.o['force'] else reusable_products(
                task['output_dir'], key)
            if reused is not None:
                move(record, 'cached')
                record.products = reused
                self.products[node.name] = reused
                settled = True
                continue
            try:
                os.makedirs(task['output_dir'], exist_ok=True)
                os.makedirs(os.path.dirname(task['log']), exist_ok=True)
            except OSError as exc:
                move(record, 'failed')
                record.error = 'cannot make the run folder %s: %s' % (
                    task['output_dir'], exc.strerror or exc)
                settled = failed = True
                continue
            forget_failures(task['output_dir'])
            task['key'] = key
            self._submit(futures, node, task, key)
        return settled, failed

    def _submit(self, futures: dict, node: Node, task: dict, key: str
                ) -> None:
        record = self.records[node.name]
        move(record, 'running')
        record.attempts += 1
        record.started = time.time()
        futures[self.backend.submit(task)] = (node, task, key)

    def _record_outcome(self, node: Node, outcome: dict) -> None:
        record = self.records[node.name]
        move(record, outcome['status'])
        record.error = outcome.get('error')
        record.products = outcome.get('products') or {}
        for field in ('wall_s', 'cpu_s', 'max_rss_mb', 'worker', 'warnings',
                      'warning_lines', 'log'):
            if outcome.get(field) is not None:
                setattr(record, field, outcome[field])

    def _finish(self, node: Node, task: dict, key: str, outcome: dict,
                futures: dict) -> bool:
        """Takes a finished run's outcome; True when the workflow must
        stop (fail_fast)."""
        self._record_outcome(node, outcome)
        record = self.records[node.name]
        if record.status == 'success':     # its record is written
            self.products[node.name] = record.products
            return False
        if record.status == 'crashed' and record.attempts <= self.o['retries']:
            self._submit(futures, node, task, key)
            return False
        return self.o['fail_fast'] and record.status in (
            'failed', 'crashed', 'timeout')

    def _cancel_running(self, futures: dict) -> None:
        for fut in futures:
            self.backend.cancel(fut)

    def _settle_unstarted(self, status: str) -> None:
        self._ready()       # marks the dependents of failed runs skipped
        for record in self.records.values():
            if record.status == 'pending':
                move(record, status)
                record.error = record.error or (
                    'not started: the workflow stopped' if status == 'cancelled'
                    else 'not started')

    def _refresh(self, futures: dict, display) -> None:
        for fut, (node, _task, _key) in futures.items():
            self.records[node.name].message = self.backend.last_message(fut)
        display.update()


def move(record: RunRecord, status: str) -> None:
    """Sets the status of a run, along one of :data:`TRANSITIONS` (another
    move is a fault of this module, never to be hidden)."""
    if status not in TRANSITIONS.get(record.status, ()):
        raise RuntimeError('run %s cannot go from %s to %s'
                           % (record.name, record.status, status))
    record.status = status


def _check_output_dir(path: str) -> None:
    """Makes the output folder, and makes sure files can be created in it,
    before anything runs (a read-only file system, a file where the folder
    should be, an immutable folder...)."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix='.cplrun-probe-')
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(exc.errno, 'the output folder %s cannot be written: %s;'
                      ' nothing was run' % (path, exc.strerror or exc),
                      path) from exc


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _NoDisplay:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self) -> None:
        pass


def _make_display(progress: bool | None, records: list[RunRecord]):
    """progress None: the live display on a terminal, else a line per
    event; True: the live display; False: nothing."""
    if progress is False:
        return _NoDisplay()
    # Rich is imported only by a run that shows its progress: import cpl
    # (which imports cpl.parallel) stays without it.
    from ._display import EventLog, LiveDisplay
    if progress is None and not sys.stdout.isatty():
        return EventLog(records)
    return LiveDisplay(records)
