"""Per-call time of small recipe runs, side by side in one run:

* cplrun (this package, in this interpreter),
* python-cpl 0.7.4 (Debian's python3-cpl, under /usr/bin/python3),
* esorex (one process per call).

Two cases: the project's ``rtest_copy`` test recipe (one 8x8 FITS file in,
one product out: nearly all of the time is the tools' own overhead), and,
when UVES is installed, ``uves_cal_mbias`` on three tiny synthetic bias
frames (a real pipeline recipe, with its start-up and logging).  Products
are read back as HDULists (esorex: the command only).  Prints medians,
quartiles and the ratios to python-cpl; ``--memory N`` also the parent's
RSS over N calls; always the warm ``Recipe(name)`` time.
``--ballast-mb M`` makes both Python parents hold M MB of arrays, as an
interactive session with data loaded does.
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
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'recipes'))

import build as test_recipes  # noqa: E402  (tests/recipes/build.py)


@dataclass
class Case:
    recipe: str
    path: list[str]         # Recipe.path for it
    tag: str
    raw: list[str]
    product: str


# The python-cpl side: the same loop under Debian's python3-cpl.
PYTHON_CPL = r'''
import json, sys, time
import numpy
from astropy.io.fits import HDUList
import cpl
print(cpl.__file__)
case = json.loads(sys.argv[1])
ballast = numpy.ones(int(sys.argv[4]) * 2**20 // 8)
cpl.Recipe.path = case['path']
r = cpl.Recipe(case['recipe'])
r.temp_dir = sys.argv[3]
times = []
for i in range(int(sys.argv[2]) + 5):
    t = time.perf_counter()
    res = r(case['raw'], tag=case['tag'])
    product = res[case['product']]
    (product if isinstance(product, HDUList) else product[0])[0].data
    times.append(time.perf_counter() - t)
print(json.dumps(times[5:]))
'''


def timed_loop(call, calls: int) -> list[float]:
    times = []
    for _ in range(calls + 5):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return times[5:]


def bench_cplrun(case: Case, calls: int) -> list[float]:
    from astropy.io.fits import HDUList
    import cpl
    cpl.Recipe.path = case.path
    r = cpl.Recipe(case.recipe)

    def call():
        product = r(case.raw, tag=case.tag)[case.product]
        (product if isinstance(product, HDUList) else product[0])[0].data
    return timed_loop(call, calls)


def bench_python_cpl(case: Case, calls: int, tmp: str, ballast_mb: int
                     ) -> list[float]:
    if not os.path.exists('/usr/lib/python3/dist-packages/cpl'):
        return []
    # Isolated (-I) and away from the source tree: run from this project's
    # folder, "import cpl" would find this package, not python-cpl.
    out = subprocess.run(['/usr/bin/python3', '-I', '-c', PYTHON_CPL,
                          json.dumps(case.__dict__), str(calls), tmp,
                          str(ballast_mb)], cwd=tmp,
                         capture_output=True, text=True, check=True)
    module, times = out.stdout.strip().splitlines()[-2:]
    if not module.startswith('/usr/lib/python3/dist-packages/cpl/'):
        raise RuntimeError('the python-cpl anchor imported %s' % module)
    return json.loads(times)


def bench_esorex(case: Case, calls: int, tmp: str) -> list[float]:
    esorex = shutil.which('esorex')
    if esorex is None:
        return []
    sof = os.path.join(tmp, case.recipe + '.sof')
    with open(sof, 'w') as f:
        f.writelines('%s %s\n' % (raw, case.tag) for raw in case.raw)
    times = []
    for i in range(calls + 2):
        work = tempfile.mkdtemp(dir=tmp)
        t = time.perf_counter()
        subprocess.run([esorex, '--recipe-dir=' + ':'.join(case.path),
                        '--output-dir=' + work, '--log-dir=' + work,
                        case.recipe, sof], cwd=work, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
        shutil.rmtree(work)
    return times[2:]


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def cases(tmp: str) -> list[Case]:
    import numpy as np
    from astropy.io import fits
    import cpl
    libdir = os.path.dirname(test_recipes.build(os.path.join(tmp, 'lib')))
    raw = os.path.join(tmp, 'raw.fits')
    fits.PrimaryHDU(np.arange(64, dtype=np.float32).reshape(8, 8)).writeto(raw)
    found = [Case('rtest_copy', [libdir], 'RAW', [raw], 'PRODUCT')]
    system_path = list(cpl.Recipe.path)
    if cpl.Recipe.get_recipefilename('uves_cal_mbias'):
        from cpl import synthetic
        step = next(s for s in synthetic.make_dataset(
            os.path.join(tmp, 'data'), size='tiny', instruments=['uves'])
            if s.recipe == 'uves_cal_mbias')
        found.append(Case('uves_cal_mbias', system_path, step.tag, step.raw,
                          'MASTER_BIAS_BLUE'))
    return found


def report(case: Case, samples: dict[str, list[float]]) -> None:
    medians = {k: statistics.median(v) for k, v in samples.items() if v}
    anchor = medians.get('python-cpl')
    print('%s: per-call time, median of %s calls' % (
        case.recipe, {k: len(v) for k, v in samples.items()}))
    for name, m in medians.items():
        q1, _, q3 = statistics.quantiles(samples[name], n=4)
        ratio = ' = %.2fx python-cpl' % (m / anchor) if anchor else ''
        print('  %-10s %7.2f ms  (IQR %.2f-%.2f)%s'
              % (name, m * 1e3, q1 * 1e3, q3 * 1e3, ratio))


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
        print('parents holding %d MB' % args.ballast_mb)
        all_cases = cases(tmp)
        test_case = all_cases[0]
        for case in all_cases:
            calls = args.calls if case.recipe == 'rtest_copy' \
                else max(20, args.calls // 10)
            samples: dict[str, list[float]] = {
                'cplrun': [], 'python-cpl': [], 'esorex': []}
            for _ in range(args.rounds):
                samples['cplrun'] += bench_cplrun(case, calls)
                samples['python-cpl'] += bench_python_cpl(
                    case, calls, tmp, args.ballast_mb)
                samples['esorex'] += bench_esorex(case, max(20, calls // 10),
                                                  tmp)
            report(case, samples)

        import cpl
        cpl.Recipe.path = test_case.path
        t = []
        for _ in range(200):
            t0 = time.perf_counter()
            cpl.Recipe('rtest_copy')
            t.append(time.perf_counter() - t0)
        print('Recipe(name) warm: median %.3f ms' % (statistics.median(t) * 1e3))
        if args.memory:
            raw = os.path.join(tmp, 'raw.fits')
            r = cpl.Recipe('rtest_copy')
            for _ in range(200):
                r(raw, tag='RAW')
            before = rss_mb()
            for _ in range(args.memory):
                r(raw, tag='RAW').PRODUCT[0].data
            print('parent RSS over %d calls: %.1f MB -> %.1f MB (%+.1f MB)'
                  % (args.memory, before, rss_mb(), rss_mb() - before))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
