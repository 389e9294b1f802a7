"""Run one unit (a task, a replica of a task, or a group) and record what happened.

This is the action behind every doit task. doit's semantics are at-least-once: a run killed
after a job finished but before doit recorded it will call this again. So the action first
looks at its own records and never starts work that is already done or still in flight:

1. its job record (records/journal.py) says an attempt completed with the same signature
   (definition + inputs) and its outputs exist: adopt it, run nothing.
2. it names a job that is still queued or running (or an intent to submit whose id was lost):
   re-attach and wait for it (with --resume; without it, refuse and say why).
3. otherwise start a new attempt: record the intent, submit, record the job id, wait, record
   the result. Each record is an atomic write, in that order.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from .. import trees
from ..bursters.move import PREFIX, BurstDriver, Records
from ..errors import PluginError
from ..plan import PlannedUnit
from ..records.journal import exit_line_prefix
from ..records.state import (
    JobRecord,
    StateDir,
    UnitState,
    disk_full,
    read_record,
)
from ..records.status import started_note
from ..spec.model import Group, Spec, Task, Unit
from ..spec.resolve import definition
from ..transformers.base import JobState, JobStatus, SubmitError, Transformer, UnitContext
from .children import child_end
from .gate import GateClosed, SlotGate

EventSink = Callable[[str, str, str], None]  # (event, unit name, detail)
STILL_FAILING = "failed last time"  # how a failed task that was not run again is reported
NOT_STARTED = "not started: the run was interrupted"
STATE_FULL = "state folder full"
STILL_RUNNING = "still running"  # a job a killed run left queued or running, not --resume'd
_HOST = socket.gethostname()  # where a transformer that is not polled runs its processes


def label(node: Unit) -> str:
    """How the console names a unit: a group and a task may share a name, so a group is
    ``group/NAME`` (as `plan` writes it); a task is its name."""
    return f"group/{node.name}" if node.is_group else node.name


class _Interrupted(Exception):
    """The run was interrupted before this unit's job was submitted."""


@dataclass(frozen=True)
class Outcome:
    """What running a unit came to."""

    ok: bool
    message: str = ""
    status: JobStatus | None = None


@dataclass
class RunOptions:
    """The options of one `jobspec-do run` that the unit runner honours."""

    resume: bool = False
    force: frozenset[str] = frozenset()
    no_wait: bool = False
    # --cron: a task that failed is not run again on every tick, only once it is edited (or
    # its inputs change) or --resume asks for it.
    retry_failed: bool = True


@dataclass
class Inflight:
    """Jobs started by this process and not yet finished: what Ctrl-C must cancel."""

    jobs: dict[str, str] = field(default_factory=dict)  # job id -> unit name
    lock: threading.Lock = field(default_factory=threading.Lock)
    interrupted: threading.Event = field(default_factory=threading.Event)
    # Units being run right now (waiting for a slot, running, or writing their records): an
    # interrupted run exits once this is 0, not after a guessed pause.
    active: int = 0
    # Set to stop starting units (an interrupt, a full state folder); why, and the gate to
    # close so that none waiting for a slot takes one.
    halted: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    gate: SlotGate | None = None

    def halt(self, reason: str) -> bool:
        """Start nothing more; True for the first caller."""
        with self.lock:
            first = not self.halted.is_set()
            if first:
                self.reason = reason
                self.halted.set()
        if first and self.gate is not None:
            self.gate.close()
        return first

    def enter(self) -> None:
        with self.lock:
            self.active += 1

    def leave(self) -> None:
        with self.lock:
            self.active -= 1

    def add(self, job_id: str, name: str) -> None:
        with self.lock:
            self.jobs[job_id] = name

    def discard(self, job_id: str) -> None:
        with self.lock:
            self.jobs.pop(job_id, None)

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.jobs)


