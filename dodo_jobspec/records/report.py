"""`jobspec-do report`: what a spec's runs did, read back from its records.

Nothing here runs anything or takes the lock: like `status`, the report is a view over the
state directory (the journal's histories and job records, the logs, the runs log), so it can
be made while a run is going. This module gathers the data; the HTML is
``report_html``'s job and the graph drawing ``report_graph``'s.

How an attempt's times are known: ``submitting``/``queued`` lines say when a scheduler job
was submitted, a ``running`` line when a local process started, a terminal line when it
ended; the job record adds the exact times of its attempt, including when its scheduler says it
began to run (``run_start``, learnt when polled: Slurm's StartTime, Flux's t_run), which ends
its queue wait. An older attempt of a Slurm job is dated by its ``job.N.started`` file (written
by its script as it starts), else, as an older Flux attempt, by the ``started TIME`` its end
line names (the run start its job record held then).

Where an attempt ran: its job record's ``nodes`` for the latest attempt; for older ones the
status line that names them (``pid P:S on HOST`` as a local process starts, ``job ID on NODES``
as a scheduler job ends). A job a burster took shows the burster as its transformer. A task
inside a group job has its own: its node(s) and start as its group's script recorded them
(tasks/children.py), its queue wait running from its group's submission.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import JSON_FORMAT
from ..spec.model import ResourceRequest, Spec, Task, Unit
from .journal import Journal
from .state import JobRecord, UnitState, read_runs
from .status import lock_holder_alive, started_in, unit_status, where_in

_TERMINAL = ("completed", "failed", "timeout", "canceled", "lost", "interrupted", "blocked",
             "unknown", "not run")
_EXIT = re.compile(r"\bexit (-?\d+)")
_JOB = re.compile(r"^(?:job|pid) (\S+?)[;]?(?:\s|$)")
STDERR_TAIL = 12  # lines of a failed attempt's stderr shown in the report
TAILS = 200  # failed units whose stderr is read; past that, their log paths say where to look


@dataclass
class Attempt:
    """One attempt of a unit (or of one replica), as the records tell it."""

    number: int
    replica: int | None = None
    state: str = "running"  # until a terminal line says otherwise
    submitted: float | None = None  # handed to a scheduler (None for a local process)
    started: float | None = None  # began to run
    ended: float | None = None
    exit_code: int | None = None
    job_id: str | None = None
    info: str = ""
    nodes: str = ""  # where it ran: a host, a Slurm node list, Flux nodes (ranks)
    transformer: str = ""  # who ran it: "slurm", "burst:NAME" for a job a burster took


@dataclass
class UnitReport:
    """One task or group: its status row (as `status --json`) and every attempt."""

    name: str
    kind: str
    state: str
    attempts: int
    exit_code: int | None
    duration: float | None
    job_id: str | None
    info: str
    stdout: str | None
    stderr: str | None
    where: str  # the transformer that ran its last attempt
    resources: str  # the resolved request(s), alternatives joined by " | "
    parent: str | None  # the enclosing group's name
    depends_on: list[str]
    history: list[Attempt] = field(default_factory=list)
    replicas: list[dict[str, Any]] | None = None
    stderr_tail: list[str] = field(default_factory=list)  # failed units only
    nodes: str = ""  # where its last attempt ran (see Attempt.nodes)


@dataclass
class Summary:
    """The spec as a whole."""

    spec: str  # the spec's name
    spec_file: str
    state_dir: str
    generated: float
    run_active: bool  # a run holds the state directory right now
    transformers: list[str]
    first_start: float | None
    last_end: float | None
    wall: float | None
    counts: dict[str, int]  # units by state
    attempts: int  # over every unit
    runs: list[dict[str, Any]]  # the runs log, oldest first: {"time", "command", "transformer"}


@dataclass
class Report:
    """Everything the report shows; ``to_json`` is `report --json`."""

    summary: Summary
    units: list[UnitReport]

    def to_json(self) -> dict[str, Any]:
        """The versioned JSON form (fields are only ever added within one format)."""
        return {"format": JSON_FORMAT, "summary": asdict(self.summary),
                "units": [asdict(u) for u in self.units]}


def build(spec: Spec, root: Path, workers: int | None = None) -> Report:
    """Read the records of every unit of ``spec`` in ``root`` into a Report. ``workers``:
    processes reading them (default: one per core this process may use, for large specs)."""
    active = lock_holder_alive(root)
    nodes = list(spec.nodes.values())
    read = _read_all(root, nodes, active, workers)
    units = [unit for unit, _ in read]
    transformers = {t for _, t in read if t}
    tails = 0
    for unit in units:  # in the spec's order: the first TAILS failed units, whoever read them
        if unit.state not in ("completed", "never run", "running", "queued", "submitting"):
            unit.stderr_tail = _tail(unit.stderr)
            tails += 1
            if tails == TAILS:
                break
    _date_groups(spec, units)
    runs = read_runs(root)
    transformers.update(r["transformer"] for r in runs if r.get("transformer"))
    starts = [t for u in units for a in u.history for t in (a.submitted, a.started) if t]
    ends = [a.ended for u in units for a in u.history if a.ended]
    first = min(starts) if starts else None
    last = max(ends) if ends else None
    summary = Summary(
        spec=spec.name, spec_file=str(spec.path.resolve()), state_dir=str(root),
        generated=time.time(),
        run_active=active, transformers=sorted(transformers), first_start=first,
        last_end=last, wall=round(last - first, 3) if first and last and last >= first
        else None,
        counts=dict(Counter(u.state for u in units).most_common()),
        attempts=sum(len(u.history) for u in units), runs=runs)
    return Report(summary, units)


PER_WORKER = 2000  # units below which a second process costs more than it saves
_READING: tuple[Path, list[Unit], bool, Journal] | None = None  # what forked readers inherit


def _read_all(root: Path, nodes: list[Unit], active: bool, workers: int | None
              ) -> list[tuple[UnitReport, str]]:
    """Each unit's report and transformer, in order. A large spec's records are read by
    forked processes, a contiguous share each, this one taking the first: reading and
    parsing 20,000 small files is CPU-bound, and a second core halves it."""
    global _READING
    journal = Journal(root)
    journal.refresh()  # parsed once, here: forked readers inherit it
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        # Only cores that are free: on a busy machine a second reader only adds its cost
        # (measured: 5.0 s against 4.0 s for 10,000 units at load 12 on 2 cores).
        workers = round(cores - os.getloadavg()[0])
    workers = max(1, min(workers, len(nodes) // PER_WORKER))
    # Only a process with one thread forks: `run --report` builds while doit's threads may
    # still hold locks a forked child would wait on forever.
    if workers == 1 or threading.active_count() > 1 \
            or "fork" not in multiprocessing.get_all_start_methods():
        return _read_share(root, nodes, active, journal)
    step = -(-len(nodes) // workers)
    _READING = (root, nodes, active, journal)  # inherited by the forked readers, never pickled
    try:
        with ProcessPoolExecutor(workers - 1,
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            others = [pool.submit(_read_forked, k * step, (k + 1) * step)
                      for k in range(1, workers)]
            out = _read_share(root, nodes[:step], active, journal)
            for future in others:
                out += future.result()
    finally:
        _READING = None
    return out


def _read_forked(begin: int, end: int) -> list[tuple[UnitReport, str]]:
    """A forked reader's share (see ``_read_all``)."""
    assert _READING is not None
    root, nodes, active, journal = _READING
    return _read_share(root, nodes[begin:end], active, journal)


