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

from ._run import RunControl


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
        self.slots = max(1, sum(client.nthreads().values()))
        self.shares_memory = False

    is_local = False

    def omp_threads(self, concurrent: int) -> int:
        """The cores per task slot of the most crowded worker host."""
        cores = self.client.run(os.cpu_count)
        threads = self.client.nthreads()
        per_host: dict[str, list[int]] = {}
        info = self.client.scheduler_info()['workers']
        for address, n in threads.items():
            host = info.get(address, {}).get('host', address)
            per_host.setdefault(host, [0, cores.get(address) or 1])
            per_host[host][0] += n
        return min(max(1, c // max(1, n)) for n, c in per_host.values())

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


def watch_dask_cancel(name: str, control: RunControl) -> threading.Event:
    """On a Dask worker: sets control's cancel flag once the client sets
    the Dask Event ``name``.  Returns the event that stops the watching."""
    from distributed import Event
    stop = threading.Event()
    event = Event(name)

    def watch() -> None:
        while not stop.is_set():
            try:
                if event.wait(timeout=0.5):
                    control.cancel_requested.set()
                    return
            except Exception:       # scheduler gone: nothing to watch
                return
    threading.Thread(target=watch, name='cplrun-cancel-watch',
                     daemon=True).start()
    return stop


def dask_worker() -> Any:
    """The Dask worker this code runs in, or None."""
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None
