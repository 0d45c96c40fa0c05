"""Whole reductions: many recipe runs, in dependency order, in parallel.

A :class:`Workflow` is a graph of recipe runs: each run's calibration (or
raw) inputs may be products of earlier runs, named before they exist
(``bias.MASTER_BIAS``).  :meth:`Workflow.run` runs it, at most
``n_workers`` recipe processes at once, each run in its own folder
``output_dir/<name>/``, and returns a :class:`Report` with one entry per
run.  :func:`run_batch` is the flat case: one recipe, one run per input.

Every run goes through the same isolated recipe process as a single call
(:mod:`cpl.recipe`); a run is a plain-data task executed by
:func:`run_task`, so the same tasks can go to other executors.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings as _warnings
from typing import IO, Any, Callable, Iterable, Mapping, Sequence

from astropy.io import fits

from . import esorex
from ._records import (RUN_RECORD, WORK_FOLDER, commit, file_digest,
                       forget_failures, remove_staging, reusable_products,
                       unlink_quietly)
from ._backends import backend_for, dask_worker, watch_dask_cancel
from ._run import Cancelled, RunControl, execute, interrupts_noted
from .frames import frame_items
from .recipe import Recipe
from .result import (CplError, RecipeCrash, RecipeTimeout, count_warnings,
                     recipe_warnings)

#: status values of a run in a report
STATUSES = ('success', 'failed', 'crashed', 'timeout', 'skipped', 'cached',
            'cancelled')
DONE_OK = ('success', 'cached')
#: How many of a run's warning messages its report and summary show.
SHOWN_WARNINGS = 3
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


class RawTagError(ValueError):
    """A batch input whose raw frames cannot be told: empty, without the
    tag given, or with no single tag the recipe takes.  ``needs_tag``:
    naming the raw tag would settle it; :meth:`text` says how, with the
    option of the caller (``tag=`` for :func:`run_batch`)."""

    def __init__(self, what: str, needs_tag: bool = False) -> None:
        self.what = what
        self.needs_tag = needs_tag
        super().__init__(self.text('tag='))

    def text(self, option: str) -> str:
        return '%s: give %s' % (self.what, option) if self.needs_tag \
            else self.what


class PreflightError(RuntimeError):
    """The estimated memory or disk use exceeds what the machine has."""


class PreflightWarning(UserWarning):
    """The estimated memory or disk use is close to what the machine has
    (or above it, with ``force_run=True``)."""


@dataclasses.dataclass(frozen=True)
class ProductRef:
    """A product of a workflow run that does not exist yet: the run's
    name and the product tag.  Usable wherever a file is."""
    run: str
    tag: str

    def __repr__(self) -> str:
        return '<%s.%s>' % (self.run, self.tag)


class Node:
    """One run of a workflow.  ``node.TAG`` names one of its products."""

    def __init__(self, workflow: 'Workflow', name: str, recipe: Recipe,
                 raw: list, tag: str | None, calib: dict, param: dict,
                 env: dict) -> None:
        self._workflow = workflow
        self.name = name
        self.recipe = recipe
        self.raw = raw
        self.tag = tag if tag is not None else recipe.tag
        self.calib = calib
        self.param = param
        self.env = env

    def __getattr__(self, tag: str) -> ProductRef:
        if tag.startswith('_') or not tag.isupper():
            raise AttributeError(tag)
        outputs = self._declared_outputs()
        if outputs is not None and tag not in outputs:
            raise AttributeError('run %s (recipe %s) makes no %s; it makes %s'
                                 % (self.name, self.recipe.__name__, tag,
                                    ', '.join(sorted(outputs))))
        return ProductRef(self.name, tag)

    def _declared_outputs(self) -> set[str] | None:
        try:
            outputs = self.recipe.output
        except AttributeError:
            return None
        return set(outputs.get(self.tag, ())) or None

    def inputs(self) -> list[tuple[str, Any]]:
        """(tag, path or ProductRef) of every input, including the
        recipe's own calibration frames for tags the run does not set."""
        items = [(self.tag, f) for f in self.raw]
        for tag, frames in self.calib.items():
            items.extend((tag, f) for f in frame_items(frames))
        for c in self.recipe.calib:
            if c.frames is not None and c.tag not in self.calib:
                items.extend((c.tag, f) for f in frame_items(c.frames))
        return items

    def depends_on(self) -> list[str]:
        return sorted({f.run for _t, f in self.inputs()
                       if isinstance(f, ProductRef)})

    def __repr__(self) -> str:
        return '<Node %s: %s>' % (self.name, self.recipe.__name__)


