"""doit's runner for local processes: one thread starts tasks and waits on all of them at once.

doit's threaded runner gives every running task a thread that blocks in ``wait``. With
trivial tasks, the work is then the handoffs: doit's dispatching thread and the workers pass
each task through two queues and take turns at the GIL, about eleven context switches per
task. Here the main thread does what a Make does: it starts a task's process, registers the
process's pidfd, and takes the next ready task; when a slot is wanted it polls the pidfds,
records each ended job and tells doit's dispatcher. doit still decides everything else: the
order (its TaskDispatcher), what is up to date (``select_task``), and what is saved
(``process_task_result``).

A unit's action is resumable (``UnitRunner.begin``): it yields the job id it waits for and is
sent the job's final status. Any other action (a staging step, a replicated task's closing
record) runs in line, as doit's sequential runner would run it.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from doit.cmd_run import Run
from doit.control import TaskControl
from doit.doit_cmd import DoitMain
from doit.exceptions import TaskError, TaskFailed
from doit.runner import Runner
from doit.task import Stream

from ..tasks.unit import Attempt, Outcome
from ..transformers.base import JobStatus

PAR_TYPE = "event"  # doit's --parallel-type that selects this runner


class Resumable(Protocol):
    """A doit action the event runner can drive (engine/loader.py's unit actions)."""

    def begin(self) -> Attempt: ...

    def slots(self) -> int: ...


class Watcher(Protocol):
    """What the runner needs of a transformer (transformers/local.py)."""

    def watch(self, job_id: str) -> tuple[int, float | None]: ...

    def wait(self, job_id: str) -> JobStatus: ...

    def expire(self, job_id: str) -> JobStatus: ...

    def cancel(self, job_ids: list[str]) -> None: ...


def available() -> bool:
    """Whether this kernel gives pidfds (Linux 5.3): without them, doit's threaded runner."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


@dataclass
class _Job:
    node: Any  # doit's ExecNode
    steps: Attempt
    job_id: str
    slots: int
    deadline: float | None


class EventRunner(Runner):  # type: ignore[misc]
    """doit's Runner with ``capacity`` local slots shared by tasks whose processes overlap."""

    def __init__(self, dep_manager: Any, reporter: Any, continue_: bool = False,
                 always_execute: bool = False, stream: Stream | None = None, *,
                 capacity: int, transformer: Watcher, interrupted: threading.Event) -> None:
        super().__init__(dep_manager, reporter, continue_, always_execute, stream)
        self.capacity = max(1, capacity)
        self.free = self.capacity
        self.transformer = transformer
        self.interrupted = interrupted
        self.poll = select.poll()
        self.jobs: dict[int, _Job] = {}  # by pidfd
        self.ended: deque[Any] = deque()  # nodes finished, not yet told to the dispatcher
        self._held = False  # the dispatcher said "hold on": nothing is ready until a job ends

    def run_tasks(self, task_dispatcher: Any) -> None:
        dispatch, tasks = task_dispatcher.generator, task_dispatcher.tasks
        try:
            while not self._stop_running:
                if not self.ended and self.jobs and self._held:
                    self._wait()
                try:
                    node = dispatch.send(self.ended.popleft() if self.ended else None)
                except StopIteration:
                    break
                self._held = node == "hold on"
                if self._held:
                    continue
                if self.select_task(node, tasks):
                    self._start(node)
                else:
                    self.ended.append(node)  # up to date, ignored or failed: settled
            while self.jobs:  # after the last start, or a failure without --continue
                self._wait()
        except KeyboardInterrupt:
            self._interrupt()
            raise

    def _start(self, node: Any) -> None:
        task = node.task
        action = task.actions[0] if len(task.actions) == 1 else None
        if not hasattr(action, "begin"):
            self.process_task_result(node, self.execute_task(task))
            self.ended.append(node)
            return
        need = min(action.slots(), self.capacity)
        while self.free < need:  # first come, first served: a big task is not overtaken
            self._wait()
        if task.teardown:
            self.teardown_list.append(task)
        self.reporter.execute_task(task)
        task.executed = True
        self._advance(node, action.begin(), None, need)

    def _advance(self, node: Any, steps: Attempt, status: JobStatus | None, slots: int) -> None:
        """Resume a unit's attempt until it waits for a job (registered) or ends (settled)."""
        try:
            job_id = next(steps) if status is None else steps.send(status)
        except StopIteration as end:
            self._settle(node, end.value)
            return
        except Exception as exc:  # as doit's action wrapper: the task errs, the run goes on
            self._settle(node, TaskError("PythonAction Error", exc))
            return
        try:
            fd, limit = self.transformer.watch(job_id)
        except BaseException as exc:
            steps.close()
            self._settle(node, TaskError("PythonAction Error", exc))
            return
        deadline = None if limit is None else time.monotonic() + limit
        self.jobs[fd] = _Job(node, steps, job_id, slots, deadline)
        self.poll.register(fd, select.POLLIN)
        self.free -= slots

    def _settle(self, node: Any, result: Outcome | TaskError) -> None:
        if isinstance(result, Outcome):
            result = None if result.ok else TaskFailed(result.message or "failed")
        self.process_task_result(node, result)
        self.ended.append(node)

    def _wait(self) -> None:
        """Block until at least one running job ends (or outlives its time limit); resume its
        attempt with the job's status."""
        deadlines = [j.deadline for j in self.jobs.values() if j.deadline is not None]
        timeout = None
        if deadlines:
            timeout = max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)
        ready = {fd for fd, _ in self.poll.poll(timeout)}
        now = time.monotonic()
        expired = [fd for fd, j in self.jobs.items()
                   if fd not in ready and j.deadline is not None and j.deadline <= now]
        for fd in (*ready, *expired):
            job = self._forget(fd)
            self.free += job.slots
            status = (self.transformer.wait if fd in ready else self.transformer.expire)(
                job.job_id)
            self._advance(job.node, job.steps, status, job.slots)

    def _forget(self, fd: int) -> _Job:
        job = self.jobs.pop(fd)
        self.poll.unregister(fd)
        os.close(fd)
        return job

    def _interrupt(self) -> None:
        """Ctrl-C or SIGTERM: stop every running job and have each attempt record it."""
        self.interrupted.set()
        jobs = [self._forget(fd) for fd in list(self.jobs)]
        if jobs:
            self.transformer.cancel([j.job_id for j in jobs])
        for job in jobs:
            with contextlib.suppress(KeyboardInterrupt, StopIteration):
                job.steps.throw(KeyboardInterrupt())  # the attempt records it, and re-raises
            self.transformer.wait(job.job_id)  # reaped already: forgets it


