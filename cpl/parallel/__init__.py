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

The package, one concept a module, each importing only those before it:
``_report`` (run records, the report, its text), ``_backends`` (where
runs execute), ``_task`` (one run as a plain-data task), ``_graph`` (runs
and the products they refer to), ``_execution`` (a workflow's run, as a
small state machine of each run's status), ``_workflow`` (the graph a
user builds), ``_batch`` (one run per input), ``_display`` (the live
display and the event log).
"""
from .._records import RUN_RECORD, WORK_FOLDER
from ._batch import RawTagError, run_batch
from ._execution import (DISK_PER_INPUT_BYTE, RAM_PER_INPUT_BYTE,
                         MissingInputsError, PreflightError, PreflightWarning)
from ._graph import Node, ProductRef
from ._report import DONE_OK, STATUSES, Report, RunRecord
from ._task import SHOWN_WARNINGS, run_task
from ._workflow import Workflow

__all__ = ['Workflow', 'Node', 'ProductRef', 'run_batch', 'run_task',
           'Report', 'RunRecord', 'STATUSES', 'DONE_OK', 'SHOWN_WARNINGS',
           'RAM_PER_INPUT_BYTE', 'DISK_PER_INPUT_BYTE', 'MissingInputsError',
           'RawTagError', 'PreflightError', 'PreflightWarning', 'RUN_RECORD',
           'WORK_FOLDER']
