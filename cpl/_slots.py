"""The bound on how many recipe processes this process runs at once
(:meth:`cpl.Recipe.set_maxthreads`).

Every run takes a slot before it makes its folder or starts its process
(:func:`cpl._run.execute`), whatever called it: a call, a threaded call,
``Recipe.map``, a workflow run on this process's threads.  A thread holds
at most one slot: a run inside a call that already has one (a synchronous
call waits for its slot before it runs; a threaded call starts its thread
when it has one) uses that one, so nothing waits for a slot its own thread
holds.  A forked child starts with its own slots, all free."""
from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any

#: How often a run waiting for its slot looks whether it was cancelled.
CANCEL_POLL_SECONDS = 0.2


class Slots:
    """At most ``limit`` calls run at once; the rest wait in FIFO order.

    A waiting call is a ticket with a ``grant()`` method (start the thread,
    or wake the caller) and a ``withdrawn`` flag (cancelled meanwhile)."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._running = 0
        self._queue: deque = deque()

    def set_limit(self, limit: int) -> None:
        if int(limit) < 1:
            raise ValueError('at least one recipe must be allowed to run, '
                             'not %r' % limit)
        with self._lock:
            self._limit = int(limit)
        self._dispatch()

    def enter(self, ticket: Any) -> None:
        with self._lock:
            self._queue.append(ticket)
        self._dispatch()

    def withdraw(self, ticket: Any) -> bool:
        """Takes a waiting ticket out of the queue: True, or False when it
        was granted meanwhile (it then holds a slot, to leave)."""
        with self._lock:
            try:
                self._queue.remove(ticket)
            except ValueError:
                return False
            return True

    def leave(self) -> None:
        with self._lock:
            self._running -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        granted = []
        with self._lock:
            while self._running < self._limit and self._queue:
                ticket = self._queue.popleft()
                if not ticket.withdrawn:
                    self._running += 1
                    granted.append(ticket)
        for ticket in granted:
            ticket.grant()

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's runs and waiting calls are not
        the child's; only the forking thread's slot, if it holds one, is."""
        self._lock = threading.Lock()
        self._running = 1 if holds_slot() else 0
        self._queue = deque()


slots = Slots(65536)
os.register_at_fork(after_in_child=lambda: slots.reset_after_fork())

_holder = threading.local()


def holds_slot() -> bool:
    """Whether the current thread holds a slot."""
    return getattr(_holder, 'held', False)


class HeldSlot:
    """Marks the current thread as holding the slot it was granted, and
    leaves it at the end of the block."""

    def __enter__(self) -> 'HeldSlot':
        _holder.held = True
        return self

    def __exit__(self, *exc: Any) -> None:
        _holder.held = False
        slots.leave()


class SlotWait:
    """Waits for a slot for the current thread (none when it holds one),
    and leaves it at the end of the block.

    With a cancel event, the wait ends when it is set: ``granted`` is then
    False and the block must not run anything."""

    #: a waiting SlotWait leaves the queue only through Slots.withdraw
    withdrawn = False

    def __init__(self, cancel: threading.Event | None = None) -> None:
        self.granted = False
        self._cancel = cancel
        self._event = threading.Event()
        self._held: HeldSlot | None = None

    def grant(self) -> None:
        self._event.set()

    def __enter__(self) -> 'SlotWait':
        if holds_slot():
            self.granted = True
            return self
        slots.enter(self)
        timeout = CANCEL_POLL_SECONDS if self._cancel is not None else None
        try:
            while not self._event.wait(timeout):
                if self._cancel.is_set():
                    break
        except BaseException:
            self._give_up()
            raise
        if not self._event.is_set():
            self._give_up()
            return self
        self.granted = True
        self._held = HeldSlot().__enter__()
        return self

    def _give_up(self) -> None:
        if not slots.withdraw(self):
            slots.leave()           # granted meanwhile

    def __exit__(self, *exc: Any) -> None:
        if self._held is not None:
            self._held.__exit__(*exc)
