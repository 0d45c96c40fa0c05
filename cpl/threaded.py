"""Background recipe calls (the bound on how many run at once is in
:mod:`cpl._slots`).

A call with ``threaded=True`` returns a :class:`RecipeThread` at once.  It
is a :class:`threading.Thread` and behaves like a
:class:`concurrent.futures.Future`: a small state machine (pending,
running, finished or cancelled).  Until its turn under
:meth:`cpl.Recipe.set_maxthreads` it holds no OS thread, no folder and no
process, only its arguments."""
from __future__ import annotations

import threading
from concurrent.futures import CancelledError
from typing import Any, Callable

from ._run import Cancelled, RunControl, RunSpec, execute
# recipe.py imports SlotWait and slots from here
from ._slots import HeldSlot, SlotWait, slots  # noqa: F401

PENDING, RUNNING, FINISHED, CANCELLED = 'pending', 'running', 'finished', \
    'cancelled'


class RecipeThread(threading.Thread):
    """A recipe call running in the background.

    Touching a product attribute (``t.MASTER_BIAS``), indexing or iterating
    waits for the end and raises the recipe's error there.  Also
    :meth:`result`, :meth:`exception`, :meth:`done`, :meth:`cancel`,
    :meth:`cancelled`, :meth:`running`, :meth:`add_done_callback` as on a
    :class:`concurrent.futures.Future`, and :meth:`join`, which works
    before the thread had its turn too."""

    def __init__(self, spec: RunSpec) -> None:
        super().__init__(name='cplrun-%s' % spec.recipe, daemon=True)
        self._spec = spec
        self._control = RunControl()
        self._state = PENDING
        self._condition = threading.Condition()
        self._value = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable] = []
        slots.enter(self)

    # Slots ticket protocol
    @property
    def withdrawn(self) -> bool:
        return self._state == CANCELLED

    def grant(self) -> None:
        self.start()

    def run(self) -> None:
        with self._condition:
            if self._state != PENDING:
                slots.leave()
                return
            self._state = RUNNING
        value = error = None
        state = FINISHED
        try:
            with HeldSlot():
                value = execute(self._spec, self._control)
        except Cancelled:
            state = CANCELLED
        except BaseException as exc:        # re-raised in the caller's thread
            error = exc
        finally:
            self._spec = None               # free the arguments early
            self._settle(state, value, error)

    def _settle(self, state: str, value: Any, error: BaseException | None
                ) -> None:
        with self._condition:
            self._state, self._value, self._error = state, value, error
            callbacks, self._callbacks = self._callbacks, []
            self._condition.notify_all()
        for fn in callbacks:
            fn(self)

    def cancel(self) -> bool:
        """Cancels the call: a waiting one never starts, a running one is
        killed (with everything it started).  False if it had finished."""
        with self._condition:
            if self._state == FINISHED:
                return False
            if self._state == CANCELLED:
                return True
            if self._state == RUNNING:
                # Waits for the kill (a few tenths of a second; SIGKILL
                # after TERMINATE_GRACE_SECONDS), so that, as on a Future,
                # True means cancelled() and done() are true now.  A run
                # that finished meanwhile keeps its result: False.
                self._control.cancel_requested.set()
                self._condition.wait_for(self.done)
                return self._state == CANCELLED
        self._settle(CANCELLED, None, None)
        return True

    def cancelled(self) -> bool:
        return self._state == CANCELLED

    def running(self) -> bool:
        return self._state == RUNNING

    def done(self) -> bool:
        return self._state in (FINISHED, CANCELLED)

    @property
    def last_message(self) -> str | None:
        """The latest log message of the running recipe."""
        return self._control.last_message

    def _wait(self, timeout: float | None) -> None:
        with self._condition:
            if not self._condition.wait_for(self.done, timeout):
                raise TimeoutError('recipe %s still running after %s s'
                                   % (self.name[7:], timeout))

    def join(self, timeout: float | None = None) -> None:
        with self._condition:
            self._condition.wait_for(self.done, timeout)

    def result(self, timeout: float | None = None) -> Any:
        """The :class:`cpl.Result`, waiting up to timeout seconds."""
        self._wait(timeout)
        if self._state == CANCELLED:
            raise CancelledError()
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        if self._state == CANCELLED:
            raise CancelledError()
        return self._error

    def add_done_callback(self, fn: Callable[['RecipeThread'], Any]) -> None:
        with self._condition:
            if not self.done():
                self._callbacks.append(fn)
                return
        fn(self)

    def __getattr__(self, name: str) -> Any:
        if name.startswith('_'):
            raise AttributeError(name)
        return getattr(self.result(), name)

    def __getitem__(self, key: str) -> Any:
        return self.result()[key]

    def __contains__(self, key: str) -> bool:
        return key in self.result()

    def __len__(self) -> int:
        return len(self.result())

    def __iter__(self):
        return iter(self.result())

    def __repr__(self) -> str:
        return '<RecipeThread %s %s>' % (self.name[7:], self._state)