def _read_share(root: Path, nodes: list[Unit], active: bool, journal: Journal
                ) -> list[tuple[UnitReport, str]]:
    """The report of each of ``nodes``, and the transformer of its last attempt."""
    out = []
    labels: dict[int, str] = {}
    for node in nodes:
        st = UnitState(root, node, journal=journal)
        lines = st.history()
        job = st.read_job()
        row = unit_status(st, active, lines, job)
        history, transformer = _attempts(st, node, lines, job)
        out.append((UnitReport(
            name=row["name"], kind=row["kind"], state=row["state"], attempts=row["attempts"],
            exit_code=row["exit_code"], duration=row["duration"], job_id=row["job_id"],
            info=row["info"], stdout=row["stdout"], stderr=row["stderr"],
            where=transformer or "", resources=_label(node.resources, labels),
            parent=node.parent.name if node.parent else None,
            depends_on=[d.name for d in node.depends_on], history=history,
            replicas=row.get("replicas"), nodes=row["nodes"] or ""), transformer))
    return out


def _date_groups(spec: Spec, units: list[UnitReport]) -> None:
    """Give a group attempt that records no start of its own (the local transformer runs a
    group as its members and records only its end) the earliest start of its members since
    the group's previous attempt ended, so its bar spans its members'."""
    by_key = {node.key: unit for node, unit in zip(spec.nodes.values(), units, strict=True)}
    for node in spec.groups:
        begins = sorted(b for child in node.walk() for a in by_key[child.key].history
                        if (b := a.started or a.submitted) is not None)
        previous = float("-inf")
        for at in by_key[node.key].history:
            if at.started is None and at.submitted is None and at.ended is not None:
                since = [b for b in begins if previous < b <= at.ended]
                at.started = since[0] if since else None
            previous = at.ended if at.ended is not None else previous


