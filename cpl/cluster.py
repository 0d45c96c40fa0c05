"""Running workflows on many machines, through Dask distributed.

:class:`DaskClusterManager` starts (or connects to) a Dask cluster: a
``LocalCluster`` on this machine, an existing scheduler, or SLURM jobs
through dask-jobqueue.  ``Workflow.run(executor=manager)`` then sends each
run to a Dask worker, where it goes through the same isolated recipe
process as locally.  We do not schedule anything ourselves: Dask places
the runs, the workflow only submits those whose inputs exist.

Settings that matter for recipes (pclean's lessons): the heavy memory use
is in C, out of Dask's sight, so ``memory_limit='0'`` (no pausing or
spilling of workers that merely look busy) and one thread per worker; a
recipe may run for hours in a C call, so the timeouts that would declare
a worker dead are long.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

#: Dask settings for long runs of C code in the workers.
DASK_CONFIG = {
    'distributed.comm.timeouts.connect': '120s',
    'distributed.comm.timeouts.tcp': '600s',
    'distributed.scheduler.worker-ttl': '1 hour',
    'distributed.scheduler.allowed-failures': 3,
    'distributed.worker.memory.target': False,
    'distributed.worker.memory.spill': False,
    'distributed.worker.memory.pause': False,
    'distributed.worker.memory.terminate': False,
    # Nannies put OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_ & co. into the
    # environment of their worker (which the recipes inherit) and of the
    # process the nanny runs in (ours, for a LocalCluster): none of that.
    'distributed.nanny.pre-spawn-environ': {},
}


def dask_config_exports() -> list[str]:
    """DASK_CONFIG as shell lines setting Dask's environment variables
    (``DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL='1 hour'``), for the job
    scripts of workers that do not inherit our configuration."""
    lines = []
    for key, value in DASK_CONFIG.items():
        name = 'DASK_' + '__'.join(part.upper().replace('-', '_')
                                   for part in key.split('.'))
        lines.append("export %s='%s'" % (name, value))
    return lines


def _jobqueue(name: str):
    """dask_jobqueue's ``name``.  Importing dask_jobqueue replaces the
    SIGINT handler with one calling sys.exit() (its runner module does),
    which would turn Ctrl-C into SystemExit for the whole program: the
    handler we had is put back."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        import dask_jobqueue
        return getattr(dask_jobqueue, name)
    saved = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue
        import dask_jobqueue.slurm
    finally:
        if saved is not None:
            signal.signal(signal.SIGINT, saved)
    return getattr(dask_jobqueue.slurm, name, None) or getattr(dask_jobqueue,
                                                                name)


class ClusterError(RuntimeError):
    """The cluster asked for cannot be started (SLURM refuses its jobs)."""


#: How long sbatch may take to judge a job script.
SBATCH_CHECK_SECONDS = 60.0


def _check_job_script(script: str) -> None:
    """Lets SLURM judge the job script before any job is submitted
    (``sbatch --test-only``): a partition, account or limit it refuses is
    a ClusterError with sbatch's own words, at once.  (Submitted for real,
    a refused job is only logged by Dask's event loop, and the workers
    are waited for in vain.)"""
    import subprocess
    try:
        proc = subprocess.run(['sbatch', '--test-only'], input=script,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True,
                              timeout=SBATCH_CHECK_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError('cannot ask SLURM about the worker jobs '
                           '(sbatch --test-only): %s' % exc) from exc
    if proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip()
                or 'exit status %d' % proc.returncode)
        raise ClusterError('SLURM refuses the worker jobs: %s'
                           % ' / '.join(said.splitlines()))


def _restore_environ(saved: dict) -> None:
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