class Workflow:
    """A graph of recipe runs.

    ``node = w.add(recipe, *raw, tag=, calib={TAG: files or ref}, param=,
    env=, name=)``; ``recipe`` is a name or a :class:`cpl.Recipe`;
    ``other_node.TAG`` refers to a product of an earlier run."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add(self, recipe: str | Recipe, *raw: Any, tag: str | None = None,
            calib: Mapping[str, Any] | None = None,
            param: Mapping[str, Any] | None = None,
            env: Mapping[str, str | None] | None = None,
            name: str | None = None) -> Node:
        if isinstance(recipe, str):
            recipe = Recipe(recipe)
        name = name or self._free_name(recipe.__name__)
        if name in self.nodes:
            raise ValueError('the workflow already has a run named %r' % name)
        if not name or os.sep in name or name.startswith('.'):
            raise ValueError('a run name must be a plain folder name, not %r'
                             % name)
        files = []
        for item in raw:
            files.extend(frame_items(item))
        node = Node(self, name, recipe, files, tag, dict(calib or {}),
                    dict(param or {}), dict(env or {}))
        if node.tag is None:
            raise ValueError('run %s: recipe %s needs a tag for its raw frames'
                             % (name, recipe.__name__))
        recipe._checked_tag(node.tag)
        recipe.calib._assigned(node.calib)  # a tag it does not take fails here
        for key, value in node.param.items():
            p = recipe.param[key]
            p.check(value)      # a wrong parameter fails here, not later
        for t, ref in node.inputs():
            _input_path(ref, node, t)   # an HDUList fails here, not later
            if isinstance(ref, ProductRef) and ref.run not in self.nodes:
                raise ValueError('run %s refers to %r, which is not an earlier '
                                 'run of this workflow' % (name, ref))
        self.nodes[name] = node
        return node

    def _free_name(self, base: str) -> str:
        name, n = base, 1
        while name in self.nodes:
            n += 1
            name = '%s-%d' % (base, n)
        return name

    def order(self) -> list[Node]:
        """The runs, each after those it needs; ValueError on a cycle."""
        done: list[Node] = []
        state: dict[str, str] = {}

        def visit(node: Node, path: list[str]) -> None:
            if state.get(node.name) == 'done':
                return
            if state.get(node.name) == 'visiting':
                raise ValueError('the workflow has a cycle: %s'
                                 % ' -> '.join(path + [node.name]))
            state[node.name] = 'visiting'
            for dep in node.depends_on():
                if dep not in self.nodes:
                    raise ValueError('run %s needs run %s, which is not in '
                                     'the workflow' % (node.name, dep))
                visit(self.nodes[dep], path + [node.name])
            state[node.name] = 'done'
            done.append(node)

        for node in self.nodes.values():
            visit(node, [])
        return done

    def run(self, n_workers: int | None = None, output_dir: str = 'cplrun-output',
            timeout: float | None = None, fail_fast: bool = False,
            retries: int = 0, force: bool = False, progress: bool | None = None,
            log_dir: str | None = None, strict: bool = True,
            preflight: bool = True, force_run: bool = False,
            executor: Any = None) -> 'Report':
        """Runs the workflow; see the module's documentation.

        ``force`` reruns runs whose results would be reused; ``force_run``
        runs despite a failed memory/disk pre-flight; ``strict=False`` skips
        runs with missing inputs instead of refusing to start."""
        return _Execution(self, n_workers=n_workers, output_dir=output_dir,
                          timeout=timeout, fail_fast=fail_fast,
                          retries=retries, force=force, progress=progress,
                          log_dir=log_dir, strict=strict, preflight=preflight,
                          force_run=force_run, executor=executor).run()


def _input_path(frame: Any, node: Node, tag: str) -> Any:
    """A workflow input as an absolute path (a ProductRef as it is).
    An HDUList is refused: a workflow run is planned, reused and perhaps
    run elsewhere by its input files."""
    if isinstance(frame, ProductRef):
        return frame
    if isinstance(frame, fits.HDUList):
        raise TypeError('run %s (recipe %s): its %s input is an HDUList; a '
                        'workflow run takes files (write it with writeto() '
                        'first, or call the recipe itself)'
                        % (node.name, node.recipe.__name__, tag))
    return os.path.abspath(os.fspath(frame))


def run_batch(recipe: str | Recipe, inputs: Iterable[Any], *,
              tag: str | None = None, calib: Mapping[str, Any] | None = None,
              param: Mapping[str, Any] | None = None,
              env: Mapping[str, str | None] | None = None,
              names: Sequence[str] | None = None, **run_options: Any
              ) -> 'Report':
    """One run of recipe per input: a list of files, an SOF path, or a
    dict tag -> files.  Other keywords as for :meth:`Workflow.run`."""
    if isinstance(recipe, str):
        recipe = Recipe(recipe)
    w = Workflow()
    inputs = list(inputs)
    sof_names = _sof_run_names(inputs)
    for i, item in enumerate(inputs):
        name = names[i] if names else sof_names.get(i)
        raw, run_tag, run_calib = _batch_input(recipe, item, tag)
        merged_calib = dict(calib or {})
        merged_calib.update(run_calib)
        w.add(recipe, *raw, tag=run_tag, calib=merged_calib, param=param,
              env=env, name=name)
    return w.run(**run_options)


def _is_sof(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike)) and \
        os.fspath(item).endswith('.sof')


def _sof_run_names(inputs: list) -> dict[int, str]:
    """The run name of each SOF among inputs (by index): its stem, or,
    where stems are alike (one SOF per night folder, all named alike), as
    many of its last folders as tell it apart (n1/bias.sof -> n1-bias).
    The same SOF twice is an error."""
    paths: dict[int, list[str]] = {}
    seen: dict[str, Any] = {}
    for i, item in enumerate(inputs):
        if not _is_sof(item):
            continue
        real = os.path.realpath(item)
        if real in seen:
            raise ValueError('SOF %s is given twice (as %s and %s): one run '
                             'per SOF' % (real, os.fspath(seen[real]),
                                          os.fspath(item)))
        seen[real] = item
        parts = os.path.abspath(os.fspath(item))[:-len('.sof')].split(os.sep)
        paths[i] = [p for p in parts if p]
    depth = dict.fromkeys(paths, 1)
    while True:
        names = {i: '-'.join(paths[i][-depth[i]:]) for i in paths}
        by_name: dict[str, list[int]] = {}
        for i, name in names.items():
            by_name.setdefault(name, []).append(i)
        alike = [i for same in by_name.values() if len(same) > 1
                 for i in same if depth[i] < len(paths[i])]
        if not alike:
            return names        # Workflow.add refuses what is still alike
        for i in alike:
            depth[i] += 1


def _batch_input(recipe: Recipe, item: Any, tag: str | None
                 ) -> tuple[list, str | None, dict]:
    """(raw files, raw tag, calib) of one batch input.

    In an SOF or dict, the raw tag is tag=, else the one the recipe
    declares, else (recipes that declare none, as esorex would pass them
    all) the first tag listed."""
    source = 'the input of %s' % recipe.__name__
    if _is_sof(item):
        if not os.path.isfile(item):
            raise FileNotFoundError('no such SOF file: %s' % item)
        source = 'SOF %s' % os.fspath(item)
        item = esorex.load_sof(os.fspath(item))
    if not isinstance(item, Mapping):
        return frame_items(item), tag, {}
    if not item:
        raise RawTagError('%s is empty: it lists no frames' % source)
    if tag is not None:
        if tag not in item:
            raise RawTagError('%s has no frames tagged %s (it has %s)'
                              % (source, tag, ', '.join(item)))
        raw_tags = [tag]
    elif recipe.tags is not None:
        raw_tags = [t for t in item if t in recipe.tags]
    else:
        raw_tags = list(item)[:1]
    if len(raw_tags) != 1:
        raise RawTagError('cannot tell the raw frames of %s in %s among its '
                          'tags %s%s' % (
                              recipe.__name__, source, ', '.join(item),
                              ' (it takes %s)' % ', '.join(recipe.tags)
                              if recipe.tags else ''),
                          needs_tag=True)
    raw_tag = raw_tags[0]
    calib = {t: f for t, f in item.items() if t != raw_tag}
    return frame_items(item[raw_tag]), raw_tag, calib


@dataclasses.dataclass
class RunRecord:
    """One run of a report."""
    name: str
    recipe: str
    status: str = 'pending'
    products: dict = dataclasses.field(default_factory=dict)
    log: str | None = None
    error: str | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    omp_threads: int | None = None
    attempts: int = 0
    #: the recipe's WARNING messages: how many (None: not known, as for a
    #: crash or a reused run), and the first few different ones
    warnings: int | None = None
    warning_lines: list = dataclasses.field(default_factory=list)
    worker: str | None = None
    depends_on: list = dataclasses.field(default_factory=list)
    started: float | None = None
    #: in a folder's report.json: a run of an earlier invocation that the
    #: latest one did not include (its products are still there)
    earlier_invocation: bool = False
    #: the latest log line, while it runs (not saved)
    message: str | None = dataclasses.field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop('message')
        return d


class Report:
    """What a workflow run did: ``runs``, one :class:`RunRecord` each, in
    dependency order; ``output_dir``; ``wall_s``."""

    def __init__(self, runs: list[RunRecord], output_dir: str,
                 wall_s: float = 0.0) -> None:
        self.runs = runs
        self.output_dir = output_dir
        self.wall_s = wall_s

    def __getitem__(self, name: str) -> RunRecord:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)

    def __iter__(self):
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def ok(self) -> bool:
        """True when every run succeeded or was reused."""
        return all(r.status in DONE_OK for r in self.runs)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.runs:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def to_dict(self) -> dict:
        return {'output_dir': self.output_dir, 'wall_s': self.wall_s,
                'counts': self.counts(),
                'runs': [r.to_dict() for r in self.runs]}

    def to_json(self, path: str) -> None:
        tmp = path + '.tmp'
        try:
            with open(tmp, 'w', encoding='utf-8') as f:
                json.dump(self.to_dict(), f, indent=2)
            os.replace(tmp, path)
        except BaseException:
            unlink_quietly(tmp)        # a full disk leaves no stray file
            raise

    @classmethod
    def from_json(cls, path: str) -> 'Report':
        with open(path, encoding='utf-8') as f:
            doc = json.load(f)
        return cls([RunRecord(**r) for r in doc['runs']], doc['output_dir'],
                   doc.get('wall_s', 0.0))

    def summary(self, file: IO | None = None) -> None:
        """Prints the table of runs and a Problems section with each
        failure's full error and log path."""
        out = file or sys.stdout
        width = max([len(r.name) for r in self.runs] + [4])
        rwidth = max([len(r.recipe) for r in self.runs] + [6])
        row = '%-*s  %-*s  %-9s %8s %8s %8s %4s %3s %5s\n'
        out.write(row % (width, 'run', rwidth, 'recipe', 'status', 'wall s',
                         'cpu s', 'rss MB', 'omp', 'try', 'warn'))

        def num(v, fmt):
            return fmt % v if v is not None else '-'
        for r in self.runs:
            out.write(row % (
                width, r.name, rwidth, r.recipe, r.status,
                num(r.wall_s, '%.1f'), num(r.cpu_s, '%.1f'),
                num(r.max_rss_mb, '%.0f'), num(r.omp_threads, '%d'),
                r.attempts, num(r.warnings, '%d')))
        counts = ', '.join('%d %s' % (n, s) for s, n in self.counts().items())
        warned = sum(r.warnings or 0 for r in self.runs)
        if warned:
            counts += '; %d warning%s' % (warned, '' if warned == 1 else 's')
        out.write('\n%d runs in %.1f s: %s\n' % (len(self.runs), self.wall_s,
                                               counts))
        # A success with warnings is not silent; a failure's error has its
        # last warning already.
        noisy = [r for r in self.runs if r.status in DONE_OK and r.warnings]
        if noisy:
            out.write('\nWarnings:\n')
            for r in noisy:
                out.write('  %s (%s): %d warning%s\n' % (
                    r.name, r.recipe, r.warnings,
                    '' if r.warnings == 1 else 's'))
                for line in r.warning_lines:
                    out.write('      %s\n' % line)
                if r.log:
                    out.write('      log: %s\n' % r.log)
        made = [r for r in self.runs if r.status in DONE_OK and r.products]
        if made:
            from .progress import products_text
            out.write('\nProducts:\n')
            for r in made:
                out.write('  %s: %s\n' % (r.name, products_text(r.products)))
        problems = [r for r in self.runs if r.status not in DONE_OK]
        if problems:
            out.write('\nProblems:\n')
            for r in problems:
                out.write('  %s (%s): %s\n' % (r.name, r.recipe, r.status))
                for line in (r.error or '').splitlines():
                    out.write('      %s\n' % line)
                if r.log:
                    out.write('      log: %s\n' % r.log)


