"""One status query for all jobs in flight, instead of one per waiting thread.

With a batch scheduler, every running unit waits on a job. Asking the scheduler once per
interval about all of them keeps the load on slurmctld (or the Flux broker) flat however many
jobs are in flight.
"""

from __future__ import annotations

import threading
import time

from ..transformers.base import JobState, JobStatus, Transformer


class Poller:
    """Waits for jobs by polling ``transformer.status`` in batches from one thread."""

    def __init__(self, transformer: Transformer, interval: float = 1.0) -> None:
        self.transformer = transformer
        self.interval = interval
        self.cond = threading.Condition()
        self.waiting: dict[str, JobStatus | None] = {}
        self.thread: threading.Thread | None = None
        self.stopped = False

    def wait(self, job_id: str) -> JobStatus:
        """Block until ``job_id`` is terminal; return its final status."""
        with self.cond:
            self.waiting[job_id] = None
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="poller", daemon=True)
                self.thread.start()
            self.cond.notify_all()
            while self.waiting.get(job_id) is None and not self.stopped:
                self.cond.wait()
            status = self.waiting.pop(job_id, None)
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
            with self.cond:
                for job_id, status in found.items():
                    if status.state.terminal and job_id in self.waiting:
                        self.waiting[job_id] = status
                self.cond.notify_all()
            time.sleep(delay)
            delay = min(delay * 1.5, self.interval)
