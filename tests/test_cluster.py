"""Workflows on Dask distributed: cpl.cluster.DaskClusterManager (a
LocalCluster, an existing scheduler that the tests start as ``dask
scheduler`` / ``dask worker`` processes, and SLURM jobs on a one-node SLURM
cluster of this machine) and the Dask backend of cpl.parallel: reports,
worker addresses, bounded submission, timeouts and fail-fast cancellation
that kill the recipe process on the worker, OpenMP threads, workers that
die mid-run, the CLI's --scheduler and --cluster.

Everything listens on and talks to 127.0.0.1 only."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import psutil
import pytest
from astropy.io import fits

distributed = pytest.importorskip('distributed')
# not imported here: importing dask_jobqueue replaces the SIGINT handler
# (cpl.cluster puts it back), which would break Ctrl-C tests elsewhere
if importlib.util.find_spec('dask_jobqueue') is None:
    pytest.skip('dask-jobqueue is not installed', allow_module_level=True)

import dask  # noqa: E402

import cpl  # noqa: E402
from cpl import cli, parallel  # noqa: E402
from cpl.cluster import DASK_CONFIG, DaskClusterManager, \
    dask_config_exports  # noqa: E402
from cpl.parallel import Workflow, run_batch  # noqa: E402
from conftest import is_gone, manifest_step as step, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
START_SLURM = os.path.join(HERE, 'slurm', 'start-slurm.sh')
OPTS = dict(progress=False)
BIN = os.path.dirname(sys.executable)


# --- helpers -------------------------------------------------------------------
def hang(w, raw, name, seconds=3600.0, **param):
    return w.add('rtest_hang', raw, tag='RAW', name=name,
                 param=dict(seconds=seconds, **param))


def summary(report):
    import io
    buf = io.StringIO()
    report.summary(file=buf)
    return buf.getvalue()


def recipe_procs_under(folders, prefix='rtest_hang-'):
    """Recipe processes (and what they forked) working in a run folder
    ``<prefix>XXXX`` below one of folders: {pid: cwd}."""
    roots = [os.path.realpath(f) + os.sep for f in folders]
    found = {}
    for p in psutil.process_iter(['pid']):
        try:
            cwd = p.cwd()
        except (psutil.Error, OSError):
            continue
        if os.path.basename(cwd).startswith(prefix) and any(
                (cwd + os.sep).startswith(r) for r in roots):
            if not is_gone(p.pid):
                found[p.pid] = cwd
    return found


class Watch(threading.Thread):
    """While a workflow runs: the recipe processes seen below folders (and
    the most at once), and the most cplrun tasks the scheduler held not
    yet finished at once (queued, processing, ...)."""

    def __init__(self, folders, client=None, prefix='rtest_hang-'):
        super().__init__(daemon=True)
        self.folders, self.client, self.prefix = folders, client, prefix
        self.seen: dict[int, str] = {}
        self.most_procs = self.most_tasks = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            now = recipe_procs_under(self.folders, self.prefix)
            self.seen.update(now)
            # a recipe and the child it forked share a folder: count folders
            self.most_procs = max(self.most_procs, len(set(now.values())))
            if self.client is not None:
                try:
                    n = self.client.run_on_scheduler(_unfinished_tasks)
                    self.most_tasks = max(self.most_tasks, n)
                except Exception:
                    pass
            time.sleep(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join(10)


def _unfinished_tasks(dask_scheduler=None):
    return sum(1 for key, ts in dask_scheduler.tasks.items()
               if str(key).startswith('cplrun-') and ts.state in (
                   'released', 'waiting', 'queued', 'no-worker',
                   'processing'))


def workers_of(client):
    return set(client.nthreads())


# --- clusters --------------------------------------------------------------------
@pytest.fixture(scope='module')
def local_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('dask-local'))


@pytest.fixture(scope='module')
def local_cluster(local_dir):
    """A LocalCluster of two one-thread workers, scratch in local_dir."""
    with DaskClusterManager(nworkers=2, cluster_type='local',
                            local_directory=local_dir) as manager:
        yield manager


class DaskProcesses:
    """``dask scheduler`` and ``dask worker`` processes, started here (each
    in a session of its own, so that a kill takes the nanny and its worker
    process together), on 127.0.0.1, with the environment of the suite
    (XDG_CACHE_HOME, TMPDIR) and Dask settings as a deployment sets them."""

    def __init__(self, folder, nworkers=2, env=None):
        self.folder = folder
        self.env = dict(os.environ)
        for line in dask_config_exports():
            name, _, value = line[len('export '):].partition('=')
            self.env[name] = value.strip("'")
        self.env.update(env or {})
        self.procs = []
        scheduler_file = os.path.join(folder, 'scheduler.json')
        self.scheduler = self._start(
            'scheduler', [BIN + '/dask', 'scheduler', '--host', '127.0.0.1',
                          '--port', '0', '--dashboard-address', '127.0.0.1:0',
                          '--scheduler-file', scheduler_file])
        if not wait_until(lambda: os.path.exists(scheduler_file), 60, 0.1):
            self.stop()
            raise RuntimeError('no scheduler: %s' % self.log('scheduler'))
        time.sleep(0.1)
        with open(scheduler_file) as f:
            self.address = json.load(f)['address']
        self.workers = {}       # name -> (Popen, local directory)
        for i in range(nworkers):
            self.add_worker('w%d' % i)

    def _start(self, name, argv):
        log = open(os.path.join(self.folder, name + '.log'), 'wb')
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.env,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def add_worker(self, name):
        local = os.path.join(self.folder, name)
        os.makedirs(local, exist_ok=True)
        proc = self._start(name, [
            BIN + '/dask', 'worker', self.address, '--nthreads', '1',
            '--memory-limit', '0', '--host', '127.0.0.1', '--name', name,
            '--no-dashboard', '--local-directory', local])
        self.workers[name] = (proc, local)

    def log(self, name):
        with open(os.path.join(self.folder, name + '.log'), 'rb') as f:
            return f.read().decode(errors='replace')[-3000:]

    def address_of(self, client, name):
        for address, info in client.scheduler_info(n_workers=-1)[
                'workers'].items():
            if info.get('name') == name:
                return address
        raise KeyError(name)

    def kill_worker(self, name):
        """SIGKILL to the worker's nanny and worker process."""
        proc, _ = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def dask_processes(tmp_path):
    """Starts DaskProcesses(**kw) for a test, stopped at its end."""
    started = []

    def start(nworkers=2, env=None):
        folder = tmp_path / ('dask-%d' % len(started))
        folder.mkdir()
        procs = DaskProcesses(str(folder), nworkers, env)
        started.append(procs)
        return procs
    yield start
    for procs in started:
        procs.stop()


