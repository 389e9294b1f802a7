"""One status query for all jobs in flight, instead of one per waiting thread.

With a batch scheduler, every running unit waits on a job. Asking the scheduler once per
interval about all of them keeps the load on slurmctld (or the Flux broker) flat however many
jobs are in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..transformers.base import JobState, JobStatus, Transformer


class Poller:
    """Waits for jobs by polling ``transformer.status`` in batches from one thread."""

    def __init__(self, transformer: Transformer, interval: float = 1.0) -> None:
        self.transformer = transformer
        self.interval = interval
        self.cond = threading.Condition()
        self.waiting: dict[str, JobStatus | None] = {}
        # Who hears of a job's placement (nodes, start) while it runs, and what they heard.
        self.news: dict[str, Callable[[JobStatus], None]] = {}
        self.told: dict[str, tuple[str, float | None]] = {}
        self.thread: threading.Thread | None = None
        self.stopped = False

    def wait(self, job_id: str, news: Callable[[JobStatus], None] | None = None) -> JobStatus:
        """Block until ``job_id`` is terminal; return its final status. ``news`` is called
        (from the polling thread, before the wait returns) with each status on the way whose
        placement (``where``, ``started``) is new: learnt from the same batched query."""
        with self.cond:
            self.waiting[job_id] = None
            if news is not None:
                self.news[job_id] = news
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="poller", daemon=True)
                self.thread.start()
            self.cond.notify_all()
            while self.waiting.get(job_id) is None and not self.stopped:
                self.cond.wait()
            status = self.waiting.pop(job_id, None)
            self.news.pop(job_id, None)
            self.told.pop(job_id, None)
        return status or JobStatus(JobState.CANCELED, None, "interrupted")

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def _loop(self) -> None:
        delay = min(0.2, self.interval)  # short jobs: answer fast, then back off
        while True:
            with self.cond:
                while not self.stopped and not any(v is None for v in self.waiting.values()):
                    self.cond.wait()
                    delay = min(0.2, self.interval)
                if self.stopped:
                    return
                ids = [k for k, v in self.waiting.items() if v is None]
            try:
                found = self.transformer.status(ids)
            except Exception as exc:
                found = {}
                print(f"jobspec-do: status query failed, retrying: {exc}")
            self._tell(found)
            with self.cond:
                for job_id, status in found.items():
                    if status.state.terminal and job_id in self.waiting:
                        self.waiting[job_id] = status
                self.cond.notify_all()
            time.sleep(delay)
            delay = min(delay * 1.5, self.interval)

    def _tell(self, found: dict[str, JobStatus]) -> None:
        """Pass new placements of running jobs on; outside the lock (they write records),
        and before any terminal status is published, so a waiter's record is written by one
        thread at a time."""
        with self.cond:
            due = []
            for job_id, status in found.items():
                hear = self.news.get(job_id)
                placed = (status.where, status.started)
                if hear is not None and not status.state.terminal and any(placed) \
                        and self.told.get(job_id) != placed:
                    self.told[job_id] = placed
                    due.append((hear, status))
        for hear, status in due:
            try:
                hear(status)
            except Exception as exc:  # a record not written now is written at the end
                print(f"jobspec-do: could not record where a job runs: {exc}")