class UnitRunner:
    """Runs planned units with one transformer, keeping the records in a state directory."""

    def __init__(self, spec: Spec, state: StateDir, transformer: Transformer,
                 options: RunOptions, emit: EventSink, inflight: Inflight | None = None,
                 waiter: Callable[..., JobStatus] | None = None,
                 gate: SlotGate | None = None, machine_cores: int = 1,
                 step_files: Callable[[PlannedUnit], list[Path]] | None = None) -> None:
        self.spec = spec
        self.state = state
        self.transformer = transformer
        self.options = options
        self.emit = emit
        self.inflight = inflight or Inflight()
        # Schedulers are polled in batches; the local transformer waits on its own processes.
        self.waiter = waiter if (waiter and transformer.polled) else transformer.wait
        self.gate = gate
        self.machine_cores = machine_cores
        self.step_files = step_files or (lambda pu: [])
        # Bursting (bursters/): set by the engine when the run may move tasks elsewhere.
        self.burst: BurstDriver | None = None

    def _transformer_of(self, record: JobRecord) -> Transformer:
        """The transformer that knows ``record``'s job: the primary, or a burster's."""
        return self.burst.transformer_for(record) if self.burst is not None \
            else self.transformer

    # -- the entry point -----------------------------------------------------------------------
    def run(self, pu: PlannedUnit, replica: int | None = None) -> Outcome:
        """Bring ``pu`` (or one replica of it) to done, or say why it could not be."""
        # doit may have handed this unit to a worker thread before the interrupt: it must not
        # start (doit's threads keep taking what was queued for them).
        if self.inflight.halted.is_set():
            return Outcome(False, self._not_started())
        self.inflight.enter()
        try:
            return self._run(pu, replica)
        finally:
            self.inflight.leave()

    def _run(self, pu: PlannedUnit, replica: int | None) -> Outcome:
        st = self.state.unit(pu.node)
        fresh = st.ensure()  # a folder made just now holds no records: nothing to read
        if isinstance(pu.node, Group) and not pu.whole_group:
            return self._finish_group(pu, st)
        sig = self.signature(pu)
        record = st.read_job(replica)
        if record.state == "completed" and record.signature == sig and _exist(pu.outputs) \
                and pu.node.name not in self.options.force:
            self.emit("adopted", label(pu.node), f"attempt {record.attempt} already completed")
            self._done(pu, st, record, replica, adopted=True)
            return Outcome(True, "already completed")
        if not self.options.retry_failed and record.state in ("failed", "timeout") \
                and record.signature == sig and pu.node.name not in self.options.force:
            return Outcome(False, f"{STILL_FAILING} (attempt {record.attempt}"
                           + (f", exit {record.exit_code}" if record.exit_code else "")
                           + "): not run again until it is edited, or with --resume")
        attach = self._attachable(pu, st, record, sig)
        if isinstance(attach, Outcome):
            return attach
        return self._attempt(pu, st, record, sig, replica, attach, fresh)

    # -- deciding ----------------------------------------------------------------------------
    def _attachable(self, pu: PlannedUnit, st: UnitState, record: JobRecord, sig: str
                    ) -> str | Outcome | None:
        """The job id to re-attach to, None to start afresh, or an Outcome refusing to run."""
        if record.state not in ("submitting", "queued", "running") or not record.token:
            return None
        transformer = self.transformer
        if self.burst is not None and self.burst.owns(record):
            # --- burst hook: the job moved (or was moving): follow it to its burster.
            try:
                transformer, job_id = self.burst.reattach(pu.node, self._context(
                    pu, st, record.attempt, record.token, None), record,
                    Records(st, None))
            except PluginError as exc:  # unknown where it is: not submitted again
                return Outcome(False, str(exc))
            if job_id is None:
                return None
        elif record.transformer != self.transformer.name:
            return None
        else:
            job_id = record.job_id
        if job_id is None:  # died between recording the intent and recording the id
            try:
                job_id = self.transformer.find(pu.node, self._context(
                    pu, st, record.attempt, record.token, None))
            except PluginError as exc:  # unknown whether it went in: not submitted again
                return Outcome(False, str(exc))
            if job_id is None:
                return None
        status = transformer.status([job_id]).get(job_id, JobStatus(JobState.LOST))
        if status.state in (JobState.LOST, JobState.FAILED, JobState.CANCELED,
                            JobState.TIMEOUT) or not transformer.can_reattach:
            if not status.state.terminal:
                transformer.cancel([job_id])  # e.g. an orphaned local process
            return None
        if record.signature != sig:
            self.emit("replaced", label(pu.node), f"the task changed: cancelling job {job_id}")
            transformer.cancel([job_id])
            st.append_status(record.attempt, "canceled", f"job {job_id}: definition changed")
            return None
        if not self.options.resume and not self.options.no_wait:
            return Outcome(False, f"{STILL_RUNNING}: job {job_id} from an earlier run "
                           f"(killed?) is {status.state.value}; `jobspec-do --resume SPEC` "
                           "re-attaches to it and waits, `jobspec-do cancel SPEC` drops it")
        return job_id

    # -- running -----------------------------------------------------------------------------
    def _attempt(self, pu: PlannedUnit, st: UnitState, old: JobRecord,
                 sig: str, replica: int | None, attach: str | None,
                 fresh: bool = False) -> Outcome:
        node = pu.node
        if attach is not None:
            record = old
            record.job_id = attach
            self.emit("attached", label(node), f"job {attach} (attempt {record.attempt})")
            st.append_status(record.attempt, "attached", f"job {attach}")
        else:
            # A local attempt's record is written when it ends: one cut short by a kill -9
            # left only its status line and logs, and its number must not be used again
            # (its logs would be overwritten). Replicas keep their own attempt count.
            attempt = old.attempt + 1
            if replica is None:
                attempt = max(old.attempt, st.last_attempt()) + 1
            if not fresh:
                # A kill between the start and the status line leaves only the logs.
                while os.path.exists(st.stdout(attempt, replica)):
                    attempt += 1
                # --force runs it again, even if an unrecorded end is there to adopt.
                if attempt - 1 > old.attempt and not self.transformer.polled \
                        and node.name not in self.options.force:
                    ended = self._ended_unrecorded(pu, st, attempt - 1, sig, replica)
                    if ended is not None:
                        return ended
            record = JobRecord(attempt=attempt, token=_token(node.name, attempt),
                               state="submitting", transformer=self.transformer.name,
                               signature=sig, digest=node.digest, started=time.time(),
                               definition=definition(node))
            if self.transformer.polled:  # a local process has no queue to be lost in
                st.append_status(attempt, "submitting", self.transformer.name,
                                 record=record, replica=replica)
                if self.burst is not None and replica is None:
                    # --- burst hook: a request the primary cannot take goes to a burster.
                    self.burst.direct(node, record, Records(st, replica))
        ctx = self._context(pu, st, record.attempt, record.token, replica,
                            signature=record.signature)
        slot: AbstractContextManager[None] = contextlib.nullcontext()
        if self.gate is not None:
            req, _ = self.transformer.choose(node)
            big = req is not None and req.counts.cores > self.machine_cores
            slot = self.gate.hold(self.gate.capacity if big else 1)
        return self._submit_and_wait(pu, st, record, ctx, attach, replica, slot)

    def _submit_and_wait(self, pu: PlannedUnit, st: UnitState,
                         record: JobRecord, ctx: UnitContext, attach: str | None,
                         replica: int | None,
                         slot: AbstractContextManager[None] | None = None) -> Outcome:
        """Submit (or re-attach), wait, record. ``slot`` is held from the submit until the job
        has ended, not while its records are written: the run has more doit threads than
        slots, so one task's bookkeeping overlaps the next task's process."""
        node = pu.node
        shown = label(node) if replica is None else f"{node.name}[{replica}]"
        try:
            with slot or contextlib.nullcontext():
                # Started once it has a slot: the wait for one is not the task's time.
                if attach is None:
                    record.started = time.time()
                if self.inflight.halted.is_set():
                    raise _Interrupted
                self.emit("start", shown, f"attempt {record.attempt}")
                try:
                    status = self._launch(node, st, record, ctx, attach, replica)
                except SubmitError as exc:
                    if disk_full(exc) and record.job_id is None:  # its logs could not be made
                        self._full()
                        raise _Interrupted from exc
                    status = JobStatus(JobState.FAILED, None, f"could not submit: {exc}")
                if status is not None:
                    status = self._final(pu, status, replica)
                    # Said before the slot is let go: the task that takes it next is shown
                    # starting after this one ended, and never more than -j at once.
                    self.emit("finished", shown,
                              "" if status.state == JobState.COMPLETED else "failed")
        except (GateClosed, _Interrupted):
            return Outcome(False, self._not_started())
        except KeyboardInterrupt:
            # doit's sequential runner runs this in the main thread, where Ctrl-C and SIGTERM
            # land: record what the threaded runner's workers record, then let it go on.
            if record.job_id is not None:
                self._record(pu, st, record,
                             JobStatus(JobState.CANCELED, None, "interrupted"), replica)
            raise
        if status is None:
            return Outcome(True, f"job {record.job_id} submitted")
        return self._record(pu, st, record, status, replica, checked=True)

    def _final(self, pu: PlannedUnit, status: JobStatus, replica: int | None) -> JobStatus:
        """What an ended job comes to: a completed one that did not make its outputs failed;
        one that ended badly while the run was being interrupted was interrupted."""
        if status.state == JobState.COMPLETED and replica is None and pu.outputs:
            missing = [str(p) for p in pu.outputs if not p.exists()]
            if missing:
                return JobStatus(JobState.FAILED, status.exit_code,
                                 "finished but did not make its outputs: " + ", ".join(missing))
        if self.inflight.interrupted.is_set() and status.state != JobState.COMPLETED:
            return JobStatus(JobState.CANCELED, status.exit_code, "interrupted")
        return status

    def _launch(self, node: Unit, st: UnitState, record: JobRecord,
                ctx: UnitContext, attach: str | None, replica: int | None
                ) -> JobStatus | None:
        """Submit (unless re-attaching to ``attach``) and wait for the job to end; None under
        --no-wait, which submits and returns."""
        if attach is None:
            transformer = self._transformer_of(record)
            if ctx.prologue and not transformer.runs_prologue:
                raise SubmitError(f"its stage step stages inside the job ({ctx.prologue[0].name}"
                                  f"), which the {transformer.name} transformer cannot "
                                  "run: use -t slurm, or a stager that sends before the job "
                                  "(--stager ssh with --nodes)")
            record.job_id = transformer.submit(node, ctx)
            record.state = "queued" if self.transformer.polled else "running"
            if self.transformer.polled:  # a local process cannot be re-attached anyway
                where = f" on {record.transformer.removeprefix(PREFIX)}" \
                    if record.transformer != self.transformer.name else ""
                st.append_status(record.attempt, "queued", f"job {record.job_id}{where}",
                                 record.job_id, record=record, replica=replica)
                self.emit("submitted", label(node), f"job {record.job_id}{where}")
            else:  # a child of this process: it runs here
                record.nodes = _HOST
                self._writing(lambda: st.append_status(record.attempt, "running",
                                                       f"pid {record.job_id} on {_HOST}"))
        if self.options.no_wait:
            return None
        job_id = record.job_id
        assert job_id is not None
        self.inflight.add(job_id, node.name)
        try:
            if self.inflight.interrupted.is_set():
                # Submitted while the interrupt was cancelling what it saw in flight: this
                # one it may have missed.
                self._transformer_of(record).cancel([job_id])
            if self.burst is not None and self.burst.follows(node, record):
                # --- burst hook: polled here, so that a long wait in the queue can move it.
                return self.burst.wait(node, ctx, record, Records(st, replica),
                                       self.transformer.options.poll_interval)
            if not self.transformer.polled or self.waiter == self.transformer.wait:
                return self.waiter(job_id)  # a plugin's own wait may take no `news`
            return self.waiter(job_id, lambda news: placed(record, news, st, replica))
        except KeyboardInterrupt:  # in the main thread (sequential runner): stop the job
            self.inflight.interrupted.set()
            self._transformer_of(record).cancel([record.job_id or job_id])
            raise
        finally:
            self.inflight.discard(job_id)

    def _record(self, pu: PlannedUnit, st: UnitState, record: JobRecord,
                status: JobStatus, replica: int | None, checked: bool = False) -> Outcome:
        """Record how the attempt ended (``checked``: ``status`` went through _final)."""
        if not checked:
            status = self._final(pu, status, replica)
        record.state = "interrupted" if status.info == "interrupted" else status.state.value
        record.exit_code = status.exit_code
        record.finished = time.time()
        record.info = status.info
        record.nodes = status.where or record.nodes
        record.run_start = status.started or record.run_start
        info = status.info or (f"exit {status.exit_code}" if status.exit_code else "")
        if record.job_id and self.transformer.polled:
            # Where and since when it ran, in the line that outlives this record (the report
            # dates and places older attempts by it).
            where = f" on {record.nodes}" if record.nodes else ""
            since = f"; {started_note(record.run_start)}" if record.run_start else ""
            info = f"job {record.job_id}{where}{since}; {info}".rstrip("; ")

        def write() -> None:  # each part can be written again: atomic, or an appended line
            if pu.whole_group:
                self._record_children(pu, record)
            st.append_status(record.attempt, record.state, info, record.job_id,
                             record.exit_code, record=record, replica=replica)
            if status.state == JobState.COMPLETED:
                self._done(pu, st, record, replica)

        self._writing(write)
        if status.state != JobState.COMPLETED:
            return Outcome(False, info, status)
        return Outcome(True, "", status)

    def _ended_unrecorded(self, pu: PlannedUnit, st: UnitState,
                          attempt: int, sig: str, replica: int | None) -> Outcome | None:
        """An attempt whose run was killed after its command ended, before the end was
        recorded: its waiter journaled the exit code (see transformers/local.py). A
        completion of this very definition is adopted and recorded now; anything else runs
        again."""
        ended = st.ended(attempt, replica)
        if ended is None or ended != (0, sig):
            return None
        record = JobRecord(attempt=attempt, token=_token(pu.node.name, attempt),
                           state="running", transformer=self.transformer.name,
                           signature=sig, digest=pu.node.digest,
                           definition=definition(pu.node))
        self.emit("adopted", label(pu.node), f"attempt {attempt} completed as its run ended")
        return self._record(pu, st, record, JobStatus(
            JobState.COMPLETED, 0, "completed as its run was killed: recorded by its waiter"),
            replica)

    # -- a full state folder -------------------------------------------------------------------
    def _writing(self, write: Callable[[], None]) -> None:
        """Write records; if the disk is full, stop the run, free the reserve and write them
        again: the end of a job that ran must land, or --resume would run it again."""
        try:
            write()
        except OSError as exc:
            if not disk_full(exc):
                raise
            self._full()
            write()

    def _full(self) -> None:
        self.inflight.halt(f"{STATE_FULL}: {self.state.root}")
        self.state.release_reserve()

    def _not_started(self) -> str:
        if self.inflight.reason.startswith(STATE_FULL):
            return f"not started: {self.inflight.reason}"
        return NOT_STARTED

    def _done(self, pu: PlannedUnit, st: UnitState, record: JobRecord, replica: int | None,
              adopted: bool = False) -> None:
        """Write the completion record doit and the dependents read. An adopted completion
        whose record is on disk already keeps it: rewritten, its new content would make
        every dependent run again."""
        if adopted and replica is None and _done_is(st.done_str, record):
            return
        if replica is None and not record.definition:
            record.definition = definition(pu.node)
        st.write_done(record, replica)

    def run_replica(self, pu: PlannedUnit, replica: int) -> Outcome:
        """One replica of a task the local transformer runs replica by replica."""
        return self.run(pu, replica)

    def finish_replicas(self, pu: PlannedUnit) -> Outcome:
        """A replicated task is done when all its replicas are (and its outputs exist)."""
        st = self.state.unit(pu.node)
        missing = [str(p) for p in pu.outputs if not p.exists()]
        attempt = st.last_attempt()
        record = JobRecord(attempt=attempt, state="completed" if not missing else "failed",
                           transformer=self.transformer.name, signature=self.signature(pu),
                           digest=pu.node.digest, finished=time.time(),
                           definition=definition(pu.node))
        if missing:
            msg = "replicas finished but did not make: " + ", ".join(missing)
            st.append_status(attempt, "failed", msg)
            return Outcome(False, msg)
        st.append_status(attempt, "completed", f"all {pu.node.replicas} replicas",  # type: ignore[union-attr]
                         record=record)
        st.write_done(record)
        return Outcome(True)

    def _finish_group(self, pu: PlannedUnit, st: UnitState) -> Outcome:
        """A group run by the local transformer is done when its children are."""
        attempt = st.last_attempt() + 1
        record = JobRecord(attempt=attempt, state="completed", transformer=self.transformer.name,
                           signature=self.signature(pu), digest=pu.node.digest,
                           finished=time.time(), definition=definition(pu.node))
        st.append_status(attempt, "completed", "all children completed", record=record)
        st.write_done(record)
        return Outcome(True)

    def _record_children(self, pu: PlannedUnit, record: JobRecord) -> None:
        """Record each task inside a group job from the exit files its script wrote."""
        assert isinstance(pu.node, Group)
        states: dict[str, str] = {}
        transformer = self._transformer_of(record)
        for child in pu.node.walk():
            if not isinstance(child, Task):
                continue
            cst = self.state.unit(child)
            end = child_end(cst.dir_str, record.attempt, transformer, record.nodes or "",
                            child.parent is pu.node)
            states[child.key] = end.state
            # Its own record of this attempt: where and since when it ran, not its group's.
            # No signature: nothing run on its own later adopts an attempt made in a group.
            cst.append_status(record.attempt, end.state, end.info(record.job_id, pu.node.name),
                              record=JobRecord(
                attempt=record.attempt, job_id=record.job_id, state=end.state,
                transformer=record.transformer, digest=child.digest, exit_code=end.exit_code,
                started=record.started, finished=end.ended or time.time(),
                info=f"in group {pu.node.name}", nodes=end.nodes, run_start=end.run_start))
        # A group nested in this one ran inside the same job and writes no exit file: it is as
        # its tasks are. Unrecorded, it read "never run", and `status` then called everything
        # after it blocked.
        for child in pu.node.walk():
            if isinstance(child, Group):
                inner = [states[t.key] for t in child.walk() if isinstance(t, Task)]
                state = next((s for s in ("failed", "not run") if s in inner), "completed")
                gst = self.state.unit(child)
                gst.append_status(record.attempt, state, f"in group {pu.node.name}")

    # -- helpers -------------------------------------------------------------------------------
    def _context(self, pu: PlannedUnit, st: UnitState, attempt: int, token: str,
                 replica: int | None, after_jobs: list[str] | None = None,
                 create: bool = True, signature: str = "") -> UnitContext:
        children: dict[str, Path] = {}
        if pu.whole_group and isinstance(pu.node, Group):
            for child in pu.node.walk():
                if isinstance(child, Task):
                    cst = self.state.unit(child)
                    if create:  # `plan` describes without touching the state directory
                        cst.ensure()
                    children[child.key] = cst.dir
        return UnitContext(spec=self.spec, workdir=st.dir, attempt=attempt, token=token,
                           stdout=st.stdout(attempt, replica), stderr=st.stderr(attempt, replica),
                           cwd=pu.cwd, children=children, replica=replica or 0,
                           after_jobs=tuple(after_jobs or ()),
                           prologue=_prologue(pu, self.state),
                           signature=signature,
                           end_line=(self.state.journal.path,
                                     exit_line_prefix(st.key, attempt, replica))
                           if create else None)

    def signature(self, pu: PlannedUnit) -> str:
        """What an attempt ran: the definition, the transformer, and its inputs' states."""
        h = hashlib.sha256(f"{pu.node.digest}|{self.transformer.name}".encode())
        for dep in pu.deps:
            try:
                with open(self.state.unit(dep).done_str, "rb") as fh:
                    h.update(fh.read())
            except FileNotFoundError:
                h.update(b"-")
        for path in [*pu.inputs, *self.step_files(pu)]:
            try:
                s = path.stat()
                h.update(f"{path}|{s.st_size}|{s.st_mtime_ns}".encode())
            except FileNotFoundError:
                h.update(f"{path}|missing".encode())
                continue
            if stat.S_ISDIR(s.st_mode):  # its own mtime misses edits deeper down
                h.update(trees.digest(str(path)).encode())
        return h.hexdigest()