@pytest.fixture(scope='module')
def address_cluster(tmp_path_factory):
    """A scheduler and two workers, started as processes of their own."""
    procs = DaskProcesses(str(tmp_path_factory.mktemp('dask-address')))
    try:
        with DaskClusterManager(scheduler_address=procs.address,
                                cluster_type='address', nworkers=2) as m:
            yield procs, m
    finally:
        procs.stop()


# --- the manager -------------------------------------------------------------------
def test_the_local_cluster_has_the_settings_recipes_need(local_cluster,
                                                         local_dir):
    m = local_cluster
    assert m.cluster_type == 'local' and m.worker_count == 2
    client = m.client
    assert isinstance(client, distributed.Client)
    info = client.scheduler_info(n_workers=-1)
    assert info['address'].startswith('tcp://127.0.0.1:')
    assert m.dashboard_link.startswith('http://127.0.0.1:')
    for address, worker in info['workers'].items():
        assert address.startswith('tcp://127.0.0.1:')
        assert worker['nthreads'] == 1
        assert not worker['memory_limit']           # '0': no limit
    # no pausing, spilling or killing of workers whose C code uses memory;
    # long silences allowed (workers and the scheduler alike)
    for config in list(client.run(lambda: {k: dask.config.get(k)
                                           for k in DASK_CONFIG}).values()) \
            + [{k: dask.config.get(k) for k in DASK_CONFIG}]:
        assert config == DASK_CONFIG
    # nor do the workers get variables that change the recipes they run
    for env in client.run(lambda: {k: os.environ.get(k) for k in (
            'OMP_NUM_THREADS', 'MALLOC_TRIM_THRESHOLD_',
            'MKL_NUM_THREADS')}).values():
        assert env == dict.fromkeys(env)
    dirs = client.run(lambda dask_worker: dask_worker.local_directory)
    for d in dirs.values():
        assert os.path.realpath(d).startswith(os.path.realpath(local_dir))


