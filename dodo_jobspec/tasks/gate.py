"""Slots for local tasks: most take one, a task bigger than the machine takes all of them.

First come, first served: a task waiting for every slot is not overtaken by small tasks
that keep arriving, so it cannot starve. Once closed (an interrupt), every waiter and every
later caller gets GateClosed instead of a slot: nothing starts after a Ctrl-C.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class GateClosed(Exception):
    """The run was interrupted while a task waited for a slot: it must not start."""


class SlotGate:
    """A FIFO counting gate of ``capacity`` slots."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.free = self.capacity
        self.cond = threading.Condition()
        self.queue: deque[object] = deque()
        self.closed = False

    def close(self) -> None:
        """Refuse every slot from now on, waking whoever waits for one."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    @contextmanager
    def hold(self, slots: int) -> Iterator[None]:
        """Hold ``slots`` (at most the capacity) for the duration of the block."""
        n = min(max(1, slots), self.capacity)
        ticket = object()
        with self.cond:
            self.queue.append(ticket)
            while not self.closed and (self.queue[0] is not ticket or self.free < n):
                self.cond.wait()
            if self.closed:
                self.queue.remove(ticket)
                raise GateClosed
            self.queue.popleft()
            self.free -= n
            self.cond.notify_all()
        try:
            yield
        finally:
            with self.cond:
                self.free += n
                self.cond.notify_all()
