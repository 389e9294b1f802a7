"""Moving one task's job to a burster, exactly once, and following it there.

A move is three records, each the task's job record then a history line, appended to the
journal, so that a kill -9 between any two steps is finished by the next run:

1. ``moving``: the record still names the primary's job P, and says where it is going.
2. the primary takes P back (``withdraw``): held, cancelled, confirmed ended without having
   started. If P had started, it stays: the ``moving`` mark is dropped, P is waited for.
3. ``moved``: the record names the target (``transformer: burst:<name>``), P as ``from``, a
   new token and no job id yet; then the target's submission and its job id (``queued``).

After a kill in 1-2 the next run withdraws P again (idempotent: a held or cancelled job that
never started stays never-started) and carries on; after 3 it finds the target's job by the
new token, as after any interrupted submission. A task whose job is on a target is submitted,
polled, cancelled and found there by the burster rebuilt from its record, not from the config:
`status`, `cancel`, `--resume` and `--no-wait` ticks follow it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import PluginError
from ..records.state import JobRecord, UnitState
from ..spec.model import Unit
from ..transformers.base import JobState, JobStatus, Transformer, UnitContext
from .base import Burster, from_record
from .policy import BurstPolicy

PREFIX = "burst:"  # a record's transformer when its job runs on a burster
Emit = Callable[[str, str, str], None]


def burst_of(record: JobRecord) -> dict[str, Any] | None:
    """The move a record describes, if any."""
    data = record.extra.get("burst") if record.extra else None
    return data if isinstance(data, dict) else None


def on_target(record: JobRecord) -> bool:
    """Whether ``record``'s job id is a burster's, not the primary's."""
    return record.transformer.startswith(PREFIX)


@dataclass
class Records:
    """Where one unit's records go (the job record may be a replica's)."""

    st: UnitState
    replica: int | None = None

    def save(self, record: JobRecord) -> None:
        self.st.write_job(record, self.replica)

    def log(self, record: JobRecord, state: str, info: str, job_id: str | None = None) -> None:
        self.st.append_status(record.attempt, state, info, job_id)