def test_start_returns_self_and_shutdown_closes_all(capsys):
    environ = dict(os.environ)
    m = DaskClusterManager(nworkers=1, cluster_type='local')
    assert m.worker_count == 0 and m.client is None
    assert m.start() is m
    try:
        assert m.worker_count == 1
        cluster = m.cluster
        assert 'Dask dashboard: http://127.0.0.1:' in capsys.readouterr().out
    finally:
        m.shutdown()
    assert m.client is None and m.cluster is None and m.worker_count == 0
    assert cluster.status.name == 'closed'
    # the nannies ran in this process and left its environment alone
    # (OMP_NUM_THREADS=1 & co. would reach our own recipe runs)
    assert dict(os.environ) == environ
    with pytest.raises(ValueError):
        DaskClusterManager(cluster_type='pbs')
    with pytest.raises(ValueError):
        DaskClusterManager(cluster_type='address')


def test_fewer_workers_than_asked_warn(address_cluster):
    procs, _ = address_cluster
    m = DaskClusterManager(scheduler_address=procs.address,
                           cluster_type='address', nworkers=3,
                           wait_timeout=1)
    with pytest.warns(UserWarning, match='only 2 of the 3 Dask workers'):
        m.start()
    try:
        assert m.worker_count == 2
    finally:
        m.shutdown()


# --- 1. a LocalCluster ----------------------------------------------------------
def test_local_cluster_spreads_runs_at_most_one_per_worker(
        local_cluster, local_dir, raw, tmp_path):
    w = Workflow()
    for i in range(4):
        hang(w, raw, 'h%d' % i, seconds=0.5)
    out = str(tmp_path / 'out')
    with Watch([local_dir], local_cluster.client) as watch:
        report = w.run(output_dir=out, executor=local_cluster, **OPTS)
    assert report.ok, summary(report)
    workers = workers_of(local_cluster.client)
    for r in report.runs:
        assert r.worker in workers and r.worker.startswith('tcp://127.0.0.1:')
        assert r.attempts == 1 and r.omp_threads == 1
        assert r.wall_s >= 0.5 and r.cpu_s is not None and r.max_rss_mb > 0
        product = r.products['HANG_PRODUCT']
        assert product == os.path.join(out, r.name, 'rtest_hang.fits')
        assert os.path.isfile(product) and os.path.isfile(r.log)
    assert {r.worker for r in report.runs} == workers      # both used
    # bounded: never more than the two workers' worth in Dask or running
    assert 1 <= watch.most_tasks <= 2
    assert watch.most_procs == 2
    # each run worked in a scratch folder of its worker's local directory
    assert len(set(watch.seen.values())) == 4
    assert all('cplrun' in cwd.split(os.sep) for cwd in watch.seen.values())
    assert wait_until(lambda: not recipe_procs_under([local_dir]), 5)
    # the same report as locally, in output_dir
    saved = json.load(open(os.path.join(out, 'report.json')))
    assert saved['counts'] == {'success': 4}
    assert [r['worker'] for r in saved['runs']] == [r.worker
                                                    for r in report.runs]
    # a rerun reuses what is there, without asking Dask
    again = w.run(output_dir=out, executor=local_cluster, **OPTS)
    assert [r.status for r in again] == ['cached'] * 4