class _EventRun(Run):  # type: ignore[misc]
    """doit's `run` command, with ``-P event`` selecting the EventRunner."""

    capacity = 1
    transformer: Watcher
    interrupted: threading.Event

    def _execute(self, outfile: Any, verbosity: Any = None, always: bool = False,
                 continue_: bool = False, reporter: Any = "console", num_process: int = 0,
                 par_type: str = "process", single: bool = False,
                 auto_delayed_regex: bool = False, force_verbosity: bool = False,
                 failure_verbosity: int = 0, pdb: bool = False) -> int:
        # doit passes the options this signature names: it reads the parameter names.
        if par_type != PAR_TYPE:
            return super()._execute(  # type: ignore[no-any-return]
                outfile, verbosity, always, continue_, reporter, num_process, par_type,
                single, auto_delayed_regex, force_verbosity, failure_verbosity, pdb)
        # As doit's own _execute, minus what a jobspec-do run never asks for (single, pdb,
        # a reporter by name, an output file): the reporter is an instance.
        self.control = TaskControl(self.task_list, auto_delayed_regex=auto_delayed_regex)
        self.control.process(self.sel_tasks)
        runner = EventRunner(self.dep_manager, reporter, continue_, always,
                             Stream(verbosity, force_verbosity), capacity=self.capacity,
                             transformer=self.transformer, interrupted=self.interrupted)
        return runner.run_all(self.control.task_dispatcher())  # type: ignore[no-any-return]


def doit_main(loader: Any, extra_config: dict[str, Any], *, capacity: int,
              transformer: Watcher, interrupted: threading.Event) -> DoitMain:
    """A DoitMain whose `run` command knows ``-P event`` (doit picks runners by name only)."""
    run_cmd = type("Run", (_EventRun,), {"capacity": capacity, "transformer": transformer,
                                         "interrupted": interrupted})

    class Main(DoitMain):  # type: ignore[misc]
        BIN_NAME = "jobspec-do"

        def get_cmds(self) -> Any:
            cmds = super().get_cmds()
            cmds["run"] = run_cmd
            return cmds

    return Main(loader, config_filenames=(), extra_config=extra_config)
