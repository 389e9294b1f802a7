"""Slots for local tasks: most take one, a task bigger than the machine takes all of them.

First come, first served: a task waiting for every slot is not overtaken by small tasks
that keep arriving, so it cannot starve.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class SlotGate:
    """A FIFO counting gate of ``capacity`` slots."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.free = self.capacity
        self.cond = threading.Condition()
        self.queue: deque[object] = deque()

    @contextmanager
    def hold(self, slots: int) -> Iterator[None]:
        """Hold ``slots`` (at most the capacity) for the duration of the block."""
        n = min(max(1, slots), self.capacity)
        ticket = object()
        with self.cond:
            self.queue.append(ticket)
            while self.queue[0] is not ticket or self.free < n:
                self.cond.wait()
            self.queue.popleft()
            self.free -= n
            self.cond.notify_all()
        try:
            yield
        finally:
            with self.cond:
                self.free += n
                self.cond.notify_all()
