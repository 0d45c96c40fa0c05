"""``cplrun demo``: a real calibration reduction on synthetic raw data.

Makes raw frames for the installed pipelines (MUSE, UVES, NACO), then runs
their bias -> dark chains through :class:`cpl.Recipe`, every run in its own
process, as many at once as there are cores, each step starting as soon as
the products it needs exist."""
from __future__ import annotations

import os
import sys
import threading
import time

from . import synthetic
from .recipe import Recipe


def _say(start: float, text: str) -> None:
    print('[%6.1f s] %s' % (time.monotonic() - start, text), flush=True)


def run_demo(directory: str, size: str = 'tiny', jobs: int | None = None
             ) -> int:
    start = time.monotonic()
    directory = os.path.abspath(directory)
    instruments = [i for i in synthetic.available_instruments()
                   if i in synthetic.DEFAULT_INSTRUMENTS]
    if not instruments:
        print('cplrun demo: no MUSE, UVES or NACO pipeline is installed '
              '(Debian: apt-get install cpl-plugin-muse cpl-plugin-uves '
              'cpl-plugin-naco)', file=sys.stderr)
        return 2
    _say(start, 'making %s synthetic raw data for %s in %s'
         % (size, ', '.join(instruments), os.path.join(directory, 'raw')))
    steps = synthetic.make_dataset(directory, size=size,
                                   instruments=instruments)
    jobs = jobs or os.cpu_count() or 1
    Recipe.set_maxthreads(jobs)
    # Several runs at once share the cores: one OpenMP thread each unless
    # there are more cores than runs.
    omp = str(max(1, (os.cpu_count() or 1) // min(jobs, len(steps))))
    products_dir = os.path.join(directory, 'products')
    _say(start, 'running %d recipe runs, %d at once, OMP_NUM_THREADS=%s'
         % (len(steps), jobs, omp))

    results: dict[str, object] = {}
    errors: dict[str, BaseException] = {}
    timings: dict[str, float] = {}
    finished = threading.Condition()
    pending = list(steps)
    running: dict[str, tuple] = {}
    ended: dict[str, float] = {}
    while pending or running:
        with finished:
            for step in list(pending):
                needs = {s for s, _tag in step.calib.values()}
                if needs & set(errors):
                    pending.remove(step)
                    errors[step.name] = RuntimeError(
                        'skipped: %s failed' % ', '.join(sorted(needs & set(errors))))
                    _say(start, '%-12s skipped' % step.name)
                    continue
                if not needs <= set(results):
                    continue
                pending.remove(step)
                calib = {tag: results[s][ptag]
                         for tag, (s, ptag) in step.calib.items()}
                recipe = Recipe(step.recipe)
                recipe.env['OMP_NUM_THREADS'] = omp
                thread = recipe(step.raw, tag=step.tag, param=step.params,
                                calib=calib, threaded=True,
                                output_dir=os.path.join(products_dir, step.name))
                thread.add_done_callback(
                    lambda _t, name=step.name: _finished(name, ended, finished))
                running[step.name] = (thread, time.monotonic())
                _say(start, '%-12s started  %s on %d frames'
                     % (step.name, step.recipe, len(step.raw)))
            for name, (thread, began) in list(running.items()):
                if not thread.done():
                    continue
                del running[name]
                timings[name] = ended[name] - began
                error = thread.exception()
                if error is None:
                    results[name] = thread.result()
                    _say(start, '%-12s done     %.1f s' % (name, timings[name]))
                else:
                    errors[name] = error
                    _say(start, '%-12s FAILED   %s' % (name, str(error).splitlines()[0]))
            if running:
                finished.wait(1.0)

    print('\nSummary (%.1f s in all):' % (time.monotonic() - start))
    for step in steps:
        if step.name in results:
            res = results[step.name]
            products = ', '.join('%s' % os.path.relpath(
                p if isinstance(p, str) else p[0], directory)
                for _tag, p in sorted(res))
            print('  %-12s ok      %5.1f s  %s' % (step.name, timings[step.name],
                                                  products))
        else:
            print('  %-12s failed  %s' % (step.name, errors[step.name]))
    print('\nProducts are in %s' % products_dir)
    return 0 if not errors else 1


def _finished(name: str, ended: dict, condition: threading.Condition) -> None:
    ended[name] = time.monotonic()
    with condition:
        condition.notify_all()
