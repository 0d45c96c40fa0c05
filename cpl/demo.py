"""``cplrun demo``: a real calibration reduction on synthetic raw data.

Makes raw frames for the installed pipelines (MUSE, UVES, NACO), builds a
:class:`cpl.parallel.Workflow` of their bias -> dark chains and runs it in
parallel with the live display, then prints the summary and where the
products and the report are."""
from __future__ import annotations

import os
import sys
import time

from . import synthetic
from .parallel import Workflow


def build_workflow(steps: list[synthetic.Step]) -> Workflow:
    """The steps of a synthetic data set as a workflow: each dark takes
    the master bias of its instrument's bias run."""
    w = Workflow()
    nodes = {}
    for step in steps:
        calib = {tag: getattr(nodes[run], product)
                 for tag, (run, product) in step.calib.items()}
        nodes[step.name] = w.add(step.recipe, *step.raw, tag=step.tag,
                                 calib=calib, param=step.params,
                                 name=step.name)
    return w


def run_demo(directory: str, size: str = 'tiny', jobs: int | None = None,
             progress: bool | None = None) -> int:
    directory = os.path.abspath(directory)
    instruments = [i for i in synthetic.available_instruments()
                   if i in synthetic.DEFAULT_INSTRUMENTS]
    if not instruments:
        print('cplrun demo: no MUSE, UVES or NACO pipeline is installed '
              '(Debian: apt-get install cpl-plugin-muse cpl-plugin-uves '
              'cpl-plugin-naco)', file=sys.stderr)
        return 2
    began = time.monotonic()
    print('Making %s synthetic raw data for %s in %s ...'
          % (size, ', '.join(instruments), os.path.join(directory, 'raw')),
          flush=True)
    steps = synthetic.make_dataset(directory, size=size,
                                   instruments=instruments)
    workflow = build_workflow(steps)
    output_dir = os.path.join(directory, 'products')
    print('Reducing: %d recipe runs (%s), %s at once ...\n'
          % (len(steps), ', '.join(s.name for s in steps),
             jobs or os.cpu_count()), flush=True)
    report = workflow.run(n_workers=jobs, output_dir=output_dir,
                          progress=progress)
    print()
    report.summary()
    print('\nDone in %.1f s.  Products: %s/<run>/   Report: %s'
          % (time.monotonic() - began, output_dir,
             os.path.join(output_dir, 'report.json')))
    return 0 if report.ok else 1
