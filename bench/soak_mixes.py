"""The soak's mixes of ordinary use that once went wrong (issue 10): forked
children calling recipes, more environments at once than the pool keeps
servers, reruns into output folders already used, and Ctrl-C in the
middle of a batch.  bench/soak.py runs each once per round, after the
round's batches, and tallies their outcomes with the batches'.

Each mix gives every call or run it makes an *expected* outcome and the
one it got, in the words of the soak (``success``, ``failed``,
``crashed``, ``timeout``, ``cached``, ``interrupted``), and these:

* ``hung``: a forked child or an interrupted script that did not end in
  time (it is killed);
* ``renamed``: a successful call one after another into one folder whose
  product did not take the recipe's name (python-cpl replaces it);
* ``error: <Exception>``: anything else a call raised.

A product is **lost** when a successful run reported it and it is not
there with that run's content, read back (a copy's pixel value, an
environment's value in the header) or, for a product that must survive a
later failing run, its checksum taken when its own run ended; a product
overwritten by an overlapping run is lost that way too.  Left over are
processes (found by a tag in their environment, wherever they were
reparented) and temporary files: anything in an interrupted script's
temporary folder, run folders (``.cplrun-work``) of successful and
cancelled runs, and staging files in output folders.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

#: the environment variable every process the soak starts inherits
TAG_VARIABLE = 'CPLRUN_SOAK_TAG'
#: the soak's own recipes, through a child script's environment
RECIPE_PATH_VARIABLE = 'CPLRUN_SOAK_RECIPE_PATH'

FORK_CHILDREN = 2
#: times the envs mix calls in each of its environments at once
ENV_PASSES = 2
#: seconds of the runs that keep the envs mix's servers busy
ENV_HANG = 0.3
#: seconds the forked children have for their calls, all together
FORK_DEADLINE = 20.0
#: seconds of an interrupted script, from start to end
CHILD_DEADLINE = 60.0
#: seconds each call of a mix may take before it counts as timed out
CALL_TIMEOUT = 10.0
#: cpl.threaded's default bound on runs at once (none, in effect)
SLOTS_UNBOUNDED = 65536
#: runs of the workflow a script is interrupted in: copies, then short
#: hangs (some end about when the signal comes), then long ones (the batch
#: cannot end before it)
SIGINT_COPIES = 6
SIGINT_SHORT_HANGS = (0.1, 0.3, 0.6, 1.0)
SIGINT_LONG_HANG = 30.0


def digest(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def copy_value(path: str) -> float:
    """The pixel rtest_copy copied from its input."""
    from astropy.io import fits
    return float(fits.getdata(path)[0, 0])


def outcome_of(call):
    """(status, result or None, error text) of call().  The run folder a
    failed call keeps, named in its error, is removed: the temporary
    folder then holds only what nothing mentions."""
    import cpl
    try:
        return 'success', call(), ''
    except (cpl.RecipeCrash, cpl.CplError) as exc:
        status = 'timeout' if isinstance(exc, cpl.RecipeTimeout) else \
            'crashed' if isinstance(exc, cpl.RecipeCrash) else 'failed'
        workdir = getattr(exc, 'workdir', None)
        if workdir and os.path.realpath(workdir).startswith(
                os.path.realpath(tempfile.gettempdir()) + os.sep):
            shutil.rmtree(workdir, ignore_errors=True)
        return status, None, str(exc)
    except Exception as exc:
        return 'error: %s' % type(exc).__name__, None, str(exc)


def thread_outcome(thread):
    """outcome_of a threaded call's result."""
    return outcome_of(lambda: thread.result(timeout=4 * CALL_TIMEOUT))


def tagged_processes(tag: str) -> list[int]:
    """pids of the live processes (zombies excluded) whose environment
    holds TAG_VARIABLE=tag, but for this one."""
    mark = ('%s=%s' % (TAG_VARIABLE, tag)).encode() + b'\0'
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open('/proc/%s/environ' % entry, 'rb') as f:
                environ = f.read()
            with open('/proc/%s/stat' % entry) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
        except OSError:
            continue        # gone, or not ours
        if mark in environ and state not in ('Z', 'X'):
            found.append(int(entry))
    return found


