"""Non-blocking runs (--no-wait, --cron): advance a spec by one step and return.

Each invocation:
1. asks doit which units are out of date (doit's database stays the authority);
2. asks the scheduler once about every job recorded as queued or running;
3. records jobs that ended (a completion is also saved into doit's database, exactly as a
   blocking run would, so the next invocation sees it up to date);
4. submits every out-of-date unit whose dependencies are done, or still in flight on the
   scheduler (then with the scheduler's own `afterok` dependency on their job ids);
5. returns: 0 while nothing failed (finished or still in flight), 1 once something failed.

Nothing is submitted twice: each submission's intent (with a unique token) is recorded before
the scheduler is asked, its job id once it is answered, and a later invocation finds a job by
token if the id was never recorded. In a chain the next unit's intent and script are written
while the previous submission is answered (see _Sender): only its job id is waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from doit.dependency import Dependency, JSONCodec
from doit.task import dict_to_task
from doit.tools import config_changed

from ..bursters.move import BurstDriver, Records, on_target
from ..bursters.policy import BurstPolicy
from ..errors import EXIT_FAILED, EXIT_OK, PluginError
from ..plan import PlannedUnit
from ..records.state import JobRecord
from ..tasks.steps import StepRunner
from ..tasks.unit import Outcome, RunOptions, UnitRunner
from ..transformers.base import JobState, JobStatus
from .backend import IncrementalSqliteDB
from .checker import MD5Checker
from .loader import task_dicts
from .why import analyse

LIVE = ("submitting", "queued", "running")
PENDING = "pending"  # a unit whose submission waits in the current batch
SENDING = "sending"  # a unit whose batch went out, not yet answered
WAITING = "waiting"  # where[] of a unit held back until its upstream is done (bursting)


@dataclass
class Progress:
    """What one invocation found and did."""

    done: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    finished_now: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.submitted or self.finished_now or self.replaced)


def advance(prep: Any, req: Any, console: Any) -> int:
    """One non-blocking step for ``prep`` (a Prepared run); returns the exit code."""
    transformer = prep.transformer
    if not transformer.polled:
        raise PluginError(f"--no-wait needs a scheduler: the {transformer.name} transformer "
                          "runs tasks as children of jobspec-do (use -t slurm or -t flux)")
    state = prep.state
    state.ensure()
    steps = StepRunner(state, req.stage, console.emit)
    runner = UnitRunner(prep.spec, state, transformer,
                        RunOptions(resume=True, force=frozenset(req.force), no_wait=True),
                        console.emit, step_files=steps.files)
    # --- burst hook (bursters/move.py); with no bursters now, moved jobs are still followed
    runner.burst = BurstDriver(prep.burst or BurstPolicy([]), transformer, console.emit,
                               state.root)
    verdicts = {v.name: v for v in analyse(prep)}
    dicts = {d["name"]: d for d in task_dicts(prep.plan, runner, steps, state, False)}
    records = {pu.key: state.unit(pu.node).read_job() for pu in prep.plan}
    statuses = _statuses(runner, [r for r in records.values() if r.state in LIVE and r.job_id])
    dep = Dependency(IncrementalSqliteDB, str(state.db), checker_cls=MD5Checker,
                     codec_cls=JSONCodec)
    progress = Progress()
    where: dict[str, str] = {}  # unit key -> done | failed | blocked | pending | sending | id
    # Units ready to submit are sent together (a scheduler with a pipelined API answers a
    # batch in about the time of one submission); a unit that waits on one of them needs its
    # job id, so the batch goes out first. Where the transformer allows it, a batch of one is
    # started and left running, and a unit that can be decided before that batch is answered
    # (see _decided_ahead) has its intent recorded and its script written meanwhile: in a
    # chain, only the wait on the previous job id is left between two submissions.
    pending: list[_Intent] = []
    sender = _Sender(runner, where, progress)
    try:
        for pu in prep.plan:
            upstream = {where.get(d.key) for d in pu.deps}
            if PENDING in upstream or SENDING in upstream:
                if sender.background and _decided_ahead(pu, records[pu.key], runner):
                    if PENDING in upstream:
                        sender.launch(pending)
                else:
                    sender.launch(pending)
                    sender.settle()
            where[pu.key] = _step(pu, verdicts, records, statuses, runner, steps, dicts, dep,
                                  where, progress, req, pending)
        sender.launch(pending)
        sender.settle()
    finally:
        sender.close()
        dep.close()
        if runner.burst is not None:
            runner.burst.close(lambda where: any(
                r.transformer == where and r.state in LIVE
                for r in (state.unit(pu.node).read_job() for pu in prep.plan)))
    _report(progress, console, len(prep.plan))
    return EXIT_FAILED if progress.failed else EXIT_OK


def _step(pu: PlannedUnit, verdicts: dict[str, Any], records: dict[str, JobRecord],
          statuses: dict[str, JobStatus], runner: UnitRunner, steps: StepRunner,
          dicts: dict[str, dict[str, Any]], dep: Dependency, where: dict[str, str],
          progress: Progress, req: Any, pending: list[_Intent]) -> str:
    name = pu.node.name
    verdict = verdicts.get(pu.key)
    upstream = [where.get(d.key, "done") for d in pu.deps]
    if verdict is not None and not verdict.runs and all(u == "done" for u in upstream):
        progress.done.append(name)
        return "done"
    st = runner.state.unit(pu.node)
    record = records[pu.key]
    if record.state in LIVE and record.job_id and any(u in ("failed", "blocked")
                                                      for u in upstream):
        # It waits inside the scheduler on a job that failed: it can never run. Slurm would
        # cancel it at its next pass (kill-on-invalid-dep); say so now and leave no queue.
        runner.transformer.cancel([record.job_id])
        record.state = "blocked"  # not a failure of its own: retried once upstream is fixed
        st.append_status(record.attempt, "blocked", f"job {record.job_id} cancelled: a "
                         "dependency failed", record.job_id, record=record)
        progress.blocked.append(name)
        return "blocked"
    if record.state in LIVE and (record.transformer == runner.transformer.name or (
            runner.burst is not None and runner.burst.owns(record))):
        found = _live(pu, record, statuses, runner, st, progress)
        if found is not None:
            if found == "done":
                _save_success(dicts, dep, pu)
            return found
    if record.state in ("failed", "timeout", "canceled", "lost", "interrupted") \
            and record.digest == pu.node.digest and not req.resume:
        # Cron calls again every minute: a failed job is not retried until the task is
        # edited or --resume asks for it; it was reported when it failed.
        progress.failed.append(name)
        return "failed"
    if any(u in ("failed", "blocked") for u in upstream):
        progress.blocked.append(name)
        return "blocked"
    waiting_on = [u for u in upstream if u != "done"]
    if waiting_on and (WAITING in waiting_on or _waits_for_done(pu, runner)):
        # A scheduler's afterok cannot name a job on another cluster, and a job that moves
        # is cancelled where it was: a task on either side of a burst waits for its upstream
        # to be done, then is submitted (by a later tick).
        progress.in_flight.append(name)
        return WAITING
    for owner in pu.step_units:
        for i, _ in enumerate(getattr(owner.node, "steps", ())):
            if not steps.run(owner, i).ok:
                progress.failed.append(name)
                return "failed"
    why = "; ".join(verdict.reasons) if verdict is not None else ""
    intent = _intend(pu, runner, st, [d.key for d in pu.deps if where.get(d.key, "done")
                                      != "done"], why)
    # Written while the jobs it waits on may still be in submission: only their ids are
    # filled in later (on the command line, not in the script).
    intent.transformer.prepare(pu.node, intent.ctx)
    pending.append(intent)
    return PENDING


def _waits_for_done(pu: PlannedUnit, runner: UnitRunner) -> bool:
    """Whether ``pu`` is submitted only once its upstream is done, never with a scheduler
    dependency on jobs in flight."""
    # Steps run on the submit host once what they depend on is done (they may stage what
    # it made): a unit with steps (a group submitted as one job: its tasks') is submitted by
    # a later tick, not now with a scheduler dependency and its steps never run.
    if any(getattr(owner.node, "steps", ()) for owner in pu.step_units):
        return True
    # A scheduler's afterok cannot name a job on another cluster, and a job that moves is
    # cancelled where it was.
    return runner.burst is not None and (
        runner.burst.policy.selected(pu.node)
        or any(runner.burst.policy.selected(d) for d in pu.deps))


def _decided_ahead(pu: PlannedUnit, record: JobRecord, runner: UnitRunner) -> bool:
    """Whether _step can decide ``pu`` before the submissions it waits on are answered.

    True when the answer can only change the job ids it waits on, or make it blocked (see
    _Sender.launch): it has no live job (which _step would cancel, were an upstream submission
    to fail, or follow) and it is not held until its upstream is done (which a failed
    upstream turns into blocked instead)."""
    return record.state not in LIVE and not _waits_for_done(pu, runner)


def _live(pu: PlannedUnit, record: JobRecord, statuses: dict[str, JobStatus],
          runner: UnitRunner, st: Any, progress: Progress) -> str | None:
    """The fate of a recorded job: done, failed, its id if still in flight, None to resubmit."""
    name = pu.node.name
    transformer = runner.transformer
    if runner.burst is not None and runner.burst.owns(record):
        # --- burst hook: finish a move a killed tick left, then ask where the job went.
        ctx = runner._context(pu, st, record.attempt, record.token, None)
        try:
            transformer, found_id = runner.burst.reattach(pu.node, ctx, record,
                                                          Records(st, None))
        except PluginError as exc:
            progress.failed.append(name)
            runner.emit("failed", name, str(exc))
            return "failed"
        if found_id is None:
            return None  # it never reached the burster: submitted afresh
    job_id = record.job_id
    if job_id is None:
        ctx = runner._context(pu, st, record.attempt, record.token, None)
        try:
            job_id = transformer.find(pu.node, ctx)
        except PluginError as exc:  # unknown whether it went in: not submitted again
            progress.failed.append(name)
            runner.emit("failed", name, str(exc))
            return "failed"
        if job_id is None:
            return None  # the submission never reached the scheduler
        record.job_id = job_id
        st.append_status(record.attempt, "queued", f"job {job_id} (found by token)", job_id,
                         record=record)
    status = statuses.get(job_id) or transformer.status([job_id]).get(
        job_id, JobStatus(JobState.LOST))
    if record.digest and record.digest != pu.node.digest:
        if not status.state.terminal:
            transformer.cancel([job_id])
        st.append_status(record.attempt, "canceled", f"job {job_id}: the task changed; "
                         "resubmitting", job_id)
        runner.emit("replaced", name, f"job {job_id} cancelled: the task changed")
        progress.replaced.append(name)
        return None
    if not status.state.terminal:
        if record.place(status.where, status.started, status.state == JobState.RUNNING):
            st.write_job(record)  # where it runs, while it runs
        if runner.burst is not None and status.state == JobState.QUEUED:
            # --- burst hook: waited past a burster's `after`: move it now.
            moved = runner.burst.move_if_due(pu.node, runner._context(
                pu, st, record.attempt, record.token, None), record, Records(st, None))
            if moved:
                progress.replaced.append(name)
                job_id = record.job_id or job_id
        progress.in_flight.append(name)
        return job_id
    outcome: Outcome = runner._record(pu, st, record, status, None)
    progress.finished_now.append(name)
    if outcome.ok:
        progress.done.append(name)
        runner.emit("done", name, f"job {job_id}")
        return "done"
    progress.failed.append(name)
    runner.emit("failed", name, f"job {job_id}: {outcome.message}")
    return "failed"


@dataclass
class _Intent:
    """A submission whose intent is recorded and which is about to be sent."""

    pu: PlannedUnit
    st: Any
    record: JobRecord
    ctx: Any
    after_keys: list[str]  # the units whose job ids it waits on (filled in when it is sent)
    why: str
    transformer: Any  # where it goes: the primary, or the burster that takes it
    after: list[str] = field(default_factory=list)  # their job ids, once known


def _intend(pu: PlannedUnit, runner: UnitRunner, st: Any, after_keys: list[str], why: str = ""
            ) -> _Intent:
    """Record the intent to submit ``pu`` (after the jobs of units ``after_keys``), before the
    scheduler is asked: a kill from here on leaves a token that finds the job again."""
    from ..spec.resolve import definition
    from ..tasks.unit import _token

    old = st.read_job()
    attempt = max(old.attempt, st.last_attempt()) + 1
    record = JobRecord(attempt=attempt, token=_token(pu.node.name, attempt), state="submitting",
                       transformer=runner.transformer.name, signature=runner.signature(pu),
                       digest=pu.node.digest, started=time.time(),
                       definition=definition(pu.node))
    st.ensure()
    st.append_status(attempt, "submitting", runner.transformer.name, record=record)
    transformer = runner.transformer
    if runner.burst is not None:  # --- burst hook: what the primary cannot take goes elsewhere
        transformer = runner.burst.direct(pu.node, record, Records(st, None))
    ctx = runner._context(pu, st, attempt, record.token, None)
    return _Intent(pu, st, record, ctx, after_keys, why, transformer)


class _Sender:
    """Sends batches of intents, one batch at a time, and records what each got.

    A batch of one unit (a chain's next link) to a transformer whose submission runs on its
    own (``submits_in_background``: Slurm's sbatch is a child process) is started and left
    running: launch() returns at once, and the engine records the next intents and writes
    their scripts meanwhile. A larger batch goes out whole (submit_many overlaps its calls).
    Every intent is recorded before its batch is launched, so a kill at any moment leaves
    each submission findable by its token, exactly as when nothing overlaps; only the job ids
    are recorded later (once the next batch is on its way), and a later tick finds an
    unrecorded id by the token.
    """

    def __init__(self, runner: UnitRunner, where: dict[str, str], progress: Progress) -> None:
        self.runner, self.where, self.progress = runner, where, progress
        # A burster may take a unit to a transformer of another kind: nothing overlaps then.
        self.background = runner.transformer.submits_in_background and (
            runner.burst is None or not runner.burst.policy.bursters)
        self._flight: tuple[list[_Intent], Callable[[], list[str | PluginError]]] | None = None

    def launch(self, batch: list[_Intent]) -> None:
        """Send ``batch`` (emptied), once the batch in flight is answered: the job ids it
        waits on are filled in then, and what waits on a failed submission is blocked."""
        answered = self._collect()
        ready: list[_Intent] = []
        for intent in batch:
            after = [self.where.get(k, "done") for k in intent.after_keys]
            after = [a for a in after if a != "done"]
            if any(a in ("failed", "blocked") for a in after):
                self._block(intent)
                continue
            intent.after = after
            intent.ctx = replace(intent.ctx, after_jobs=tuple(after))
            ready.append(intent)
            self.where[intent.pu.key] = SENDING
        batch.clear()
        if ready:
            if self.background and len(ready) == 1:
                self._flight = (ready, _start(ready[0]))
            else:
                results = _send(ready)
                self._flight = (ready, lambda: results)
        # The previous batch's records, written while this one is answered.
        self._record(answered)

    def settle(self) -> None:
        """Wait for the batch in flight and record what it got."""
        self._record(self._collect())

    def close(self) -> None:
        """After an error: wait for a submission still under way, so that none is made once
        the run is over. Its id is left for the next tick to find by token."""
        if self._flight is not None:
            _, answer = self._flight
            self._flight = None
            answer()

    def _collect(self) -> list[tuple[_Intent, str | PluginError]]:
        """Wait for the batch in flight; its units' job ids (or "failed") go into where[]."""
        if self._flight is None:
            return []
        batch, answer = self._flight
        self._flight = None
        results = answer()
        for intent, result in zip(batch, results, strict=True):
            self.where[intent.pu.key] = "failed" if isinstance(result, PluginError) else result
        return list(zip(batch, results, strict=True))

    def _record(self, answered: list[tuple[_Intent, str | PluginError]]) -> None:
        for intent, result in answered:
            _submitted(intent, result, self.runner, self.progress)

    def _block(self, intent: _Intent) -> None:
        """An intent recorded while the submission it waits on was unanswered, which failed:
        the attempt is closed as blocked, never sent."""
        name, record = intent.pu.node.name, intent.record
        record.state = "blocked"  # not a failure of its own: retried once upstream is fixed
        record.info = "not submitted: a task it waits for could not be submitted"
        intent.st.append_status(record.attempt, "blocked", record.info, record=record)
        self.progress.blocked.append(name)
        self.where[intent.pu.key] = "blocked"


def _start(intent: _Intent) -> Callable[[], list[str | PluginError]]:
    """Start one submission; what it returns waits for its job id (or error), as a batch."""
    try:
        answer = intent.transformer.start_submit(intent.pu.node, intent.ctx)
    except PluginError as exc:
        error: str | PluginError = exc
        return lambda: [error]

    def result() -> list[str | PluginError]:
        try:
            return [answer()]
        except PluginError as exc:
            return [exc]
    return result


def _send(batch: list[_Intent]) -> list[str | PluginError]:
    """Submit a batch, one submit_many per transformer (the primary, each burster); per
    intent, in order, its job id or the error that kept it out."""
    groups: dict[int, list[int]] = {}
    for n, intent in enumerate(batch):
        groups.setdefault(id(intent.transformer), []).append(n)
    out: list[str | PluginError] = [PluginError("not submitted")] * len(batch)
    for members in groups.values():
        results = batch[members[0]].transformer.submit_many(
            [(batch[n].pu.node, batch[n].ctx) for n in members])
        for n, result in zip(members, results, strict=True):
            out[n] = result
    return out


def _submitted(intent: _Intent, result: str | PluginError, runner: UnitRunner,
               progress: Progress) -> None:
    """Record one submission's job id, or its failure."""
    name, record, st = intent.pu.node.name, intent.record, intent.st
    if isinstance(result, PluginError):
        record.state = "failed"
        record.info = f"could not submit: {result}"
        st.append_status(record.attempt, "failed", record.info, record=record)
        runner.emit("failed", name, record.info)
        progress.failed.append(name)
        return
    record.job_id = result
    record.state = "queued"
    st.append_status(record.attempt, "queued", f"job {result}", result, record=record)
    runner.emit("submitted", name, f"job {result}"
                + (f" (after {', '.join(intent.after)})" if intent.after else "")
                + (f"; why: {intent.why}" if intent.why else ""))
    progress.submitted.append(name)
    progress.in_flight.append(name)


def _statuses(runner: UnitRunner, records: list[JobRecord]) -> dict[str, JobStatus]:
    """One status query per place for every recorded live job (the primary, each burster)."""
    by_place: dict[str, list[JobRecord]] = {}
    for r in records:
        by_place.setdefault(r.transformer, []).append(r)
    out: dict[str, JobStatus] = {}
    for place, group in by_place.items():
        if place != runner.transformer.name and not (
                runner.burst is not None and on_target(group[0])):
            continue
        transformer = runner._transformer_of(group[0])
        try:
            out |= transformer.status([r.job_id for r in group if r.job_id])
        except PluginError:
            if place == runner.transformer.name:
                raise
    return out


def _save_success(dicts: dict[str, dict[str, Any]], dep: Dependency, pu: PlannedUnit) -> None:
    """Record the completion in doit's database, as a blocking run's doit would."""
    task = dict_to_task(dict(dicts[pu.key]))
    for check, args, kwargs in task.uptodate:
        # config_changed computes the digest it saves only when it is checked.
        if isinstance(check, config_changed):
            check(task, {}, *args, **kwargs)
    task.save_extra_values()
    dep.save_success(task)


def _report(progress: Progress, console: Any, total: int) -> None:
    """The closing line: always when something changed or failed; else only with -v."""
    finished = len(progress.done) == total
    text = (f"{len(progress.done)}/{total} done, {len(progress.in_flight)} in flight "
            f"({len(progress.submitted)} submitted now), {len(progress.failed)} failed, "
            f"{len(progress.blocked)} blocked")
    if finished:
        text = f"complete: all {total} units done"
    elif progress.failed:
        text = "FAILED: " + text + " (failed: " + ", ".join(progress.failed[:10]) + ")"
    console.final(text, force=progress.changed)