def placed(record: JobRecord, news: JobStatus, st: UnitState, replica: int | None) -> None:
    """A polled job is placed (its nodes, when it began to run): say so in its record, so
    that `status` and `report` show where it runs while it runs. Best effort: the end writes
    them again, so a write that fails here (a full disk) loses nothing."""
    if record.place(news.where, news.started, news.state == JobState.RUNNING):
        with contextlib.suppress(OSError):
            st.write_job(record, replica)


def _prologue(pu: PlannedUnit, state: StateDir) -> tuple[Path, ...]:
    """The scripts an in-job stager left for the current stage steps of this task, or of
    every task of a group submitted as one job, in the spec's order (tasks/steps.py writes
    ``step<i>.job.sh`` in the task's folder; a step staged before the job has none). A
    group's job runs them all first: every child's step runs on the group's nodes."""
    found = (state.unit(owner.node).dir / f"step{i}.job.sh" for owner in pu.step_units
             for i in range(len(getattr(owner.node, "steps", ()))))
    return tuple(p for p in found if p.is_file())


def _token(name: str, attempt: int) -> str:
    return f"jsd-{hashlib.sha256(name.encode()).hexdigest()[:8]}-{attempt}-{secrets.token_hex(4)}"


def _done_is(path: str, record: JobRecord) -> bool:
    """Whether the completion record at ``path`` is ``record``'s attempt."""
    done = read_record(path, lenient=True)
    return done.attempt == record.attempt and done.token == record.token


def _exist(paths: tuple[Path, ...]) -> bool:
    return all(p.exists() for p in paths)