@dataclass
class BurstDriver:
    """The engine's one handle on bursting: for a run (blocking or a --no-wait tick)."""

    policy: BurstPolicy
    primary: Transformer
    emit: Emit
    state_dir: Path | None = None
    interrupted: threading.Event = field(default_factory=threading.Event)
    _places: dict[str, Burster] = field(default_factory=dict)
    _primary_site: Burster | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _told: set[tuple[str, str]] = field(default_factory=set)

    # -- where a record's job lives -----------------------------------------------------------
    def follows(self, unit: Unit, record: JobRecord) -> bool:
        """Whether this driver waits for ``record``'s job (else the engine's batched poller):
        a job on a burster, or a selected task's job that may still move."""
        return self.owns(record) or (self.policy.selected(unit) and any(
            b.settings.after is not None for b in self.policy.bursters))

    def owns(self, record: JobRecord) -> bool:
        """Whether ``record`` is (or is being) moved: the driver answers for its job."""
        return on_target(record) or (burst_of(record) or {}).get("state") == "moving"

    def place_of(self, record: JobRecord) -> Burster:
        """The burster holding ``record``'s job, rebuilt from the record."""
        data = burst_of(record) or {}
        label = record.transformer[len(PREFIX):]
        with self._lock:
            if label not in self._places:
                mine = {b.label: b for b in self.policy.bursters}
                self._places[label] = mine.get(label) or from_record(
                    data.get("place") or {}, self.state_dir)
            return self._places[label]

    def transformer_for(self, record: JobRecord) -> Transformer:
        """The transformer that knows ``record``'s job."""
        return self.place_of(record).transformer() if on_target(record) else self.primary

    def primary_site(self) -> Burster | None:
        """The primary seen as a place (capacity, withdraw): its built-in burster."""
        from .. import plugins

        if self._primary_site is None and self.primary.name in plugins.names(plugins.BURSTERS):
            cls = plugins.load(plugins.BURSTERS, self.primary.name)
            self._primary_site = cls(cls.Settings(name=self.primary.name), self.state_dir)
        return self._primary_site

    # -- before submitting --------------------------------------------------------------------
    def straight_to(self, unit: Unit) -> tuple[Burster | None, str]:
        """A burster for a selected ``unit`` the primary cannot take at all, and why."""
        if not self.policy.selected(unit):
            return None, ""
        req, _ = self.primary.choose(unit)
        site = self.primary_site()
        refusal = site.cannot_take(req) if site is not None else None
        if refusal is None:
            return None, ""
        target, why = self.policy.first_taker(unit, req)
        if target is None:
            return None, (f"the {self.primary.name} primary cannot take it ({refusal}) and no "
                          "burster can: " + "; ".join(why))
        return target, f"the {self.primary.name} primary cannot take it: {refusal}"

    def direct(self, unit: Unit, record: JobRecord, rec: Records) -> Transformer:
        """Before the intent is acted on: send a selected task the primary cannot take straight
        to a burster (the record says so before anything is submitted). The transformer to
        submit with."""
        target, why = self.straight_to(unit)
        if target is None:
            if why:  # the primary will refuse it too: the history says why it was not moved
                rec.log(record, "stays", why)
                self.emit("stays", unit.name, why)
            return self.primary
        record.transformer = PREFIX + target.label
        record.extra = {**record.extra, "burst": {
            "state": "direct", "target": target.label, "place": target.to_record(),
            "from": None, "from_transformer": self.primary.name, "why": why}}
        rec.save(record)
        rec.log(record, "burst", f"to {target.label}: {why}")
        self.emit("burst", unit.name, f"to {target.label}: {why}")
        with self._lock:
            self._places[target.label] = target
        return target.transformer()

    def plan(self, unit: Unit, ctx: UnitContext) -> list[str]:
        """What `plan` says about ``unit``: whether and when it may burst, where, and what
        the target would run (as comment lines before the primary's commands)."""
        if not self.policy.selected(unit):
            return []
        target, why = self.straight_to(unit)
        if target is not None:
            return [f"# bursts to {target.label}: {why}", f"# on {target.describe()}:",
                    *("#   " + ln for ln in target.transformer().describe(unit, ctx)
                      .splitlines()), f"# (instead of, on {self.primary.name}:)"]
        if why:
            return [f"# stays on {self.primary.name}: {why}"]
        req, _ = self.primary.choose(unit)
        lines, refused = [], []
        for b in self.policy.candidates(unit):
            if b.settings.after is None:
                continue
            refusal = self.policy.refusal(unit, b, req)
            if refusal is not None:
                refused.append(f"{b.label}: {refusal}")
                continue
            lines.append(f"# may burst to {b.label} when it has waited {b.settings.after:g}s "
                         f"in the {self.primary.name} queue; on {b.describe()}:")
            lines += ["#   " + ln for ln in b.transformer().describe(unit, ctx).splitlines()]
        if not lines:
            return [f"# stays on {self.primary.name}: no burster has `after`"
                    + (" or can take it (" + "; ".join(refused) + ")" if refused else "")]
        return lines

    # -- waiting, and moving when the wait is too long ------------------------------------------
    def wait(self, unit: Unit, ctx: UnitContext, record: JobRecord, rec: Records,
             poll: float = 1.0) -> JobStatus:
        """Poll ``record``'s job wherever it is until it ends; move it when it has waited in
        the primary's queue past a burster's ``after``."""
        delay = min(0.2, poll)
        movable = self.policy.selected(unit) and any(
            b.settings.after is not None for b in self.policy.bursters)
        while True:
            transformer = self.transformer_for(record)
            job_id = record.job_id
            assert job_id is not None
            if self.interrupted.is_set():
                transformer.cancel([job_id])
                return JobStatus(JobState.CANCELED, None, "interrupted")
            if not transformer.polled:  # a local process: waited on, not polled
                return transformer.wait(job_id)
            status = transformer.status([job_id]).get(job_id, JobStatus(JobState.LOST))
            if status.state.terminal:
                return status
            if record.place(status.where, status.started, status.state == JobState.RUNNING):
                rec.save(record)  # where it runs, while it runs (`status`, `report`)
            if movable and status.state == JobState.QUEUED and not on_target(record):
                if self.move_if_due(unit, ctx, record, rec):
                    delay = min(0.2, poll)
                    continue
                # It started on the primary before it could be taken back: it stays there.
                movable = (burst_of(record) or {}).get("state") != "stayed"
            time.sleep(delay)
            delay = min(delay * 1.5, poll)

    def move_if_due(self, unit: Unit, ctx: UnitContext, record: JobRecord, rec: Records
                    ) -> bool:
        """For a --no-wait tick: move ``record``'s queued primary job if it has waited past a
        burster's ``after``. True when it moved (``record`` names the new job)."""
        if on_target(record) or not self.policy.selected(unit) or not record.job_id \
                or (burst_of(record) or {}).get("state") == "stayed":
            return False
        waited = time.time() - (record.started or time.time())
        req, _ = self.primary.choose(unit)
        target, why = self.policy.first_taker(unit, req, waited)
        if target is None:
            note = "no burster can take it: " + "; ".join(why)
            if why and (record.token, note) not in self._told:
                # Due to move, but no burster can take it: say why, once (a --no-wait tick
                # is a new process: the history's last line tells it it was said).
                self._told.add((record.token, note))
                last = rec.st.history()[-1:]
                if not last or (last[0]["state"], last[0]["info"]) != ("stays", note):
                    rec.log(record, "stays", note, record.job_id)
            return False
        return self.move(unit, ctx, record, rec, target, waited)

    def move(self, unit: Unit, ctx: UnitContext, record: JobRecord, rec: Records,
             target: Burster, waited: float) -> bool:
        """Take the primary's job back and submit it to ``target``; False if it had started."""
        job_id = record.job_id
        record.extra = {**record.extra, "burst": {
            "state": "moving", "target": target.label, "place": target.to_record(),
            "from": job_id, "from_transformer": record.transformer,
            "why": f"waited {waited:.0f}s in the {self.primary.name} queue (after: "
                   f"{target.settings.after:g}s)"}}
        rec.save(record)
        rec.log(record, "moving", f"job {job_id} waited {waited:.0f}s queued: taking it back "
                f"to move it to {target.label}", job_id)
        with self._lock:
            self._places[target.label] = target
        return self.settle(unit, ctx, record, rec)

    def settle(self, unit: Unit, ctx: UnitContext, record: JobRecord, rec: Records) -> bool:
        """Finish a move recorded as ``moving`` (now, or by a run that was killed): True when
        the job now lives on the target (``record`` updated), False when it stays."""
        data = dict(burst_of(record) or {})
        if data.get("state") != "moving":
            return on_target(record)
        job_id = str(data.get("from"))
        site = self.primary_site()
        try:
            if site is None:
                raise PluginError(f"the {self.primary.name} transformer has no burster to "
                                  "take a queued job back")
            gone = site.withdraw(job_id)
        except PluginError as exc:
            gone = False
            note = f"could not take job {job_id} back ({exc}): it stays"
        else:
            note = f"job {job_id} started before it could be taken back: it stays"
        if not gone:
            data["state"] = "stayed"
            record.extra = {**record.extra, "burst": data}
            rec.save(record)
            rec.log(record, "stays", note, job_id)
            self.emit("stays", unit.name, note)
            return False
        label = str(data.get("target"))
        data["state"] = "moved"
        record.transformer = PREFIX + label
        record.token = f"{record.token.split('~')[0]}~{label}"
        record.job_id = None
        record.state = "submitting"
        record.extra = {**record.extra, "burst": data}
        rec.save(record)
        rec.log(record, "moved", f"job {job_id} was cancelled before it started; submitting "
                f"to {label}", job_id)
        transformer = self.transformer_for(record)
        record.job_id = transformer.submit(unit, replace(ctx, token=record.token))
        record.state = "queued"
        rec.save(record)
        rec.log(record, "queued", f"job {record.job_id} on {label} (moved from job {job_id})",
                record.job_id)
        self.emit("moved", unit.name, f"job {job_id} -> {label} job {record.job_id}")
        return True

    def reattach(self, unit: Unit, ctx: UnitContext, record: JobRecord, rec: Records
                 ) -> tuple[Transformer, str | None]:
        """For a record this driver owns, after a kill: finish an interrupted move, then the
        transformer that knows the job, and its id (found by token if it was never recorded;
        None: it never reached the target, and the attempt starts afresh)."""
        if (burst_of(record) or {}).get("state") == "moving":
            self.settle(unit, ctx, record, rec)
        transformer = self.transformer_for(record)
        job_id = record.job_id
        if job_id is None:
            job_id = transformer.find(unit, replace(ctx, token=record.token))
            if job_id is not None:
                record.job_id = job_id
                record.state = "queued"
                rec.save(record)
                rec.log(record, "queued", f"job {job_id} (found by token on "
                        f"{record.transformer[len(PREFIX):]})", job_id)
        return transformer, job_id

    def close(self, live: Callable[[str], bool]) -> None:
        """The run is over: each burster learns whether a job still lives on it."""
        self.policy.close(lambda b: live(PREFIX + b.label))
