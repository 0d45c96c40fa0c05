"""Per-call overhead of a trivial recipe, side by side in one run:

* cplrun (this package, in this interpreter),
* python-cpl 0.7.4 (Debian's python3-cpl, under /usr/bin/python3),
* esorex (one process per call).

The recipe is the project's ``rtest_copy`` test recipe: one small FITS file
in, one product out, read back as an HDUList (for esorex: the command
only).  Prints medians and the ratios to python-cpl; with ``--memory N``
also the parent's RSS over N calls, and the warm ``Recipe(name)`` time.
``--ballast-mb M`` makes both Python parents hold M MB of arrays first, as
an interactive session with data loaded does: a fork copies the parent's
page tables, a fork server's does not grow with it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'recipes'))

import build as test_recipes  # noqa: E402  (tests/recipes/build.py)

PYTHON_CPL = r'''
import json, sys, time
import numpy
import cpl
ballast = numpy.ones(int(sys.argv[5]) * 2**20 // 8)
cpl.Recipe.path = [sys.argv[1]]
r = cpl.Recipe('rtest_copy')
r.temp_dir = sys.argv[3]
times = []
for i in range(int(sys.argv[2]) + 5):
    t = time.perf_counter()
    res = r(sys.argv[4], tag='RAW')
    res.PRODUCT[0].data
    times.append(time.perf_counter() - t)
print(json.dumps(times[5:]))
'''


def make_input(folder: str) -> str:
    import numpy as np
    from astropy.io import fits
    path = os.path.join(folder, 'raw.fits')
    fits.PrimaryHDU(np.arange(64, dtype=np.float32).reshape(8, 8)).writeto(path)
    return path


def bench_cplrun(libdir: str, raw: str, calls: int) -> list[float]:
    import cpl
    cpl.Recipe.path = [libdir]
    r = cpl.Recipe('rtest_copy')
    times = []
    for _ in range(calls + 5):
        t = time.perf_counter()
        res = r(raw, tag='RAW')
        res.PRODUCT[0].data
        times.append(time.perf_counter() - t)
    return times[5:]


def bench_python_cpl(libdir: str, raw: str, calls: int, tmp: str,
                     ballast_mb: int) -> list[float] | None:
    if not os.path.exists('/usr/lib/python3/dist-packages/cpl'):
        return None
    out = subprocess.run(['/usr/bin/python3', '-c', PYTHON_CPL, libdir,
                          str(calls), tmp, raw, str(ballast_mb)],
                         capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_esorex(libdir: str, raw: str, calls: int, tmp: str
                 ) -> list[float] | None:
    esorex = shutil.which('esorex')
    if esorex is None:
        return None
    sof = os.path.join(tmp, 'in.sof')
    with open(sof, 'w') as f:
        f.write('%s RAW\n' % raw)
    times = []
    for i in range(calls + 2):
        work = tempfile.mkdtemp(dir=tmp)
        t = time.perf_counter()
        subprocess.run([esorex, '--recipe-dir=' + libdir, '--output-dir=' + work,
                        '--log-dir=' + work, 'rtest_copy', sof], cwd=work,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        times.append(time.perf_counter() - t)
        shutil.rmtree(work)
    return times[2:]


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--calls', type=int, default=300)
    parser.add_argument('--rounds', type=int, default=3,
                        help='alternating rounds of each tool')
    parser.add_argument('--memory', type=int, default=0, metavar='N',
                        help='also measure parent RSS over N calls')
    parser.add_argument('--ballast-mb', type=int, default=0, metavar='M',
                        help='parents hold M MB of arrays while calling')
    args = parser.parse_args()
    import numpy
    ballast = numpy.ones(args.ballast_mb * 2**20 // 8)  # noqa: F841
    tmp = tempfile.mkdtemp(prefix='cplrun-bench-')
    try:
        libdir = os.path.dirname(test_recipes.build(os.path.join(tmp, 'lib')))
        raw = make_input(tmp)
        samples: dict[str, list[float]] = {'cplrun': [], 'python-cpl': [],
                                           'esorex': []}
        for _ in range(args.rounds):
            samples['cplrun'] += bench_cplrun(libdir, raw, args.calls)
            pc = bench_python_cpl(libdir, raw, args.calls, tmp,
                                  args.ballast_mb)
            samples['python-cpl'] += pc or []
            ex = bench_esorex(libdir, raw, max(20, args.calls // 10), tmp)
            samples['esorex'] += ex or []
        medians = {k: statistics.median(v) for k, v in samples.items() if v}
        print('per-call time of rtest_copy (file in, HDUList out), parents '
              'holding %d MB, median of %s calls:'
              % (args.ballast_mb, {k: len(v) for k, v in samples.items()}))
        anchor = medians.get('python-cpl')
        for name, m in medians.items():
            q1, _, q3 = statistics.quantiles(samples[name], n=4)
            ratio = ' = %.2fx python-cpl' % (m / anchor) if anchor else ''
            print('  %-10s %7.2f ms  (IQR %.2f-%.2f)%s'
                  % (name, m * 1e3, q1 * 1e3, q3 * 1e3, ratio))

        import cpl
        t = []
        for _ in range(200):
            t0 = time.perf_counter()
            cpl.Recipe('rtest_copy')
            t.append(time.perf_counter() - t0)
        print('  Recipe(name) warm: median %.3f ms' % (statistics.median(t) * 1e3))
        if args.memory:
            r = cpl.Recipe('rtest_copy')
            for _ in range(200):
                r(raw, tag='RAW')
            before = rss_mb()
            for _ in range(args.memory):
                r(raw, tag='RAW').PRODUCT[0].data
            print('  parent RSS over %d calls: %.1f MB -> %.1f MB (%+.1f MB)'
                  % (args.memory, before, rss_mb(), rss_mb() - before))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
