"""What a transformer is: the contract between the engine and a workload manager.

A transformer turns one *unit* (a task, or for batch schedulers a whole group) into a job on its
workload manager, tells the engine how that job is doing, and cancels it. It keeps no state of its
own: the engine records job ids on disk and hands them back, so a killed run can re-attach.

The engine calls, for each unit whose dependencies are done:
    ``find(unit, ctx)``   (only when a previous attempt recorded an intent but no job id)
    ``prepare(unit, ctx)`` (--no-wait runs: ahead of submit, before the jobs it waits on
                          have ids)
    ``submit(unit, ctx)`` -> job id, which the engine records before anything else
                          (in --no-wait runs ``submit_many`` for a batch of ready units, or
                          ``start_submit`` for one; they record an id once the next unit is on
                          its way: the intent, recorded before, finds the job by token)
    ``status([ids])``     in batches until the job is terminal (or ``wait(id)`` if not polled)
and ``cancel([ids])`` on Ctrl-C or `jobspec-do cancel`.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from ..errors import PluginError, Problem
from ..spec.model import Resource, ResourceRequest, Spec, Task, Unit


class JobState(StrEnum):
    """Engine-level job states; every workload manager's states map onto these."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    LOST = "lost"  # vanished from every source the transformer can ask

    @property
    def terminal(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class JobStatus:
    """What a transformer knows about one job."""

    state: JobState
    exit_code: int | None = None
    info: str = ""
    # Where the job runs or ran, as its workload manager names it (a host name, a Slurm node
    # list, Flux's nodes and ranks); "" until it is placed, or where the manager does not say.
    where: str = ""
    # When it began to run (the end of its queue wait), as the workload manager tells; None
    # while it waits, or where the manager does not say.
    started: float | None = None


@dataclass(frozen=True)
class UnitContext:
    """Everything a transformer needs to submit one unit, decided by the engine."""

    spec: Spec
    workdir: Path  # the unit's state folder: scripts, logs and records go here
    attempt: int
    token: str  # unique per attempt; lets `find` recognise a job submitted before a crash
    stdout: Path
    stderr: Path
    cwd: Path  # the task's cwd attribute resolved against the spec's folder
    after_jobs: Sequence[str] = ()  # job ids this unit waits on (--no-wait mode)
    # For a group submitted as one job: the state folder of every descendant task, by node key.
    # The job must write each task's output to <folder>/stdout.<attempt> and stderr.<attempt>,
    # and its exit code (a decimal integer and a newline) to <folder>/exit.<attempt>, written
    # only when the task has ended; the engine records each task's state from these files.
    children: Mapping[str, Path] = field(default_factory=dict)
    replica: int = 0  # which replica this is, for transformers that run replicas one by one
    # Bash scripts the job runs first, in order, on its batch host (in-job staging, e.g.
    # sbcast): a failing one fails the job before the unit's command starts.
    prologue: Sequence[Path] = ()
    # What the attempt runs (definition and inputs): a transformer that records the end of a
    # job itself (the local waiter's journal line) writes it beside the exit code, so that an
    # end is only adopted for the definition it ran.
    signature: str = ""
    # (journal file, line prefix): where and how a transformer that records the end itself
    # appends it (records/journal.py: the prefix is completed by the exit code, the
    # signature and "}"); empty when nothing is to be recorded.
    end_line: tuple[str, str] | None = None


@dataclass(frozen=True)
class TransformerOptions:
    """Options every transformer accepts (from the CLI and the config file)."""

    jobs: int | None = None
    no_wait: bool = False
    resources_choice: int | None = None  # pick this alternative of `a|b` (0-based)
    state_dir: Path | None = None  # the run's state directory (scripts may live under it)
    poll_interval: float = 1.0
    settings: Mapping[str, str] = field(default_factory=dict)  # transformer-specific


class Transformer(ABC):
    """Base class of every transformer plugin."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Steps this transformer can run before a task (the engine refuses others by name).
    supported_steps: ClassVar[frozenset[str]] = frozenset({"stage", "write"})
    # A resource request given to tasks and groups that have none (None: they are an error).
    default_resources: ClassVar[Resource | None] = None
    # Whether submit runs ``UnitContext.prologue`` inside the job (needed by in-job stagers).
    runs_prologue: ClassVar[bool] = False
    # Batch schedulers submit a group as one job; the local transformer runs its children itself.
    submits_groups: ClassVar[bool] = True
    # Whether a job recorded by a killed run can be waited on again (a scheduler job can; a
    # local process that is not our child cannot: it is stopped and the task runs again).
    can_reattach: ClassVar[bool] = True
    # Whether the engine learns of job ends by polling `status` in batches (schedulers), or
    # by calling `wait` for each job (the local transformer waits on its own processes).
    polled: ClassVar[bool] = True
    # Whether ``start_submit`` returns before the workload manager answers (--no-wait runs
    # then record the next unit's intent and write its script while it is answered).
    submits_in_background: ClassVar[bool] = False

    def __init__(self, options: TransformerOptions | None = None) -> None:
        self.options = options or TransformerOptions()

    # -- before anything runs -------------------------------------------------------------
    def check(self, spec: Spec) -> list[Problem]:
        """Problems that make ``spec`` impossible here (found before anything is submitted)."""
        problems = []
        for node in spec.nodes.values():
            if isinstance(node, Task):
                for step in node.steps:
                    if step.name not in self.supported_steps:
                        problems.append(Problem(
                            f"the {self.name} transformer cannot run a '{step.name}' step",
                            (step.spec_path,), "supported steps: "
                            + ", ".join(sorted(self.supported_steps)), str(spec.path)))
        return problems

    def unavailable(self) -> str | None:
        """Why this machine cannot reach the workload manager at all (its commands missing,
        no configuration), or None. Asked before a run starts anything; `plan` does not ask."""
        return None

    def choose(self, node: Unit) -> tuple[ResourceRequest | None, str]:
        """Pick one alternative of ``node``'s resources and say why."""
        if not node.resources:
            return None, "no resources"
        alts = node.resources
        pick = self.options.resources_choice
        if pick is not None and 0 <= pick < len(alts):
            return alts[pick], f"alternative {pick + 1} of {len(alts)} (--resources-choice)"
        if len(alts) > 1:
            return alts[0], f"first of {len(alts)} alternatives"
        return alts[0], "as requested"

    def units(self, spec: Spec) -> list[Unit]:
        """The nodes this transformer submits, in dependency order."""
        if self.submits_groups:
            return [n for n in spec.nodes.values() if n.parent is None]
        return [n for n in spec.nodes.values() if isinstance(n, Task)]

    @abstractmethod
    def describe(self, unit: Unit, ctx: UnitContext) -> str:
        """What a run would do for ``unit``: exact commands and scripts (for `plan`)."""

    # -- running ----------------------------------------------------------------------------
    @abstractmethod
    def submit(self, unit: Unit, ctx: UnitContext) -> str:
        """Start ``unit`` and return its job id. Raise SubmitError if it could not start."""

    def prepare(self, unit: Unit, ctx: UnitContext) -> None:
        """Do ahead what ``submit(unit, ctx)`` will do that does not depend on
        ``ctx.after_jobs`` (which may still be unknown here: the engine calls this while the
        jobs it waits on are being submitted). Optional: ``submit`` must work without it, and
        an error here is left for ``submit`` to report."""
        return None

    def start_submit(self, unit: Unit, ctx: UnitContext) -> Callable[[], str]:
        """Start submitting ``unit``; what it returns, called, waits for the answer and gives
        the job id (or raises the SubmitError that kept the unit out). The default submits here
        and now; a transformer whose submission runs on its own (``submits_in_background``)
        returns first, and the engine does other work before it asks for the id."""
        try:
            job_id = self.submit(unit, ctx)
        except PluginError as exc:
            error = exc

            def fail() -> str:
                raise error
            return fail
        return lambda: job_id

    def submit_many(self, items: Sequence[tuple[Unit, UnitContext]]) -> list[str | PluginError]:
        """Submit units that do not wait for one another; per unit, in order, its job id or
        the error that kept it out. The default submits one at a time; a scheduler with a
        pipelined API sends them all before waiting for any answer."""
        out: list[str | PluginError] = []
        for unit, ctx in items:
            try:
                out.append(self.submit(unit, ctx))
            except PluginError as exc:
                out.append(exc)
        return out

    @abstractmethod
    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Current status of each job id (LOST for one no source knows)."""

    @abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel these jobs if they are still queued or running."""

    def running(self) -> list[str]:
        """Jobs this process started that are still running (cancelled on Ctrl-C)."""
        return []

    def hold_lock(self, fd: int) -> None:
        """The run holds the state directory's lock through ``fd``: for anything this
        transformer leaves behind that must keep other runs out (the local watchdog)."""
        return None

    def close(self) -> None:
        """The run is over (normally or not): let go of what ``submit`` set up."""
        return None

    def one_thread(self, alone: bool) -> None:
        """Told before the first submit: True when doit runs one unit at a time in one
        thread, so that a call holding the GIL keeps no other thread waiting."""
        return None

    def find(self, unit: Unit, ctx: UnitContext) -> str | None:
        """The job id submitted with ``ctx.token`` by an attempt that died before recording it."""
        return None

    def child_place(self, lines: Sequence[str], group_nodes: str, direct: bool
                    ) -> tuple[str, float | None]:
        """Where and since when a task inside a group job ran, from the lines the group's
        script left in its ``place.<attempt>`` file (one per step or replica that started:
        ``START NODES``, START in seconds since the epoch). ``group_nodes`` is where the group
        job ran; ``direct``: the task is a child of that group, not of a group nested in it.
        ("", None) when no line says."""
        nodes: dict[str, None] = {}
        starts = []
        for line in lines:
            start, _, where = line.strip().partition(" ")
            with contextlib.suppress(ValueError):
                starts.append(float(start))
            if where:
                nodes[where] = None
        return ",".join(nodes), min(starts) if starts else None

    def wait(self, job_id: str, news: Callable[[JobStatus], None] | None = None) -> JobStatus:
        """Poll ``status`` until ``job_id`` is terminal; ``news`` hears of each status on the
        way whose placement (``where``, ``started``) is new."""
        delay = min(0.2, self.options.poll_interval)
        told: tuple[str, float | None] = ("", None)
        while True:
            st = self.status([job_id]).get(job_id, JobStatus(JobState.LOST))
            if st.state.terminal:
                return st
            if news is not None and (st.where, st.started) != told and (st.where or st.started):
                told = (st.where, st.started)
                news(st)
            time.sleep(delay)
            delay = min(delay * 1.5, self.options.poll_interval)


class SubmitError(PluginError):
    """A submission that failed; ``transient`` says whether trying again may help."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