def test_dependencies_on_a_local_cluster_and_a_plain_client(
        local_cluster, raw, raw2, tmp_path, monkeypatch):
    client = local_cluster.client
    submitted = []
    real_submit = client.submit

    def spy(fn, *args, **kwargs):
        submitted.append((fn, args))
        return real_submit(fn, *args, **kwargs)
    monkeypatch.setattr(client, 'submit', spy)
    w = Workflow()
    a = w.add('rtest_copy', raw, name='a')
    b = w.add('rtest_copy', a.PRODUCT, calib={'CALIB': raw2}, name='b')
    w.add('rtest_params', b.PRODUCT, param={'int_value': 7}, name='c')
    out = str(tmp_path / 'chain')
    report = w.run(output_dir=out, executor=client, **OPTS)
    assert report.ok, summary(report)
    # each run is the top-level run_task with one plain-data task, the
    # recipe library named by its file (which the workers only need to see)
    assert [fn for fn, _args in submitted] == [parallel.run_task] * 3
    for _fn, (task,) in submitted:
        assert json.loads(json.dumps(task)) == task
        assert task['library'] == cpl.Recipe('rtest_copy').__file__
    monkeypatch.undo()
    a, b, c = report.runs
    assert b.started >= a.started + a.wall_s
    assert c.started >= b.started + b.wall_s
    header = fits.getheader(b.products['PRODUCT'])
    assert header['ESO PRO REC2 RAW1 NAME'] == 'rtest_copy.fits'
    assert header['ESO PRO REC2 CAL1 NAME'] == os.path.basename(raw2)
    assert fits.getheader(c.products['PARAMS'])['ESO QC INT_VALUE'] == 7
    # run_batch takes the executor too
    batch = run_batch('rtest_copy', [raw, raw2], output_dir=str(
        tmp_path / 'batch'), executor=local_cluster, **OPTS)
    assert batch.ok and len({r.worker for r in batch}) >= 1
    assert all(r.worker in workers_of(local_cluster.client) for r in batch)


# --- 3. timeouts and cancellation kill the recipe on the worker -----------------------
def test_a_timeout_kills_the_recipe_process_on_the_worker(
        local_cluster, local_dir, raw, tmp_path):
    w = Workflow()
    hang(w, raw, 'slow', fork_child=True)
    start = time.monotonic()
    with Watch([local_dir]) as watch:
        report = w.run(output_dir=str(tmp_path / 'out'), timeout=1.0,
                       executor=local_cluster, **OPTS)
    r = report['slow']
    assert r.status == 'timeout', summary(report)
    assert 'timed out after 1 s' in r.error
    assert r.worker in workers_of(local_cluster.client)
    assert time.monotonic() - start < 10
    # the recipe and the child it forked, both seen running, are gone
    assert len(watch.seen) == 2, watch.seen
    for pid in watch.seen:
        assert wait_until(lambda: is_gone(pid), 5), pid


def test_fail_fast_kills_a_running_recipe_on_a_worker(
        local_cluster, local_dir, raw, tmp_path):
    w = Workflow()
    hang(w, raw, 'long', fork_child=True)
    short = hang(w, raw, 'short', seconds=1.5)
    w.add('rtest_error', short.HANG_PRODUCT, tag='RAW', name='bad')
    start = time.monotonic()
    with Watch([local_dir]) as watch:
        report = w.run(output_dir=str(tmp_path / 'out'), fail_fast=True,
                       executor=local_cluster, **OPTS)
    took = time.monotonic() - start
    statuses = {r.name: r.status for r in report}
    assert statuses == {'long': 'cancelled', 'short': 'success',
                        'bad': 'failed'}, summary(report)
    assert took < 12, took
    assert report['long'].wall_s < report['short'].wall_s + 8
    # long, the child it forked, and short were seen; all are gone
    assert len(watch.seen) == 3, watch.seen
    for pid in watch.seen:
        assert wait_until(lambda: is_gone(pid), 5), pid
    assert not recipe_procs_under([local_dir])


