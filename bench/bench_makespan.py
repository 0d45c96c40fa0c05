"""Makespan of several medium ``muse_bias`` runs on this machine, in one
run: cplrun's Workflow with its automatic OpenMP setting, against

(a) esorex, one run after another (default OpenMP: all cores per run), and
(b) all runs as esorex processes at once (default OpenMP: each run takes
    all cores, so the machine is oversubscribed).

Prints each makespan (median of the rounds) and the ratios to the best
esorex way.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from cpl import synthetic
from cpl.parallel import Workflow


def esorex_command(step, out: str, sof: str) -> list[str]:
    params = ['--%s=%s' % (k, v if not isinstance(v, bool) else str(v).upper())
              for k, v in step.params.items()]
    return ['esorex', '--output-dir=' + out, '--log-dir=' + out, step.recipe,
            *params, sof]


def run_esorex(step, sof: str, top: str, runs: int, at_once: bool) -> float:
    folders = []
    for i in range(runs):
        folders.append(tempfile.mkdtemp(dir=top, prefix='esorex-'))
    t = time.perf_counter()
    if at_once:
        procs = [subprocess.Popen(esorex_command(step, d, sof), cwd=d,
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for d in folders]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(esorex_command(step, d, sof), cwd=d,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode
                 for d in folders]
    elapsed = time.perf_counter() - t
    if any(codes):
        sys.exit('esorex failed: exit codes %s' % codes)
    for d in folders:
        shutil.rmtree(d)
    return elapsed


def run_cplrun(step, top: str, runs: int) -> tuple[float, int]:
    w = Workflow()
    for i in range(runs):
        w.add(step.recipe, *step.raw, tag=step.tag, param=step.params,
              name='%s-%d' % (step.name, i))
    out = tempfile.mkdtemp(dir=top, prefix='cplrun-')
    t = time.perf_counter()
    report = w.run(output_dir=out, progress=False, force=True)
    elapsed = time.perf_counter() - t
    if not report.ok:
        report.summary()
        sys.exit('cplrun runs failed')
    shutil.rmtree(out)
    return elapsed, report.runs[0].omp_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', default='medium')
    parser.add_argument('--runs', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix='cplrun-makespan-')
    try:
        steps = synthetic.make_dataset(os.path.join(top, 'data'),
                                       size=args.size, instruments=['muse'])
        step = next(s for s in steps if s.recipe == 'muse_bias')
        times: dict[str, list[float]] = {'cplrun': [], 'esorex serial': [],
                                         'esorex at once': []}
        omp = None
        for _ in range(args.rounds):
            elapsed, omp = run_cplrun(step, top, args.runs)
            times['cplrun'].append(elapsed)
            times['esorex serial'].append(
                run_esorex(step, step.sof, top, args.runs, at_once=False))
            times['esorex at once'].append(
                run_esorex(step, step.sof, top, args.runs, at_once=True))
        medians = {k: statistics.median(v) for k, v in times.items()}
        best = min(medians['esorex serial'], medians['esorex at once'])
        print('%d x %s muse_bias on %d cores, median of %d rounds '
              '(cplrun chose OMP_NUM_THREADS=%s):'
              % (args.runs, args.size, os.cpu_count(), args.rounds, omp))
        for name, m in medians.items():
            print('  %-15s %7.2f s  = %.2fx the best esorex way   (%s)'
                  % (name, m, m / best,
                     ', '.join('%.2f' % t for t in times[name])))
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == '__main__':
    main()
