"""What a Dask cluster costs per run: trivial ``rtest_copy`` runs (the test
recipe library, compiled here) in a Workflow, on this machine's threads
(``Workflow.run(n_workers=2)``) against a LocalCluster of two one-thread
workers (``executor=DaskClusterManager(nworkers=2)``), the same runs.

Prints, for each way, the median over the rounds of

* throughput: the makespan of RUNS independent runs, per run;
* latency: a one-run workflow, from run() to its report;

and the ratios Dask / local.  The difference is Dask's share: scheduling,
sending the task and its outcome, the worker's cancel watch.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from astropy.io import fits

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def build_test_recipes(outdir: str) -> str:
    spec = importlib.util.spec_from_file_location(
        'cplrun_recipe_build', os.path.join(REPO, 'tests', 'recipes',
                                            'build.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(outdir)


def workflow(raw: str, runs: int):
    from cpl.parallel import Workflow
    w = Workflow()
    for i in range(runs):
        w.add('rtest_copy', raw, tag='RAW', name='copy-%04d' % i)
    return w


def timed(w, out: str, **options) -> tuple[float, list[float]]:
    t = time.perf_counter()
    report = w.run(output_dir=out, progress=False, force=True,
                   preflight=False, **options)
    elapsed = time.perf_counter() - t
    if not report.ok:
        report.summary()
        sys.exit('runs failed')
    shutil.rmtree(out)
    return elapsed, [r.wall_s for r in report.runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=200,
                        help='runs per throughput round (default 200)')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--latency-runs', type=int, default=20,
                        help='one-run workflows for the latency (default 20)')
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args()

    top = tempfile.mkdtemp(prefix='cplrun-bench-dask-')
    os.environ['TMPDIR'] = os.path.join(top, 'tmp')
    os.makedirs(os.environ['TMPDIR'])
    tempfile.tempdir = os.environ['TMPDIR']
    try:
        import cpl
        from cpl.cluster import DaskClusterManager
        recipe_dir = os.path.dirname(build_test_recipes(os.path.join(
            top, 'recipes')))
        cpl.Recipe.path = [recipe_dir]
        raw = os.path.join(top, 'raw.fits')
        fits.PrimaryHDU(np.arange(16, dtype=np.float32).reshape(4, 4)
                        ).writeto(raw)
        w = workflow(raw, args.runs)
        one = workflow(raw, 1)
        out = os.path.join(top, 'out')

        t = time.perf_counter()
        manager = DaskClusterManager(nworkers=args.workers,
                                     cluster_type='local',
                                     local_directory=os.path.join(top, 'dask'))
        manager.start()
        startup = time.perf_counter() - t
        results = {}
        try:
            ways = [('local', dict(n_workers=args.workers)),
                    ('dask', dict(executor=manager))]
            for name, options in ways:       # warm up: runners, imports
                timed(workflow(raw, 2 * args.workers), out, **options)
            for name, options in ways:
                throughput, latency, recipe_wall = [], [], []
                for _ in range(args.rounds):
                    elapsed, walls = timed(w, out, **options)
                    throughput.append(elapsed / args.runs)
                    recipe_wall.append(statistics.median(walls))
                for _ in range(args.latency_runs):
                    elapsed, _walls = timed(one, out, **options)
                    latency.append(elapsed)
                results[name] = dict(
                    throughput=statistics.median(throughput),
                    latency=statistics.median(latency),
                    recipe=statistics.median(recipe_wall))
        finally:
            manager.shutdown()

        print('rtest_copy runs, %d workers, %d cores; %d runs x %d rounds, '
              '%d one-run workflows' % (args.workers, os.cpu_count(),
                                        args.runs, args.rounds,
                                        args.latency_runs))
        print('LocalCluster start: %.2f s' % startup)
        print('%-6s %18s %16s %18s' % ('', 'makespan/run ms', 'latency ms',
                                       'recipe wall ms'))
        for name, r in results.items():
            print('%-6s %18.2f %16.2f %18.2f' % (
                name, 1e3 * r['throughput'], 1e3 * r['latency'],
                1e3 * r['recipe']))
        local, dask = results['local'], results['dask']
        print('dask/local: makespan per run x%.2f (+%.2f ms), latency x%.2f '
              '(+%.2f ms)' % (
                  dask['throughput'] / local['throughput'],
                  1e3 * (dask['throughput'] - local['throughput']),
                  dask['latency'] / local['latency'],
                  1e3 * (dask['latency'] - local['latency'])))
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == '__main__':
    main()
