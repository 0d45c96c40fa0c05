#!/usr/bin/env python3
"""A bounded soak of cplrun: many batches of test recipes that succeed
(some leaving a detached daemon behind), fail, crash (SIGSEGV, SIGABRT,
exit()) and time out (some with children of their own), 4 at once,
interleaved with batches of real NACO and UVES runs (bias -> dark chains)
on data made by :mod:`cpl.synthetic`, and after each round of batches the
mixes of bench/soak_mixes.py (``--mixes``): forked children calling
recipes, more environments at once than the pool keeps servers, reruns
into used output folders, and scripts interrupted by SIGINT in the middle
of a batch.

It prints, and with ``--json FILE`` saves:

* the runs by status against the status each should have had (the
  mixes' calls too, with their own words: see bench/soak_mixes.py);
* products lost: a run that succeeded but whose products are not all there
  and right, or were overwritten by another run (must be 0);
* processes left once the runners are closed (below this one, or anywhere
  with this soak's tag in their environment), and temporary folders left
  (run folders in the temporary folders, work folders of successful and
  cancelled runs, staging files in output folders) (both must be 0);
* the growth of this process's resident memory between the end of the
  first batch and the end (target < 20 MB);
* this process's open file descriptors after the first batch and at the
  end, and before any run and once the runners are closed (each pair must
  be equal).

The exit status is 0 when every figure is on target.

    python bench/soak.py                      # 2,000 test runs + 200 real
    python bench/soak.py --runs 300 --real 30 # the CI version
    python bench/soak.py --runs 0 --real 0 --mixes fork   # one mix alone
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time

# bench/ is this script's folder, so first on sys.path.
from proctree import descendants, leftovers
from soak_mixes import TAG_VARIABLE, Mixes, tagged_processes

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

#: (kind, recipe, parameters, expected status); each block of 20 test runs
#: has this mix
MIX = ([('copy', 'rtest_copy', {}, 'success')] * 8
       + [('daemon', 'rtest_spawn', {}, 'success')]
       + [('params', 'rtest_params', {}, 'success')] * 2
       + [('biglog', 'rtest_biglog', {'lines': 2000}, 'success')]
       + [('error', 'rtest_error', {}, 'failed')] * 2
       + [('segv', 'rtest_crash', {'mode': 'segv'}, 'crashed'),
          ('abort', 'rtest_crash', {'mode': 'abort'}, 'crashed'),
          ('exit', 'rtest_crash', {'mode': 'exit', 'exit_code': 5},
           'crashed'),
          ('hang', 'rtest_hang', {'seconds': 60.0}, 'timeout'),
          ('hangfork', 'rtest_hang', {'seconds': 60.0, 'fork_child': True},
           'timeout'),
          ('copy', 'rtest_copy', {}, 'success')])
RSS_TARGET_MB = 20.0
MIX_NAMES = ('fork', 'envs', 'rerun', 'sigint')
#: seconds the processes of forked children and interrupted scripts have
#: to end once the soak is over
PROCESS_GRACE = 5.0


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--runs', type=int, default=2000,
                   help='test recipe runs (default 2000)')
    p.add_argument('--real', type=int, default=200,
                   help='real NACO/UVES runs (default 200)')
    p.add_argument('--workers', type=int, default=4,
                   help='runs at once (default 4)')
    p.add_argument('--batch', type=int, default=100,
                   help='test runs per batch (default 100)')
    p.add_argument('--timeout', type=float, default=2.0,
                   help='timeout of the test runs, s (default 2)')
    p.add_argument('--minutes', type=float, default=60.0,
                   help='start no new batch after this (default 60)')
    p.add_argument('--mixes', default=','.join(MIX_NAMES),
                   help='mixes run after each round of batches, of %s '
                   '(default all; "" for none)' % ', '.join(MIX_NAMES))
    p.add_argument('--envs', type=int, default=None,
                   help='environments at once in the envs mix (default: the '
                   "pool's server cap + 4)")
    p.add_argument('--json', help='also write the figures to this file')
    p.add_argument('--keep', action='store_true',
                   help='keep the soak folder (printed at the end)')
    args = p.parse_args(argv)
    args.mixes = [m for m in args.mixes.split(',') if m]
    unknown = set(args.mixes) - set(MIX_NAMES)
    if unknown:
        p.error('unknown mix(es) %s; the mixes are %s'
                % (', '.join(sorted(unknown)), ', '.join(MIX_NAMES)))
    return args


# --- this process, read from /proc ----------------------------------------------
def rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


#: descriptors this process holds per runner: its stdin and its stdout
FDS_PER_SERVER = 2


def server_count() -> int:
    from cpl import _runner
    return len(_runner.pool._servers)


def open_fds():
    return len(os.listdir('/proc/self/fd'))


# --- the soak --------------------------------------------------------------------------
class Soak:
    def __init__(self, args, top):
        self.args = args
        self.top = top
        self.expected_vs_got = collections.Counter()
        self.by_kind = collections.defaultdict(collections.Counter)
        self.mismatches = []
        self.lost = []
        self.stray = []
        self.done_runs = self.done_real = 0
        self.batches = 0

    # -- preparing
    def prepare(self):
        import cpl
        from cpl import _index
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            'cplrun_recipe_build', os.path.join(REPO, 'tests', 'recipes',
                                                'build.py'))
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)
        recipes = build.build(os.path.join(self.top, 'recipes'))
        faults = build.build_faults(os.path.join(self.top, 'faults'))
        self.inputs = os.path.join(self.top, 'inputs')
        os.makedirs(self.inputs)
        self.values = {}
        import numpy as np
        from astropy.io import fits
        for i in range(8):
            path = os.path.join(self.inputs, 'in%d.fits' % i)
            fits.PrimaryHDU(np.full((4, 4), float(i), dtype=np.float32)
                            ).writeto(path)
            self.values[path] = float(i)
        system = _index.split_path(cpl.Recipe.path)
        cpl.Recipe.path = [os.path.dirname(recipes),
                           os.path.dirname(faults)] + system
        self.steps = self.make_data() if self.args.real else None
        self.mixes = Mixes(self, self.values)

    def make_data(self):
        """The real runs' raw data, made by cpl.synthetic: recipe -> Step."""
        from cpl import synthetic
        steps = synthetic.make_dataset(os.path.join(self.top, 'data'),
                                       size='tiny',
                                       instruments=['uves', 'naco'])
        return {step.recipe: step for step in steps}

    # -- one batch of test recipes
    def test_batch(self, first, count):
        from cpl.parallel import Workflow
        w = Workflow()
        plan = {}
        inputs = sorted(self.values)
        for i in range(first, first + count):
            kind, recipe, param, expected = MIX[i % len(MIX)]
            raw = inputs[i % len(inputs)]
            param = dict(param)
            if kind == 'params':
                param['int_value'] = i
            name = 'r%05d-%s' % (i, kind)
            w.add(recipe, raw, tag='RAW', param=param, name=name)
            plan[name] = (kind, expected, raw, param)
        out = os.path.join(self.top, 'out', 'batch%04d' % self.batches)
        report = w.run(n_workers=self.args.workers, output_dir=out,
                       timeout=self.args.timeout, progress=False)
        self.judge(report, plan, out)
        self.done_runs += count

    # -- one batch of real pipeline runs
    def real_batch(self, count):
        from cpl.parallel import Workflow
        w = Workflow()
        plan = {}
        naco = self.steps['naco_img_dark']
        bias = self.steps['uves_cal_mbias']
        dark = self.steps['uves_cal_mdark']
        n = 0
        while n < count:
            i = self.done_real + n
            if i % 3 == 0:
                name = 'n%04d-naco' % i
                w.add('naco_img_dark', naco.raw, tag=naco.tag,
                      param=naco.params, name=name)
                plan[name] = ('naco', 'success', None, naco)
                n += 1
            else:
                b = w.add('uves_cal_mbias', bias.raw, tag=bias.tag,
                          name='u%04d-bias' % i)
                plan[b.name] = ('uves_bias', 'success', None, bias)
                n += 1
                if n < count:
                    name = 'u%04d-dark' % i
                    w.add('uves_cal_mdark', dark.raw, tag=dark.tag,
                          calib={'MASTER_BIAS_BLUE': b.MASTER_BIAS_BLUE},
                          name=name)
                    plan[name] = ('uves_dark', 'success', None, dark)
                    n += 1
        out = os.path.join(self.top, 'out', 'real%04d' % self.batches)
        report = w.run(n_workers=self.args.workers, output_dir=out,
                       timeout=300, progress=False)
        self.judge(report, plan, out)
        self.done_real += count

    # -- the mixes of a round
    def mix_round(self, round_no):
        from cpl import _runner
        for mix in self.args.mixes:
            out = os.path.join(self.top, 'out', '%s%04d' % (mix, round_no))
            os.makedirs(out)
            temp_dirs = []
            if mix == 'fork':
                self.mixes.forks(out)
            elif mix == 'envs':
                self.mixes.environments(
                    out, self.args.envs or _runner.MAX_SERVERS + 4)
            elif mix == 'rerun':
                self.mixes.reruns(out)
            else:
                temp_dirs = self.mixes.interrupts(out)
            self.sweep(out, temp_dirs)

    # -- tallies
    def tally(self, kind, expected, got, detail=''):
        self.expected_vs_got[(expected, got)] += 1
        self.by_kind[kind][got] += 1
        if got != expected and len(self.mismatches) < 20:
            self.mismatches.append('%s: %s, expected %s: %s' % (
                kind, got, expected, detail[:300]))

    def lose(self, what):
        self.lost.append(what)

    # -- judging a batch, then clearing it away
    def judge(self, report, plan, out):
        from astropy.io import fits
        for r in report:
            kind, expected, raw, extra = plan[r.name]
            self.tally(kind, expected, r.status,
                       '%s: %s' % (r.name, r.error or ''))
            if r.status != 'success':
                continue
            # products lost?
            try:
                if kind == 'copy':
                    data = fits.getdata(r.products['PRODUCT'])
                    assert float(data[0, 0]) == self.values[raw]
                elif kind == 'params':
                    header = fits.getheader(r.products['PARAMS'])
                    assert header['ESO QC INT_VALUE'] == extra['int_value']
                elif kind == 'biglog':
                    assert os.path.getsize(r.products['BIGLOG_PRODUCT']) > 0
                elif kind == 'daemon':
                    assert fits.getdata(r.products['SPAWN_PRODUCT'])[0, 0] \
                        == 1.0
                else:
                    names = sorted(os.path.basename(p)
                                   for p in r.products.values())
                    assert names == sorted(extra.files.values()), names
                    for tag, path in r.products.items():
                        assert fits.getheader(path)['ESO PRO CATG'] == tag
            except Exception as exc:        # missing, unreadable, wrong
                self.lose('%s: %s: %s' % (r.name, type(exc).__name__, exc))
            # nothing temporary left by a finished run
            run_dir = os.path.join(out, r.name)
            if os.path.exists(os.path.join(run_dir, '.cplrun-work')):
                self.stray.append(os.path.join(run_dir, '.cplrun-work'))
        self.sweep(out)

    def sweep(self, out, temp_dirs=()):
        """Notes the staging files left in out and anything in the
        temporary folders (this process's and temp_dirs), then removes
        out."""
        for top, dirs, files in os.walk(out):
            dirs[:] = [d for d in dirs if d != '.cplrun-work'
                       and os.path.join(top, d) not in temp_dirs]
            self.stray += [os.path.join(top, f) for f in files
                           if f.startswith('.cplrun-')
                           and f != '.cplrun-run.json']
        for folder in (tempfile.gettempdir(),) + tuple(temp_dirs):
            self.stray += [os.path.join(folder, d) for d in os.listdir(folder)
                           if os.path.join(folder, d) not in self.stray]
        shutil.rmtree(out, ignore_errors=True)
        self.batches += 1

    # -- the whole soak
    def run(self):
        args = self.args
        deadline = time.monotonic() + 60 * args.minutes
        started = time.monotonic()
        n_batches = max(1, -(-args.runs // args.batch))
        real_per_batch = -(-args.real // n_batches) if args.real else 0
        first_rss = first_fds = first_servers = None
        start_fds = open_fds()
        for b in range(n_batches):
            if time.monotonic() > deadline:
                print('soak: time is up after %d batches' % b)
                break
            count = min(args.batch, args.runs - self.done_runs)
            if count > 0:
                self.test_batch(self.done_runs, count)
            real = min(real_per_batch, args.real - self.done_real)
            if real > 0:
                self.real_batch(real)
            self.mix_round(b)
            if first_rss is None:
                first_rss, first_fds = rss_mb(), open_fds()
                first_servers = server_count()
            print('soak: batch %d/%d: %d test runs, %d real runs, %.0f s, '
                  'rss %.1f MB, %d fds' % (b + 1, n_batches, self.done_runs,
                                          self.done_real,
                                          time.monotonic() - started,
                                          rss_mb(), open_fds()), flush=True)
        end_rss, end_fds, end_servers = rss_mb(), open_fds(), server_count()
        import cpl
        from cpl import _runner
        # every recipe process ends with its run: only the servers (and
        # the spare each keeps forked ahead) remain
        servers = {s.pid for s in _runner.pool._servers.values()}
        left_running = leftovers(servers)
        _runner.pool.close()
        time.sleep(0.2)
        # what forked children and interrupted scripts started: wherever
        # it was reparented, it has this soak's tag
        grace = time.monotonic() + PROCESS_GRACE
        while tagged_processes(self.top) and time.monotonic() < grace:
            time.sleep(0.1)
        left = sorted(set(left_running) | set(descendants())
                      | set(tagged_processes(self.top)))
        closed_fds = open_fds()
        return {
            'test_runs': self.done_runs, 'real_runs': self.done_real,
            'mixes': args.mixes,
            'workers': args.workers, 'wall_s': round(time.monotonic()
                                                     - started, 1),
            'expected_vs_got': {'%s->%s' % k: v for k, v in
                                sorted(self.expected_vs_got.items())},
            'by_kind': {k: dict(v) for k, v in sorted(self.by_kind.items())},
            'mismatches': self.mismatches,
            'products_lost': len(self.lost), 'lost': self.lost[:20],
            'processes_left': len(left), 'temp_left': len(self.stray),
            'stray': self.stray[:20],
            'rss_first_mb': round(first_rss or 0, 1),
            'rss_end_mb': round(end_rss, 1),
            'rss_growth_mb': round(end_rss - (first_rss or end_rss), 1),
            'fds_first': first_fds, 'fds_end': end_fds,
            'servers_first': first_servers, 'servers_end': end_servers,
            'fds_start': start_fds, 'fds_closed': closed_fds,
            'cpl_version': cpl.Recipe('rtest_copy').cpl_version,
        }


def report(figures):
    lines = ['',
             'cplrun soak: %d test runs and %d real runs, %d at once, in '
             '%.0f s' % (figures['test_runs'], figures['real_runs'],
                         figures['workers'], figures['wall_s']),
             '  and each round the mixes: %s' % (', '.join(figures['mixes'])
                                                 or 'none'),
             '', '  runs by status (expected -> got):']
    for key, n in figures['expected_vs_got'].items():
        expected, got = key.split('->')
        lines.append('    %-8s -> %-9s %6d%s' % (
            expected, got, n, '' if expected == got else '   <-- WRONG'))
    lines.append('  by kind:')
    for kind, counts in figures['by_kind'].items():
        lines.append('    %-10s %s' % (kind, ', '.join(
            '%s %d' % kv for kv in sorted(counts.items()))))
    lines += ['',
              '  products lost:         %d' % figures['products_lost'],
              '  processes left:        %d' % figures['processes_left'],
              '  temp folders left:     %d' % figures['temp_left'],
              '  parent RSS:            %.1f MB after the first batch, '
              '%.1f MB at the end: %+.1f MB (target < %g)' % (
                  figures['rss_first_mb'], figures['rss_end_mb'],
                  figures['rss_growth_mb'], RSS_TARGET_MB),
              '  open fds:              %s after the first batch, %s at '
              'the end (%s and %s runners, %d each); %s before any run, %s '
              'once the runners are closed'
              % (figures['fds_first'], figures['fds_end'],
                 figures['servers_first'], figures['servers_end'],
                 FDS_PER_SERVER, figures['fds_start'],
                 figures['fds_closed'])]
    for what in ('mismatches', 'lost', 'stray'):
        for item in figures[what]:
            lines.append('  %s: %s' % (what, item))
    lines.append('')
    lines.append('  verdict: %s' % ('OK' if ok(figures) else 'FAILED'))
    print('\n'.join(lines))


def ok(figures):
    wrong = sum(n for key, n in figures['expected_vs_got'].items()
                if key.split('->')[0] != key.split('->')[1])
    return (wrong == 0 and figures['products_lost'] == 0
            and figures['processes_left'] == 0 and figures['temp_left'] == 0
            and figures['rss_growth_mb'] < RSS_TARGET_MB
            # a later batch may need a runner of its own (another
            # environment): only that may add descriptors
            and figures['fds_end'] - figures['fds_first']
            == FDS_PER_SERVER * (figures['servers_end']
                                 - figures['servers_first'])
            and figures['fds_start'] == figures['fds_closed'])


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    top = tempfile.mkdtemp(prefix='cplrun-soak-')
    # private temporary folder (run folders go there) and recipe index
    os.environ['TMPDIR'] = os.path.join(top, 'tmp')
    os.environ['XDG_CACHE_HOME'] = os.path.join(top, 'cache')
    os.environ[TAG_VARIABLE] = top
    os.makedirs(os.environ['TMPDIR'])
    tempfile.tempdir = os.environ['TMPDIR']
    sys.path.insert(0, REPO)
    try:
        soak = Soak(args, top)
        soak.prepare()
        figures = soak.run()
        report(figures)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(figures, f, indent=2)
    finally:
        if args.keep:
            print('soak folder kept: %s' % top)
        else:
            shutil.rmtree(top, ignore_errors=True)
    return 0 if ok(figures) else 1


if __name__ == '__main__':
    sys.exit(main())