# --- 4. OpenMP threads -----------------------------------------------------------------
def test_omp_threads_on_dask_are_recorded_and_applied(local_cluster, raw,
                                                      tmp_path, monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    w = Workflow()
    for i in range(2):
        w.add('rtest_omp', raw, tag='RAW', name='omp%d' % i)
    report = w.run(output_dir=str(tmp_path / 'out'), executor=local_cluster,
                   **OPTS)
    assert report.ok, summary(report)
    cores = min(len(os.sched_getaffinity(0)), os.cpu_count())
    for r in report.runs:
        # two one-thread workers on this machine share its cores
        assert r.omp_threads == max(1, cores // 2)
        header = fits.getheader(r.products['OMP_PRODUCT'])
        assert header['ESO QC OMP TEAM'] == r.omp_threads
        assert header['ESO QC OMP MAX'] == r.omp_threads
    # ours goes along to the worker (which does not inherit it)
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    w = Workflow()
    w.add('rtest_omp', raw, tag='RAW', name='ours')
    r = w.run(output_dir=str(tmp_path / 'ours'), executor=local_cluster,
              **OPTS)['ours']
    assert r.status == 'success' and r.omp_threads == 3
    assert fits.getheader(r.products['OMP_PRODUCT'])['ESO QC OMP TEAM'] == 3
    monkeypatch.delenv('OMP_NUM_THREADS')
    # a run's own OMP_NUM_THREADS wins, and is what the report says
    w = Workflow()
    w.add('rtest_omp', raw, tag='RAW', name='own',
          env={'OMP_NUM_THREADS': '3'})
    r = w.run(output_dir=str(tmp_path / 'own'), executor=local_cluster,
              **OPTS)['own']
    assert r.status == 'success' and r.omp_threads == 3
    assert fits.getheader(r.products['OMP_PRODUCT'])['ESO QC OMP TEAM'] == 3


# --- 2. an existing scheduler and workers ------------------------------------------------
def test_real_pipelines_through_scheduler_and_worker_processes(
        address_cluster, system_path, data_dir, tmp_path):
    procs, m = address_cluster
    folder, manifest = data_dir
    for name in ('uves_cal_mbias', 'uves_cal_mdark', 'naco_img_dark'):
        try:
            cpl.Recipe(name)
        except cpl.RecipeNotFoundError:
            pytest.skip('pipeline recipe %s is not installed' % name)
    bias_raw = cpl.esorex.load_sof(step(manifest, 'uves_cal_mbias')['sof'])
    dark_raw = cpl.esorex.load_sof(step(manifest, 'uves_cal_mdark')['sof'])
    naco = cpl.esorex.load_sof(step(manifest, 'naco_img_dark')['sof'])
    w = Workflow()
    w.add('naco_img_dark', naco['CAL_DARK'], tag='CAL_DARK',
          param={'r': '12 12 12 12'}, name='naco')
    bias = w.add('uves_cal_mbias', bias_raw['BIAS_BLUE'], tag='BIAS_BLUE',
                 name='bias')
    w.add('uves_cal_mdark', dark_raw['DARK_BLUE'], tag='DARK_BLUE',
          calib={'MASTER_BIAS_BLUE': bias.MASTER_BIAS_BLUE}, name='dark')
    out = str(tmp_path / 'real')
    report = w.run(output_dir=out, timeout=120, executor=m, **OPTS)
    assert report.ok, summary(report)
    workers = workers_of(m.client)
    assert len(workers) == 2
    assert {r.worker for r in report} == workers        # both used
    s = step(manifest, 'naco_img_dark')
    assert set(report['naco'].products) == set(s['expected_pro_catg'])
    for r in report:
        for value in r.products.values():
            for path in value if isinstance(value, list) else [value]:
                assert os.path.dirname(path) == os.path.join(out, r.name)
                assert os.path.isfile(path)
    master_bias = report['bias'].products['MASTER_BIAS_BLUE']
    header = fits.getheader(report['dark'].products['MASTER_DARK_BLUE'])
    assert header['ESO PRO CATG'] == 'MASTER_DARK_BLUE'
    assert header['ESO PRO REC1 CAL1 NAME'] == os.path.basename(master_bias)
    assert report['dark'].started >= report['bias'].started + \
        report['bias'].wall_s
    # the workers' scratch folders are left empty
    for _proc, local in procs.workers.values():
        leftovers = [d for root, dirs, _f in os.walk(local) for d in dirs
                     if d.startswith(('uves_', 'naco_'))]
        assert not leftovers


@contextlib.contextmanager
def running_on_both_workers(w, m, procs, tmp_path):
    """Runs workflow w on cluster m in a thread; inside, both workers (w0,
    w1) run a recipe.  Yields the thread and a dict that holds the report
    once the block is left (the thread is joined then)."""
    result = {}
    runner = threading.Thread(target=lambda: result.update(report=w.run(
        output_dir=str(tmp_path / 'out'), executor=m, **OPTS)))
    runner.start()
    try:
        assert wait_until(lambda: all(
            recipe_procs_under([procs.workers[name][1]])
            for name in ('w0', 'w1')), 30)
        yield runner, result
    finally:
        runner.join(60)


def test_a_worker_killed_mid_run_loses_no_run(dask_processes, raw,
                                              tmp_path):
    """Dask reruns the runs of a dead worker on the survivor."""
    procs = dask_processes()
    with DaskClusterManager(scheduler_address=procs.address,
                            cluster_type='address', nworkers=2) as m:
        victim = procs.address_of(m.client, 'w0')
        survivor = procs.address_of(m.client, 'w1')
        w = Workflow()
        for i in range(4):
            hang(w, raw, 'h%d' % i, seconds=2.0, fork_child=True)
        with running_on_both_workers(w, m, procs, tmp_path) as (runner,
                                                               result):
            doomed = recipe_procs_under([procs.workers['w0'][1]])
            procs.kill_worker('w0')
            # the scheduler is asked, not a count remembered
            assert wait_until(lambda: m.worker_count == 1, 10)
        report = result['report']
        assert not runner.is_alive()
    # the recipe (and its child) on the dead worker died with it
    for pid in doomed:
        assert wait_until(lambda: is_gone(pid), 10), pid
    assert [r.status for r in report] == ['success'] * 4, summary(report)
    assert {r.worker for r in report} == {survivor}
    assert victim != survivor
    for r in report:
        assert os.path.isfile(r.products['HANG_PRODUCT'])


def test_a_run_whose_worker_dies_is_reported_crashed(dask_processes, raw,
                                                     tmp_path):
    """When Dask may not rerun it (allowed-failures 0), the run of a dead
    worker is reported crashed; it is not lost."""
    procs = dask_processes(env={
        'DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES': '0'})
    with DaskClusterManager(scheduler_address=procs.address,
                            cluster_type='address', nworkers=2) as m:
        w = Workflow()
        hang(w, raw, 'doomed')
        hang(w, raw, 'fine', seconds=2.0)
        with running_on_both_workers(w, m, procs, tmp_path) as (_runner,
                                                               result):
            # kill the worker running 'doomed' (the one of an hour)
            which = _worker_running(procs, m.client, 'doomed')
            doomed_procs = recipe_procs_under([procs.workers[which][1]])
            procs.kill_worker(which)
        report = result['report']
    for pid in doomed_procs:
        assert wait_until(lambda: is_gone(pid), 10), pid
    assert report['fine'].status == 'success', summary(report)
    doomed = report['doomed']
    assert doomed.status == 'crashed', summary(report)
    assert 'died' in doomed.error
    assert report.counts() == {'success': 1, 'crashed': 1}


def _worker_running(procs, client, run_name):
    """The name of the worker processing the task of run run_name."""
    for address, keys in client.processing().items():
        if any(str(k).startswith('cplrun-%s-' % run_name) for k in keys):
            for name in procs.workers:
                if procs.address_of(client, name) == address:
                    return name
    raise AssertionError('no worker runs %s' % run_name)


# --- 5. the command line ------------------------------------------------------------------
def sof(path, *lines):
    with open(path, 'w') as f:
        f.write(''.join('%s %s\n' % line for line in lines))
    return str(path)


def test_cli_run_on_a_scheduler(address_cluster, raw, raw2, tmp_path,
                                capsys):
    procs, m = address_cluster
    a = sof(tmp_path / 'night1.sof', (raw, 'RAW'))
    b = sof(tmp_path / 'night2.sof', (raw2, 'RAW'))
    out = tmp_path / 'out'
    code = cli.main(['run', 'rtest_copy', a, b, '--scheduler', procs.address,
                     '-o', str(out), '--no-progress'])
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads((out / 'report.json').read_text())
    assert report['counts'] == {'success': 2}
    for r in report['runs']:
        assert r['worker'] in workers_of(m.client)
        assert os.path.isfile(out / r['name'] / 'rtest_copy.fits')
    assert 'night1' in text and 'night2' in text


def test_cli_workflow_on_a_local_cluster(raw, tmp_path, capsys):
    script = tmp_path / 'wf.py'
    script.write_text(
        'from cpl.parallel import Workflow\n'
        'workflow = Workflow()\n'
        'a = workflow.add("rtest_copy", %r, name="a")\n'
        'workflow.add("rtest_copy", a.PRODUCT, name="b")\n'
        'workflow.add("rtest_copy", %r, name="c")\n' % (raw, raw))
    out = tmp_path / 'out'
    code = cli.main(['workflow', str(script), '--cluster', 'local',
                     '--workers', '2', '-o', str(out), '--no-progress'])
    text = capsys.readouterr().out
    assert code == 0, text
    assert 'Dask dashboard: http://127.0.0.1:' in text
    report = json.loads((out / 'report.json').read_text())
    assert report['counts'] == {'success': 3}
    assert all(r['worker'].startswith('tcp://127.0.0.1:')
               for r in report['runs'])
    assert os.path.isfile(out / 'b' / 'rtest_copy.fits')


# --- 6. SLURM ---------------------------------------------------------------------------------
def test_the_job_script_has_the_options_asked_for(tmp_path):
    logs = str(tmp_path / 'logs')
    m = DaskClusterManager(
        cluster_type='slurm', nworkers=2, slurm_queue='debug',
        slurm_account='astro42', slurm_walltime='01:30:00',
        slurm_job_mem='8GB', slurm_cores_per_job=4,
        slurm_job_name='cplrun-night',
        slurm_job_extra_directives=['--exclusive', '--constraint=fast'],
        slurm_python='/opt/pipelines/bin/python',
        slurm_local_directory='/scratch/cplrun',
        slurm_log_directory=logs,
        slurm_job_script_prologue=['module load esorex', 'echo started'])
    script = m.job_script()
    assert m.cluster is None and m.client is None   # nothing was started
    lines = script.splitlines()
    for directive in ('-p debug', '-A astro42', '-t 01:30:00', '--mem=8G',
                      '-J cplrun-night', '--cpus-per-task=4', '-n 1',
                      '--exclusive', '--constraint=fast'):
        assert '#SBATCH ' + directive in lines, script
    assert '#SBATCH -o %s/cplrun-night-%%J.out' % logs in lines
    assert 'module load esorex' in lines and 'echo started' in lines
    assert dask_config_exports()[0] in lines
    command = lines[-1].split()
    assert command[:3] == ['/opt/pipelines/bin/python', '-m',
                           'distributed.cli.dask_worker']
    assert ' '.join(command[-4:]) == '--nthreads 1 --memory-limit 0'
    assert command[command.index('--local-directory') + 1] == \
        '/scratch/cplrun'
    # the exports come first, the caller's prologue after them
    assert lines.index(dask_config_exports()[-1]) < \
        lines.index('module load esorex')


def test_ctrl_c_still_interrupts_after_dask_jobqueue_is_loaded(tmp_path):
    code = ('import signal, sys\n'
            'from cpl.cluster import DaskClusterManager\n'
            'm = DaskClusterManager(cluster_type="slurm", '
            'slurm_log_directory=sys.argv[1])\n'
            'assert "dask_worker" in m.job_script()\n'
            'assert "dask_jobqueue" in sys.modules\n'
            'assert signal.getsignal(signal.SIGINT) is '
            'signal.default_int_handler\n')
    proc = subprocess.run([sys.executable, '-c', code, str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout.decode(errors='replace')


def _slurm_missing():
    for tool in ('munged', 'slurmctld', 'slurmd', 'sbatch', 'sinfo'):
        if not shutil.which(tool, path=os.environ.get('PATH', '') +
                            ':/usr/sbin:/sbin'):
            return tool
    return None


@pytest.fixture(scope='session')
def slurm():
    """A one-node SLURM cluster on this machine (tests/slurm/start-slurm.sh),
    when we are root and slurm-wlm and munge are installed."""
    if os.geteuid() != 0:
        pytest.skip('starting SLURM needs root')
    missing = _slurm_missing()
    if missing:
        pytest.skip('%s is not installed (apt-get install slurm-wlm munge)'
                    % missing)
    proc = subprocess.run(['sh', START_SLURM], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=100)
    text = proc.stdout.decode(errors='replace')
    assert proc.returncode == 0, 'start-slurm.sh failed:\n' + text
    return text


def squeue(name):
    proc = subprocess.run(['squeue', '-h', '-n', name, '-o', '%i %T'],
                          stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=30)
    return [line.split() for line in proc.stdout.splitlines()]


def test_a_workflow_on_a_real_slurm_job(slurm, raw, raw2, tmp_path,
                                        monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    name = 'cplrun-test-%s' % uuid.uuid4().hex[:8]
    logs = str(tmp_path / 'slurm-logs')
    # scheduler and workers on loopback, and no fixed dashboard port
    with dask.config.set({'jobqueue.slurm.interface': 'lo',
                          'jobqueue.slurm.scheduler-options': {
                              'dashboard_address': '127.0.0.1:0'}}):
        m = DaskClusterManager(
            cluster_type='slurm', nworkers=1, slurm_walltime='00:10:00',
            slurm_job_mem='1GB', slurm_log_directory=logs,
            slurm_python=sys.executable, slurm_queue='debug',
            slurm_job_name=name, wait_timeout=60,
            slurm_local_directory=str(tmp_path / 'scratch'))
        with m:
            assert m.worker_count == 1
            assert '#SBATCH -J %s' % name in m.job_script().splitlines()
            jobs = squeue(name)
            assert len(jobs) == 1 and jobs[0][1] == 'RUNNING', jobs
            w = Workflow()
            a = w.add('rtest_copy', raw, name='a')
            w.add('rtest_copy', a.PRODUCT, calib={'CALIB': raw2}, name='b')
            w.add('rtest_omp', raw, tag='RAW', name='omp')
            out = str(tmp_path / 'out')
            report = w.run(output_dir=out, executor=m, **OPTS)
            workers = workers_of(m.client)
            env = m.client.run(lambda: {k: os.environ.get(k) for k in (
                'SLURM_JOB_ID', 'SLURM_CPUS_PER_TASK')})
    assert report.ok, summary(report)
    (address,) = workers
    assert address.startswith('tcp://127.0.0.1:')
    assert [r.worker for r in report] == [address] * 3
    job_env = env[address]
    assert job_env['SLURM_JOB_ID'] == jobs[0][0]
    for r in report:
        for path in r.products.values():
            assert os.path.dirname(path) == os.path.join(out, r.name)
            assert os.path.isfile(path)
    header = fits.getheader(report['b'].products['PRODUCT'])
    assert header['ESO PRO REC2 CAL1 NAME'] == os.path.basename(raw2)
    # the job has one core (--cpus-per-task=1): one OpenMP thread per run,
    # though the machine has more
    omp = report['omp']
    assert omp.omp_threads == int(job_env['SLURM_CPUS_PER_TASK']) == 1
    assert fits.getheader(omp.products['OMP_PRODUCT'])['ESO QC OMP TEAM'] == 1
    # the worker's output went to the log folder; the job is gone
    assert any(f.startswith(name) for f in os.listdir(logs))
    assert wait_until(lambda: not squeue(name), 30, 0.5), squeue(name)


def test_a_partition_slurm_does_not_have_fails_at_once_with_its_words(
        slurm, raw, tmp_path, capsys):
    a = sof(tmp_path / 'night1.sof', (raw, 'RAW'))
    out = tmp_path / 'out'
    start = time.monotonic()
    with dask.config.set({'jobqueue.slurm.interface': 'lo',
                          'jobqueue.slurm.scheduler-options': {
                              'dashboard_address': '127.0.0.1:0'}}):
        code = cli.main(['run', 'rtest_copy', a, '-o', str(out),
                         '--no-progress', '--cluster', 'slurm',
                         '--slurm-queue', 'no_such_partition',
                         '--slurm-log-directory', str(tmp_path / 'logs')])
    captured = capsys.readouterr()
    assert time.monotonic() - start < 30
    assert code == 2, captured
    # sbatch's own message, and nothing else
    assert captured.err.startswith('cplrun: SLURM refuses the worker jobs: ')
    assert 'invalid partition' in captured.err.lower(), captured.err
    assert len(captured.err.splitlines()) == 1, captured.err
    assert 'Traceback' not in captured.out + captured.err
    assert not os.path.exists(out / 'report.json')


def test_a_cluster_with_no_worker_says_so(local_dir, raw, tmp_path):
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=0, host='127.0.0.1',
                      dashboard_address='127.0.0.1:0',
                      local_directory=local_dir) as cluster, \
            Client(cluster) as client:
        w = Workflow()
        w.add('rtest_copy', raw, name='a')
        with pytest.raises(cpl.cluster.ClusterError,
                           match='has no worker; nothing was run'):
            w.run(executor=client, output_dir=str(tmp_path / 'out'), **OPTS)