# --- running one task --------------------------------------------------------

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


# --- the execution of a workflow ---------------------------------------------

class _Execution:
    """The state of one :meth:`Workflow.run`."""

    def __init__(self, workflow: Workflow, **options: Any) -> None:
        self.workflow = workflow
        self.nodes = workflow.order()
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
            record.status = 'skipped'
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
        return [_input_path(value, node, tag)]

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
                calib[c.tag] = [_input_path(f, node, c.tag)
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
            _with_earlier_runs(report, path).to_json(path)
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
                record.status = 'skipped'
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
                record.status, record.error = 'failed', str(exc)
                settled = failed = True
                continue
            record.omp_threads = _int_or_none(task['env'].get(
                'OMP_NUM_THREADS', os.environ.get('OMP_NUM_THREADS')))
            record.log = task['log']
            reused = None if self.o['force'] else reusable_products(
                task['output_dir'], key)
            if reused is not None:
                record.status, record.products = 'cached', reused
                self.products[node.name] = reused
                settled = True
                continue
            try:
                os.makedirs(task['output_dir'], exist_ok=True)
                os.makedirs(os.path.dirname(task['log']), exist_ok=True)
            except OSError as exc:
                record.status = 'failed'
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
        record.status = 'running'
        record.attempts += 1
        record.started = time.time()
        futures[self.backend.submit(task)] = (node, task, key)

    def _record_outcome(self, node: Node, outcome: dict) -> None:
        record = self.records[node.name]
        record.status = outcome['status']
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
                record.status = status
                record.error = record.error or (
                    'not started: the workflow stopped' if status == 'cancelled'
                    else 'not started')

    def _refresh(self, futures: dict, display) -> None:
        for fut, (node, _task, _key) in futures.items():
            self.records[node.name].message = self.backend.last_message(fut)
        display.update()


def _with_earlier_runs(report: Report, path: str) -> Report:
    """report, and after its runs those of the report at path (an earlier
    invocation's) that it does not have, marked ``earlier_invocation``."""
    try:
        earlier = Report.from_json(path)
    except (OSError, ValueError, TypeError, KeyError):
        return report       # none, or not one of ours
    names = {r.name for r in report}
    kept = [dataclasses.replace(r, earlier_invocation=True)
            for r in earlier if r.name not in names]
    return Report(report.runs + kept, report.output_dir, report.wall_s)


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
    from .progress import EventLog, LiveDisplay
    if progress is None and not sys.stdout.isatty():
        return EventLog(records)
    return LiveDisplay(records)
