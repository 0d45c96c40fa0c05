"""Where the runs of a workflow execute: this machine's threads, any
:class:`concurrent.futures.Executor`, or a Dask cluster.

Each backend submits :func:`cpl.parallel.run_task` calls, waits for the
first to finish, turns what comes back (or how it failed) into an outcome
dict, and can cancel a run, killing its recipe process wherever it is."""
from __future__ import annotations

import concurrent.futures
import os
import threading
import uuid
from typing import Any, Callable, Iterable

from .._run import RunControl
from ..cluster import ClusterError


class LocalBackend:
    """Threads of this process, one per run going; each run's recipe
    process is a child of this process's runner."""

    def __init__(self, run_task: Callable, slots: int,
                 executor: concurrent.futures.Executor | None = None) -> None:
        self.run_task = run_task
        self.slots = slots
        self.owned = executor is None
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=slots, thread_name_prefix='cplrun-run')
        # Controls reach a run only when it runs in one of our threads.
        self.shares_memory = isinstance(
            self.executor, concurrent.futures.ThreadPoolExecutor)
        self.controls: dict[Any, RunControl] = {}

    #: runs use this machine's memory (checked by the pre-flight)
    is_local = True

    def omp_threads(self, concurrent: int) -> int:
        """OpenMP threads per run when concurrent runs share the cores."""
        return max(1, (os.cpu_count() or 1) // max(1, concurrent))

    def submit(self, task: dict) -> Any:
        if self.shares_memory:
            control = RunControl()
            fut = self.executor.submit(self.run_task, task, control)
            self.controls[fut] = control
        else:
            fut = self.executor.submit(self.run_task, task)
        return fut

    def wait(self, handles: Iterable[Any], timeout: float) -> set:
        done, _ = concurrent.futures.wait(
            list(handles), timeout=timeout,
            return_when=concurrent.futures.FIRST_COMPLETED)
        return done

    def outcome(self, handle: Any, timeout: float | None = None) -> dict:
        try:
            return handle.result(timeout=timeout)
        except concurrent.futures.CancelledError:
            return {'status': 'cancelled', 'error': 'cancelled'}
        finally:
            self.controls.pop(handle, None)

    def cancel(self, handle: Any) -> None:
        control = self.controls.get(handle)
        if control is not None:
            control.cancel_requested.set()
        handle.cancel()

    def last_message(self, handle: Any) -> str | None:
        control = self.controls.get(handle)
        return control.last_message if control is not None else None

    def close(self) -> None:
        if self.owned:
            self.executor.shutdown(wait=True)


class DaskBackend:
    """A Dask cluster: each run is a task on a worker, where it goes
    through the worker's own recipe runner.  Cancelling sets a Dask Event
    that the task watches, so the recipe process on the worker is killed
    (Dask itself cannot stop a running task)."""

    def __init__(self, run_task: Callable, client: Any) -> None:
        self.run_task = run_task
        self.client = client
        threads = client.nthreads()
        if not threads:
            # runs would wait for ever (and have no worker to size for)
            raise ClusterError('the Dask cluster at %s has no worker; '
                               'nothing was run' % (
                                   getattr(client.scheduler, 'address',
                                           None) or 'its scheduler'))
        self.slots = sum(threads.values())
        self.shares_memory = False
        #: keys of runs whose cancel Event was set
        self.cancelled: set[str] = set()

    is_local = False

    def omp_threads(self, concurrent: int) -> int:
        """The cores per task slot of the most crowded worker: the cores a
        worker may use (its SLURM job's, else its CPU affinity) shared by
        the task slots of all workers using the same cores."""
        # a worker that cannot answer counts as one core of its own
        cores = self.client.run(_worker_cores, on_error='ignore')
        threads = self.client.nthreads()
        per_group: dict[str, list[int]] = {}
        for address, n in threads.items():
            count, group = cores.get(address) or (1, address)
            per_group.setdefault(group, [0, count])
            per_group[group][0] += n
        return min(max(1, c // max(1, n)) for n, c in per_group.values())

    def submit(self, task: dict) -> Any:
        key = 'cplrun-%s-%s' % (task['name'], uuid.uuid4().hex[:12])
        task = dict(task, cancel_event=key, on_dask=True)
        return self.client.submit(self.run_task, task, key=key, pure=False)

    def wait(self, handles: Iterable[Any], timeout: float) -> set:
        from distributed import wait
        handles = list(handles)
        try:
            done, _ = wait(handles, timeout=timeout,
                           return_when='FIRST_COMPLETED')
        except TimeoutError:
            return set()
        return set(done)

    def outcome(self, handle: Any, timeout: float | None = None) -> dict:
        from distributed import KilledWorker
        if handle.key in self.cancelled:
            # the scheduler forgets the event of a run that is over
            self.cancelled.discard(handle.key)
            try:
                from distributed import Event
                Event(handle.key, client=self.client).clear()
            except Exception:
                pass
        try:
            return handle.result(timeout=timeout)
        except KilledWorker as exc:
            return {'status': 'crashed',
                    'error': 'the Dask workers running it died: %s' % exc}
        except concurrent.futures.CancelledError:
            return {'status': 'cancelled', 'error': 'cancelled'}
        except Exception as exc:        # the task failed outside run_task
            return {'status': 'crashed',
                    'error': 'the Dask task failed: %s: %s'
                             % (type(exc).__name__, exc)}

    def cancel(self, handle: Any) -> None:
        from distributed import Event
        Event(handle.key, client=self.client).set()
        self.cancelled.add(handle.key)

    def last_message(self, handle: Any) -> str | None:
        return None

    def close(self) -> None:
        pass


def backend_for(executor: Any, run_task: Callable, slots: int | None):
    """The backend for ``Workflow.run(executor=...)``: None (this machine),
    a concurrent.futures Executor, a :class:`cpl.cluster.DaskClusterManager`
    or a :class:`distributed.Client`."""
    if executor is None:
        return LocalBackend(run_task, slots or os.cpu_count() or 1)
    client = getattr(executor, 'client', None) if not _is_dask_client(
        executor) else executor
    if client is not None and _is_dask_client(client):
        return DaskBackend(run_task, client)
    if isinstance(executor, concurrent.futures.Executor):
        return LocalBackend(run_task, slots or os.cpu_count() or 1, executor)
    raise TypeError('executor must be None, a concurrent.futures.Executor, '
                    'a cpl.cluster.DaskClusterManager or a distributed.Client,'
                    ' not %r' % (executor,))


def _is_dask_client(obj: Any) -> bool:
    try:
        from distributed import Client
    except ImportError:
        return False
    return isinstance(obj, Client)


#: How often a run on a Dask worker asks whether it was cancelled.
CANCEL_POLL_SECONDS = 0.5


class _CancelWatch:
    """The thread that watches a Dask Event for a run; ``set()`` stops it
    (and waits for it, so that no request of it outlives the run)."""

    def __init__(self, name: str, control: RunControl) -> None:
        from distributed import Event, get_client
        self._stop = threading.Event()
        # The task's thread knows its worker's client; the watching thread
        # does not, so the Event must be given it.
        self._event = Event(name, client=get_client())
        self._control = control
        self._thread = threading.Thread(target=self._watch,
                                        name='cplrun-cancel-watch',
                                        daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        # is_set(), not a waiting wait(): it leaves nothing pending on the
        # scheduler (nor an event in its memory) when the run ends.
        # At once (a run cancelled before it started is stopped within
        # milliseconds, off the run's own path), then every so often.
        while not self._check():
            if self._stop.wait(CANCEL_POLL_SECONDS):
                return

    def _check(self) -> bool:
        try:
            if self._event.is_set():
                self._control.cancel_requested.set()
                return True
        except Exception:       # scheduler unreachable now: ask again
            pass
        return False

    def set(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(10)


def watch_dask_cancel(name: str, control: RunControl) -> _CancelWatch:
    """On a Dask worker: sets control's cancel flag once the client sets
    the Dask Event ``name``.  Returns what stops the watching (``set()``)."""
    return _CancelWatch(name, control)


def _worker_cores() -> tuple[int, str]:
    """On a worker: (the cores it may use, what it shares them with).
    Workers of one SLURM job share the job's cores; others, the host's."""
    import socket
    host = socket.gethostname()
    job = os.environ.get('SLURM_JOB_ID')
    per_task = os.environ.get('SLURM_CPUS_PER_TASK')
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if job and per_task and per_task.isdigit():
        return min(cores, int(per_task)), '%s/slurm-%s' % (host, job)
    return cores, host


def dask_worker() -> Any:
    """The Dask worker this code runs in, or None."""
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None