class DaskClusterManager:
    """A Dask cluster for recipe runs, and a client connected to it.

    ``cluster_type``: ``'local'`` (a LocalCluster of ``nworkers`` worker
    processes on this machine, listening on loopback only), ``'address'``
    (the scheduler at ``scheduler_address``, which is used only because
    the caller gave it), or ``'slurm'`` (``nworkers`` SLURM jobs, one
    worker each, through dask-jobqueue's SLURMCluster; the ``slurm_*``
    options go into the job script).

    ``start()`` returns self; ``shutdown()`` closes the client and a
    cluster it started; it is a context manager too.  ``client`` is the
    :class:`distributed.Client`; ``worker_count`` asks the scheduler."""

    def __init__(self, nworkers: int | None = None,
                 scheduler_address: str | None = None,
                 threads_per_worker: int = 1, memory_limit: str = '0',
                 local_directory: str | None = None,
                 cluster_type: str = 'local', slurm_queue: str | None = None,
                 slurm_account: str | None = None,
                 slurm_walltime: str = '24:00:00',
                 slurm_job_mem: str | None = None,
                 slurm_cores_per_job: int = 1,
                 slurm_job_name: str | None = None,
                 slurm_job_extra_directives: Sequence[str] | None = None,
                 slurm_python: str | None = None,
                 slurm_local_directory: str | None = None,
                 slurm_log_directory: str = 'logs',
                 slurm_job_script_prologue: Sequence[str] | None = None,
                 wait_timeout: float = 120.0) -> None:
        if cluster_type not in ('local', 'address', 'slurm'):
            raise ValueError("cluster_type is 'local', 'address' or 'slurm', "
                             "not %r" % cluster_type)
        if cluster_type == 'address' and not scheduler_address:
            raise ValueError("cluster_type='address' needs scheduler_address")
        if scheduler_address and cluster_type == 'local':
            cluster_type = 'address'
        self.cluster_type = cluster_type
        self.nworkers = nworkers
        self.scheduler_address = scheduler_address
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.local_directory = local_directory
        self.slurm = dict(
            queue=slurm_queue, account=slurm_account, walltime=slurm_walltime,
            memory=slurm_job_mem, cores=slurm_cores_per_job,
            job_name=slurm_job_name,
            job_extra_directives=list(slurm_job_extra_directives or []),
            python=slurm_python, local_directory=slurm_local_directory,
            log_directory=slurm_log_directory,
            job_script_prologue=list(slurm_job_script_prologue or []))
        self.wait_timeout = wait_timeout
        self.cluster: Any = None
        self.client: Any = None

    # -- life cycle
    def start(self) -> 'DaskClusterManager':
        import dask
        from distributed import Client
        dask.config.set(DASK_CONFIG)
        if self.cluster_type == 'local':
            from distributed import LocalCluster
            # Its nannies run in this process and set variables of ours
            # (PYTHONHASHSEED, ...) that our own recipe runs would inherit.
            saved = dict(os.environ)
            try:
                self.cluster = LocalCluster(
                    n_workers=self.nworkers or 1,
                    threads_per_worker=self.threads_per_worker,
                    memory_limit=self.memory_limit, processes=True,
                    host='127.0.0.1', dashboard_address='127.0.0.1:0',
                    local_directory=self.local_directory)
            finally:
                _restore_environ(saved)
            self.client = Client(self.cluster)
        elif self.cluster_type == 'slurm':
            self.cluster = self._slurm_cluster()
            try:
                _check_job_script(self.cluster.job_script())
            except BaseException:
                self.shutdown()
                raise
            self.client = Client(self.cluster)
            if self.nworkers:
                self.cluster.scale(self.nworkers)
        else:
            self.client = Client(self.scheduler_address,
                                 timeout=self.wait_timeout)
        if self.nworkers:
            self._wait_for_workers()
        link = getattr(self.client, 'dashboard_link', None)
        if link:
            print('Dask dashboard: %s' % link)
        return self

    def _slurm_options(self) -> dict:
        """SLURMCluster's keywords (and its job class's): one worker
        process per job, ``threads_per_worker`` threads, no memory limit
        (the job's memory is SLURM's business)."""
        options = {k: v for k, v in self.slurm.items() if v not in (None, [])}
        options.setdefault('memory', '%dGB' % (4 * self.slurm['cores']))
        # The workers in the jobs get our settings too, through Dask's
        # environment variables, before the caller's own prologue lines.
        options['job_script_prologue'] = dask_config_exports() + \
            self.slurm['job_script_prologue']
        # Later options win: these override what jobqueue derives from
        # cores and memory.
        options['worker_extra_args'] = [
            '--nthreads', str(self.threads_per_worker),
            '--memory-limit', str(self.memory_limit)]
        return dict(options, processes=1)

    def _slurm_cluster(self):
        return _jobqueue('SLURMCluster')(**self._slurm_options())

    def job_script(self) -> str:
        """The SLURM job script the options make (cluster_type 'slurm');
        before start() it names no real scheduler, and starts none."""
        if self.cluster_type != 'slurm':
            raise ValueError('only SLURM clusters have a job script')
        if self.cluster is not None:
            return self.cluster.job_script()
        job = _jobqueue('SLURMJob')
        return job(scheduler='tcp://<scheduler-address>:8786',
                   name='dummy-name', **self._slurm_options()).job_script()

    def _wait_for_workers(self) -> None:
        try:
            self.client.wait_for_workers(self.nworkers,
                                         timeout=self.wait_timeout)
        except Exception:       # TimeoutError of various origins
            pass
        if self.worker_count < self.nworkers:
            warnings.warn('only %d of the %d Dask workers asked for have '
                          'arrived after %g s' % (self.worker_count,
                                                  self.nworkers,
                                                  self.wait_timeout))

    def shutdown(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def __enter__(self) -> 'DaskClusterManager':
        return self.start() if self.client is None else self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    @property
    def worker_count(self) -> int:
        """Workers the scheduler knows now (asked, not remembered)."""
        if self.client is None:
            return 0
        return len(self.client.nthreads())

    @property
    def dashboard_link(self) -> str | None:
        return getattr(self.client, 'dashboard_link', None)