def _label(requests: tuple[ResourceRequest, ...], seen: dict[int, str]) -> str:
    """The resolved request(s) as text; tasks that share their resources share the text."""
    text = seen.get(id(requests))
    if text is None:
        text = seen[id(requests)] = " | ".join(r.label for r in requests)
    return text


def _attempts(st: UnitState, node: Unit, lines: list[dict[str, str]], job: JobRecord
              ) -> tuple[list[Attempt], str]:
    """Every attempt of one unit (per replica when its replicas ran apart), and the
    transformer of its last one."""
    attempts: dict[int, Attempt] = {}
    transformer = ""
    for line in lines:
        number = int(line["attempt"]) if line["attempt"].isdigit() else 0
        at = attempts.setdefault(number, Attempt(number))
        t, state, info = float(line["timestamp"]), line["state"], line["info"] or ""
        m = _JOB.match(info)
        if m and not at.job_id:
            at.job_id = m.group(1)
        if state == "submitting":
            at.submitted = at.submitted or t
            transformer = info or transformer
            at.transformer = info
        elif state in ("queued", "attached"):
            at.submitted = at.submitted or t
        elif state == "running":
            at.started = at.started or t
            at.nodes = at.nodes or where_in(info)
        elif state in _TERMINAL:
            at.state, at.ended, at.info = state, t, info
            at.nodes = where_in(info) or at.nodes
            at.started = at.started or started_in(info)
            m = _EXIT.search(info)
            at.exit_code = int(m.group(1)) if m else (0 if state == "completed" else None)
    transformer = job.transformer or transformer
    at = attempts.get(job.attempt)
    if at is not None and job.attempt:
        _merge_record(at, job, st)
    for older in attempts.values():
        if older is not at and older.submitted is not None:
            # An older scheduler attempt: its Slurm script's start file, if it wrote one (to
            # the millisecond), else the start its end line names (Slurm's in whole seconds).
            with contextlib.suppress(OSError):
                older.started = os.stat(f"{st.dir_str}/job.{older.number}.started").st_mtime
            if older.started is not None:
                older.started = max(older.started, older.submitted)
    n = node.replicas if isinstance(node, Task) else 1
    replicas = [st.read_job(r) for r in range(n if n > 1 else 0)]
    if any(rec.attempt for rec in replicas):
        # Replicas run apart share the task's history, whose lines do not say which
        # replica wrote them: each replica's own record gives its latest attempt.
        rows = []
        for r, rec in enumerate(replicas):
            if rec.attempt:
                rep = Attempt(rec.attempt, replica=r)
                _merge_record(rep, rec, st)
                rows.append(rep)
        return rows, transformer
    return [attempts[k] for k in sorted(attempts) if k], transformer


def _merge_record(at: Attempt, rec: JobRecord, st: UnitState) -> None:
    """Take what a job record knows exactly of its attempt."""
    polled = rec.transformer not in ("", "local")
    if polled:
        at.submitted = at.submitted or rec.started
        # A Slurm job's script writes this as it starts: the end of its queue wait, to the
        # millisecond (Slurm's StartTime has whole seconds). Else the scheduler's word.
        started = Path(f"{st.dir_str}/job.{rec.attempt}.started")
        try:
            at.started = started.stat().st_mtime
        except OSError:
            at.started = rec.run_start or at.started
        if at.started is not None and at.submitted is not None:
            at.started = max(at.started, at.submitted)  # a start in whole seconds
    else:
        at.started = rec.started or at.started
    at.nodes = rec.nodes or at.nodes
    at.transformer = rec.transformer or at.transformer
    if rec.state in _TERMINAL:
        at.state = rec.state
        at.ended = rec.finished or at.ended
        at.exit_code = rec.exit_code if rec.exit_code is not None else at.exit_code
    at.job_id = rec.job_id or at.job_id
    at.info = at.info or rec.info


def _tail(path: str | None, lines: int = STDERR_TAIL) -> list[str]:
    """The last ``lines`` lines of a log (read from its end: a log may be large)."""
    if not path:
        return []
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 8192))
            data = fh.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]