class Mixes:
    """The mixes of one soak; ``soak`` tallies (see bench/soak.py)."""

    def __init__(self, soak, inputs: dict[str, float]) -> None:
        self.soak = soak
        self.inputs = sorted(inputs.items())      # (path, pixel value)
        self.rng = random.Random(1)

    def tally(self, kind: str, expected: str, got: str, detail: str = ''
              ) -> None:
        self.soak.tally(kind, expected, got, detail)

    def check_copy(self, name: str, path: str, value: float) -> None:
        """Lost unless path is there holding value."""
        try:
            got = copy_value(path)
        except Exception as exc:        # missing, unreadable
            self.soak.lose('%s: %s: %s: %s' % (name, path,
                                               type(exc).__name__, exc))
            return
        if got != value:
            self.soak.lose('%s: %s holds %g, its run copied %g'
                           % (name, path, got, value))

    def check_run_folders(self, report, out: str) -> None:
        """A workflow run that succeeded or was cancelled leaves no work
        folder (a failed one keeps it, named in its error)."""
        for r in report:
            work = os.path.join(out, r.name, '.cplrun-work')
            if r.status in ('success', 'cancelled', 'cached') and \
                    os.path.exists(work):
                self.soak.stray.append(work)

    def note_work_folders(self, folder: str, failed_runs=()) -> None:
        """Every work folder below folder is left over, but for those of
        failed runs (named in their errors)."""
        for top, dirs, _files in os.walk(folder):
            if '.cplrun-work' in dirs:
                dirs.remove('.cplrun-work')
                if top not in failed_runs:
                    self.soak.stray.append(os.path.join(top, '.cplrun-work'))

    def copies(self, n: int, first: int = 0):
        """n (input, value) pairs, going round the inputs."""
        return [self.inputs[(first + i) % len(self.inputs)] for i in range(n)]

    # -- forked children ----------------------------------------------------
    def forks(self, out: str) -> None:
        """Children forked ('fork' start method) after this process has
        called, calling recipes while it calls too; then a workflow on a
        process pool of forked workers."""
        import multiprocessing
        import cpl
        ctx = multiprocessing.get_context('fork')
        recipe = cpl.Recipe('rtest_copy')
        raw = self.inputs[0][0]
        # the parent has called: its runner (and its reader) are up
        status, _res, error = outcome_of(lambda: recipe(
            raw, tag='RAW', output_dir=os.path.join(out, 'before'),
            timeout=CALL_TIMEOUT))
        self.tally('fork_parent', 'success', status, error)
        children = []
        for c in range(FORK_CHILDREN):
            folder = os.path.join(out, 'child%d' % c)
            calls = self.copies(3, first=c)
            child = ctx.Process(target=forked_calls,
                                args=(folder, calls, folder + '.json'))
            child.start()
            children.append((child, folder, calls))
        # meanwhile the parent calls: the replies must stay its own
        mine = self.copies(4, first=3)
        threads = [recipe(raw, tag='RAW', output_dir=os.path.join(
            out, 'parent%d' % i), threaded=True, timeout=CALL_TIMEOUT)
            for i, (raw, _v) in enumerate(mine)]
        for i, (thread, (_raw, value)) in enumerate(zip(threads, mine)):
            status, res, error = thread_outcome(thread)
            self.tally('fork_parent', 'success', status, error)
            if status == 'success':
                self.check_copy('fork parent call %d' % i, res['PRODUCT'],
                                value)
        deadline = time.monotonic() + FORK_DEADLINE
        for child, folder, calls in children:
            child.join(max(0.1, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join()
                for _call in calls:
                    self.tally('fork_child', 'success', 'hung',
                               'forked child %d did not end in %g s'
                               % (child.pid, FORK_DEADLINE))
                continue
            try:
                with open(folder + '.json') as f:
                    results = json.load(f)
            except (OSError, ValueError) as exc:
                self.tally('fork_child', 'success', 'error: no result',
                           'forked child %d ended with %s and no result: %s'
                           % (child.pid, child.exitcode, exc))
                continue
            for i, entry in enumerate(results):
                self.tally('fork_child', 'success', entry['status'],
                           entry['error'])
                if entry['status'] == 'success':
                    self.check_copy('forked child %d call %d' % (child.pid, i),
                                    entry['path'], entry['value'])
        self.fork_pool(os.path.join(out, 'pool'), ctx)

    def fork_pool(self, out: str, ctx) -> None:
        from concurrent.futures import ProcessPoolExecutor
        from cpl.parallel import Workflow
        w = Workflow()
        plan = {}
        for i, (raw, value) in enumerate(self.copies(4, first=1)):
            node = w.add('rtest_copy', raw, tag='RAW', name='p%d' % i)
            plan[node.name] = value
        with ProcessPoolExecutor(2, mp_context=ctx) as executor:
            report = w.run(output_dir=out, timeout=CALL_TIMEOUT,
                           executor=executor, progress=False)
        self.check_run_folders(report, out)
        for r in report:
            self.tally('fork_pool', 'success', r.status, r.error or '')
            if r.status == 'success':
                self.check_copy('pool run %s' % r.name, r.products['PRODUCT'],
                                plan[r.name])

    # -- more environments than servers --------------------------------------
    def environments(self, out: str, count: int) -> None:
        """count threaded calls at once, each with an environment of its
        own, twice (the same environments: the pool has servers for some,
        retired others), then a workflow with an environment per run; each
        product must carry its own run's value."""
        import cpl
        from cpl.parallel import Workflow
        recipe = cpl.Recipe('rtest_omp')
        # a run that lasts keeps its server busy while others want one
        hang = cpl.Recipe('rtest_hang')
        raw = self.inputs[0][0]
        values = ['soak-%d' % i for i in range(count)] * ENV_PASSES
        threads = []
        for i, v in enumerate(values):
            env = {'CPLRUN_TEST_VAR': v}
            threads.append((hang(raw, tag='RAW', env=env,
                                 param={'seconds': ENV_HANG},
                                 output_dir=os.path.join(out, 'hang%d' % i),
                                 threaded=True, timeout=CALL_TIMEOUT), None))
            threads.append((recipe(raw, tag='RAW', env=env,
                                   output_dir=os.path.join(out, 'call%d' % i),
                                   threaded=True, timeout=CALL_TIMEOUT), v))
        for i, (thread, v) in enumerate(threads):
            status, res, error = thread_outcome(thread)
            self.tally('env_call', 'success', status, error)
            if status == 'success' and v is not None:
                self.check_env('env call %d' % i, res['OMP_PRODUCT'], v)
        w = Workflow()
        plan = {}
        for i in range(count):
            v = 'soak-wf%d' % i
            node = w.add('rtest_omp', raw, tag='RAW',
                         env={'CPLRUN_TEST_VAR': v}, name='e%d' % i)
            plan[node.name] = v
            w.add('rtest_hang', raw, tag='RAW', env={'CPLRUN_TEST_VAR': v},
                  param={'seconds': ENV_HANG}, name='h%d' % i)
        report = w.run(n_workers=2 * count, output_dir=os.path.join(out, 'wf'),
                       timeout=CALL_TIMEOUT, progress=False)
        self.check_run_folders(report, os.path.join(out, 'wf'))
        for r in report:
            self.tally('env_workflow', 'success', r.status, r.error or '')
            if r.status == 'success' and r.name in plan:
                self.check_env('env run %s' % r.name,
                               r.products['OMP_PRODUCT'], plan[r.name])

    def check_env(self, name: str, path: str, value: str) -> None:
        from astropy.io import fits
        try:
            got = fits.getheader(path)['ESO QC ENV VAR']
        except Exception as exc:
            self.soak.lose('%s: %s: %s: %s' % (name, path,
                                               type(exc).__name__, exc))
            return
        if got != value:
            self.soak.lose('%s: %s ran with CPLRUN_TEST_VAR=%r, not %r'
                           % (name, path, got, value))

    # -- reruns into used output folders -------------------------------------
    def reruns(self, out: str) -> None:
        import cpl
        recipe = cpl.Recipe('rtest_copy')
        folder = os.path.join(out, 'calls')
        # one after another: each replaces the last one's product
        for i, (raw, value) in enumerate(self.copies(3, first=2)):
            status, res, error = outcome_of(lambda: recipe(
                raw, tag='RAW', output_dir=folder, timeout=CALL_TIMEOUT))
            if status == 'success':
                self.check_copy('rerun call %d' % i, res['PRODUCT'], value)
                if res['PRODUCT'] != os.path.join(folder, 'rtest_copy.fits'):
                    status, error = 'renamed', res['PRODUCT']
            self.tally('rerun_call', 'success', status, error)
        # at once, into the same folder: none overwrites another.  Calls
        # overlap when each is made before another ends (a call made after
        # one ended replaces its product, as a rerun does): the four are
        # made while a hang holds the only slot, so they wait, in flight.
        overlapping = self.copies(4, first=5)
        hang = cpl.Recipe('rtest_hang')
        cpl.Recipe.set_maxthreads(1)
        try:
            holder = hang(overlapping[0][0], tag='RAW', threaded=True,
                          param={'seconds': 0.5}, timeout=CALL_TIMEOUT)
            while not (holder.running() or holder.done()):
                time.sleep(0.001)
            threads = [recipe(raw, tag='RAW', output_dir=folder,
                              threaded=True, timeout=CALL_TIMEOUT)
                       for raw, _v in overlapping]
            self.tally('rerun_overlap', 'success', *thread_outcome(holder)[::2])
        finally:
            cpl.Recipe.set_maxthreads(SLOTS_UNBOUNDED)
        reported = {}
        for i, (thread, (_raw, value)) in enumerate(zip(threads,
                                                        overlapping)):
            status, res, error = thread_outcome(thread)
            self.tally('rerun_overlap', 'success', status, error)
            if status == 'success':
                reported['overlapping call %d' % i] = (res['PRODUCT'], value)
        for name, (path, value) in reported.items():
            self.check_copy(name, path, value)
        self.workflow_reruns(os.path.join(out, 'wf'))

    def workflow_reruns(self, out: str) -> None:
        """A workflow run again into its folder: a run whose parameter now
        makes it fail keeps its earlier products; one given another input
        replaces its product."""
        from cpl.parallel import Workflow
        (raw, value), (raw2, value2) = self.copies(2, first=4)
        def run(fail: bool, redo_input: str):
            w = Workflow()
            w.add('rtest_error', raw, tag='RAW', param={'fail': fail},
                  name='keep')
            w.add('rtest_copy', redo_input, tag='RAW', name='redo')
            report = w.run(n_workers=2, output_dir=out, timeout=CALL_TIMEOUT,
                           progress=False)
            self.check_run_folders(report, out)
            return report
        report = run(False, raw)
        kept = {}
        for r in report:
            self.tally('rerun_workflow', 'success', r.status, r.error or '')
            if r.status == 'success' and r.name == 'keep':
                kept = {p: digest(p) for p in r.products.values()}
        report = run(True, raw2)
        self.tally('rerun_workflow', 'failed', report['keep'].status,
                   report['keep'].error or '')
        for path, checksum in kept.items():
            if not os.path.isfile(path):
                self.soak.lose('keep: %s, made by the first run, is gone '
                               'after a failing rerun' % path)
            elif digest(path) != checksum:
                self.soak.lose('keep: %s changed in a failing rerun' % path)
        redo = report['redo']
        self.tally('rerun_workflow', 'success', redo.status, redo.error or '')
        if redo.status == 'success':
            self.check_copy('redo', redo.products['PRODUCT'], value2)

    # -- Ctrl-C ---------------------------------------------------------------
    def interrupts(self, out: str) -> list[str]:
        """A script interrupted (SIGINT) in a workflow, with threaded calls
        in flight, then one interrupted in a synchronous call; returns the
        temporary folders the scripts had, to be checked for leftovers."""
        import cpl
        temp_dirs = []
        for mode in ('workflow', 'call'):
            folder = os.path.join(out, mode)
            temp_dir = os.path.join(out, 'tmp-' + mode)
            os.makedirs(temp_dir)
            temp_dirs.append(temp_dir)
            spec = {'mode': mode, 'out': folder, 'inputs': self.inputs,
                    'result': folder + '.json'}
            env = dict(os.environ, TMPDIR=temp_dir)
            env[RECIPE_PATH_VARIABLE] = json.dumps(list(cpl.Recipe.path))
            child = subprocess.Popen(
                [sys.executable, os.path.join(HERE, 'soak_mixes.py'),
                 json.dumps(spec)], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=env)
            getattr(self, 'interrupted_' + mode)(child, spec)
        return temp_dirs

    def _end_child(self, child, kind: str):
        """Waits for an interrupted script; its exit status and output, or
        None (a hung one, killed)."""
        try:
            output, _ = child.communicate(timeout=CHILD_DEADLINE)
        except subprocess.TimeoutExpired:
            child.kill()
            output, _ = child.communicate()
            self.tally(kind, 'interrupted', 'hung',
                       'did not end %g s after SIGINT: %s'
                       % (CHILD_DEADLINE, output.decode(errors='replace')
                          [-500:]))
            return None, output.decode(errors='replace')
        return child.returncode, output.decode(errors='replace')

    def interrupted_workflow(self, child, spec) -> None:
        """SIGINT once a few runs have ended, the others in flight."""
        from cpl.parallel import Report, Workflow
        wf = os.path.join(spec['out'], 'wf')
        deadline = time.monotonic() + CHILD_DEADLINE
        while time.monotonic() < deadline and child.poll() is None:
            ended = [d for d in (os.listdir(wf) if os.path.isdir(wf) else ())
                     if os.path.exists(os.path.join(wf, d,
                                                    '.cplrun-run.json'))]
            if len(ended) >= 3:
                break
            time.sleep(0.02)
        time.sleep(self.rng.uniform(0, 0.5))
        child.send_signal(signal.SIGINT)
        status, output = self._end_child(child, 'sigint_workflow')
        if status is None:
            return
        got = 'interrupted' if status in (-signal.SIGINT, 130) else \
            'exit status %d' % status
        self.tally('sigint_workflow', 'interrupted', got,
                   '' if got == 'interrupted' else output[-500:])
        try:
            report = Report.from_json(os.path.join(wf, 'report.json'))
        except (OSError, ValueError) as exc:
            self.tally('sigint_workflow', 'interrupted', 'error: no report',
                       str(exc))
            return
        self.note_work_folders(spec['out'], [
            os.path.join(wf, r.name) for r in report if r.status == 'failed'])
        values = dict(self.inputs)
        nodes = workflow_to_interrupt(spec['inputs']).nodes
        done = [r for r in report if r.status == 'success']
        for r in done:
            if r.recipe == 'rtest_copy':
                self.check_copy('interrupted run %s' % r.name,
                                r.products['PRODUCT'],
                                values[nodes[r.name].raw[0]])
            elif not os.path.isfile(r.products.get('HANG_PRODUCT', '')):
                self.soak.lose('interrupted run %s: %s missing' % (
                    r.name, r.products.get('HANG_PRODUCT')))
        # run again, those that ended well are reused as they are
        again = Workflow()
        for node in nodes.values():
            if node.name in {r.name for r in done}:
                again.add(node.recipe, *node.raw, tag=node.tag,
                          param=node.param, name=node.name)
        report = again.run(n_workers=4, output_dir=wf, timeout=CALL_TIMEOUT,
                           progress=False)
        for r in report:
            self.tally('sigint_rerun', 'cached', r.status,
                       '%s, reported success by the interrupted run, %s'
                       % (r.name, r.error or 'ran again'))
        self.check_run_folders(report, wf)

    def interrupted_call(self, child, spec) -> None:
        """SIGINT in a synchronous call, which the script catches; its next
        call must work."""
        line = child.stdout.readline()
        if line.strip() == b'calling':
            time.sleep(0.3 + self.rng.uniform(0, 0.3))
            child.send_signal(signal.SIGINT)
        status, output = self._end_child(child, 'sigint_call')
        if status is None:
            return
        self.note_work_folders(spec['out'])
        try:
            with open(spec['result']) as f:
                result = json.load(f)
        except (OSError, ValueError) as exc:
            self.tally('sigint_call', 'interrupted',
                       'exit status %d' % status,
                       'no result (%s): %s' % (exc, output[-500:]))
            return
        self.tally('sigint_call', 'interrupted', result['interrupted'],
                   output[-500:])
        after = result['after']
        self.tally('sigint_call', 'success', after['status'], after['error'])
        if after['status'] == 'success':
            self.check_copy('call after the interrupted one', after['path'],
                            after['value'])


# --- what runs in forked children and in the interrupted scripts ------------
def forked_calls(folder: str, calls, result_file: str) -> None:
    """In a forked child: rtest_copy on each (input, value), each into a
    folder of its own; the outcomes go to result_file as JSON."""
    import cpl
    recipe = cpl.Recipe('rtest_copy')
    results = []
    for i, (raw, value) in enumerate(calls):
        status, res, error = outcome_of(lambda: recipe(
            raw, tag='RAW', output_dir=os.path.join(folder, 'call%d' % i),
            timeout=CALL_TIMEOUT))
        results.append({'status': status, 'value': value, 'error': error,
                        'path': res['PRODUCT'] if res is not None else None})
    write_json(result_file, results)


def write_json(path: str, data) -> None:
    with open(path + '.part', 'w') as f:
        json.dump(data, f)
    os.replace(path + '.part', path)


def workflow_to_interrupt(inputs):
    """The workflow the 'workflow' script is interrupted in."""
    from cpl.parallel import Workflow
    w = Workflow()
    for i in range(SIGINT_COPIES):
        raw, _value = inputs[i % len(inputs)]
        w.add('rtest_copy', raw, tag='RAW', name='copy%d' % i)
    raw = inputs[0][0]
    for i, seconds in enumerate(SIGINT_SHORT_HANGS):
        w.add('rtest_hang', raw, tag='RAW', param={'seconds': seconds},
              name='short%d' % i)
    for i in range(2):
        w.add('rtest_hang', raw, tag='RAW',
              param={'seconds': SIGINT_LONG_HANG}, name='long%d' % i)
    return w


def interrupted_script(spec) -> int:
    # started in the background, it may have inherited SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import cpl
    cpl.Recipe.path = json.loads(os.environ[RECIPE_PATH_VARIABLE])
    raw, value = spec['inputs'][0]
    if spec['mode'] == 'workflow':
        hang = cpl.Recipe('rtest_hang')
        # in flight when the script ends
        # in flight when the script ends: one working in its output
        # folder, one in the temporary folder
        in_flight = [hang(raw, tag='RAW', param={'seconds': SIGINT_LONG_HANG},
                          threaded=True, **where)
                     for where in ({'output_dir': os.path.join(spec['out'],
                                                               'threaded')},
                                   {})]
        workflow_to_interrupt(spec['inputs']).run(
            n_workers=4, output_dir=os.path.join(spec['out'], 'wf'),
            progress=False)
        del in_flight
        return 0        # not interrupted: the parent says so
    interrupted = 'not interrupted'
    print('calling', flush=True)
    try:
        # working in the temporary folder
        cpl.Recipe('rtest_hang')(raw, tag='RAW',
                                 param={'seconds': SIGINT_LONG_HANG})
    except KeyboardInterrupt:
        interrupted = 'interrupted'
    status, res, error = outcome_of(lambda: cpl.Recipe('rtest_copy')(
        raw, tag='RAW', output_dir=os.path.join(spec['out'], 'after'),
        timeout=CALL_TIMEOUT))
    write_json(spec['result'], {
        'interrupted': interrupted,
        'after': {'status': status, 'error': error, 'value': value,
                  'path': res['PRODUCT'] if res is not None else None}})
    return 0


if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(HERE))
    sys.exit(interrupted_script(json.loads(sys.argv[1])))
