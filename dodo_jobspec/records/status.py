"""Read a spec's records without running anything: status, logs, cancel.

These commands read the state directory only (no doit, no lock for reading), so they answer
while a run is in progress and from any machine that sees the files.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import JSON_FORMAT as STATUS_FORMAT
from ..errors import EXIT_FAILED, EXIT_OK, JobspecError
from ..spec.model import Spec, Task
from ..spec.resolve import load
from .state import (
    JobRecord,
    StateDir,
    UnitState,
    default_state_dir,
    lock_holder,
    read_record,
    unusable,
)


def open_state(spec_path: Path, state_dir: Path | None) -> StateDir:
    from ..transformers.local import LocalTransformer

    spec = load(spec_path, default_resources=LocalTransformer.default_resources)
    state = StateDir(state_dir or default_state_dir(spec_path), spec)
    try:
        if not stat.S_ISDIR(os.stat(state.root).st_mode):
            raise unusable(state.root, FileExistsError(errno.EEXIST, "File exists",
                                                       str(state.root)))
    except FileNotFoundError:
        pass  # nothing ran yet: every unit is "never run"
    except OSError as exc:  # a part of the path is a file
        raise unusable(state.root, exc) from None
    state.check_owner()
    return state


# States a run records while it owns a job; after a kill -9 of that run they stay on disk.
_IN_FLIGHT = ("submitting", "queued", "running")
_ENDED_BADLY = ("failed", "timeout", "canceled", "lost", "interrupted", "blocked", "unknown")


def unit_status(st: UnitState, run_active: bool | None = None,
                history: list[dict[str, str]] | None = None,
                job: JobRecord | None = None) -> dict[str, Any]:
    """One unit's status as plain data (the `status --json` entry).

    A process that a run started on this machine dies with the run (its watchdog kills it),
    so when the run is gone without recording the end (killed with -9), the unit is ``lost``,
    not the ``running`` on disk. ``run_active`` says whether a run holds the state directory
    (None: look it up). Slurm and Flux jobs outlive their run and keep their recorded state.
    ``history`` and ``job`` are its history and job record when the caller has read them
    already (the report reads every unit's)."""
    if history is None:
        history = st.history()
    if job is None:
        job = st.read_job()
    last = history[-1] if history else None
    if last is None or last["state"] in _IN_FLIGHT:
        done = read_record(st.done_str, lenient=True)
        if done.state == "completed" and (last is None
                                          or str(done.attempt) == last["attempt"]):
            # Its end reached done.json but not the journal (a power loss took the journal's
            # last lines, or the journal itself): doit goes by done.json, and so does this.
            job, last = done, {"timestamp": str(done.finished or 0), "attempt":
                               str(done.attempt), "state": "completed", "info": done.info}
    state = last["state"] if last else "never run"
    info = last["info"] if last else ""
    newer = int(last["attempt"]) if last and last["attempt"].isdigit() else 0
    if newer > job.attempt:
        # An attempt whose job record is not written yet (a local run writes it at the end):
        # nothing of the older attempt's record describes it.
        attempt, job_id, exit_code, duration = newer, _local_job_id(info), None, None
        nodes = where_in(info)
    else:
        attempt = job.attempt or st.last_attempt()
        job_id, exit_code, duration = job.job_id, job.exit_code, None
        nodes = job.nodes
        if state == "queued" and job.state == "running" and str(job.attempt) == last["attempt"]:
            state = "running"  # a poll saw it start: said in its record, not its history
        if job.started and job.finished and job.finished >= job.started:
            duration = round(job.finished - job.started, 3)
    if last and state in _IN_FLIGHT and _owned_by_run(job, last):
        if run_active is None:
            run_active = lock_holder_alive(Path(st.dir_str).parents[1])
        if not run_active and not _local_process_alive(info):
            state, info = "lost", ("its run ended without recording how (killed?) and took "
                                   "the process with it: `jobspec-do --resume` runs it again")
    row: dict[str, Any] = {
        "name": st.unit.name, "kind": "group" if st.unit.is_group else "task",
        "state": state, "attempts": attempt, "job_id": job_id,
        "exit_code": exit_code, "duration": duration,
        "updated": float(last["timestamp"]) if last else None,
        "info": info,
        "nodes": nodes or None,  # where it runs or ran: host, Slurm node list, Flux nodes/ranks
        # Strings made directly: a Path per log costs more than reading the records (report).
        "stdout": f"{st.dir_str}/stdout.{attempt}" if attempt else None,
        "stderr": f"{st.dir_str}/stderr.{attempt}" if attempt else None,
    }
    burst = job.extra.get("burst") if job.extra else None
    if isinstance(burst, dict) and attempt == job.attempt:  # where a burst sent it (bursters/)
        row["burst"] = {k: burst.get(k) for k in ("target", "from", "state")}
    n = st.unit.replicas if isinstance(st.unit, Task) else 1
    if n > 1 and attempt:
        # Replicas log to stdout.N.R: there is no stdout.N. A scheduler's job array keeps no
        # record per replica, so replica 0's logs stand for it.
        row["stdout"], row["stderr"] = str(st.stdout(attempt, 0)), str(st.stderr(attempt, 0))
        replicas = _replica_rows(st, n)
        if replicas is not None:
            _merge_replicas(row, replicas, history)
    return row


def _replica_rows(st: UnitState, n: int) -> list[dict[str, Any]] | None:
    """Each replica's latest recorded attempt (job.R.json), or None when no replica has a
    record of its own (a scheduler ran them as one job, described by the task's record)."""
    records = [st.read_job(r) for r in range(n)]
    if not any(rec.attempt for rec in records):
        return None
    return [{"replica": r, "state": rec.state if rec.attempt else "never run",
             "attempt": rec.attempt or None, "job_id": rec.job_id,
             "exit_code": rec.exit_code, "nodes": rec.nodes or None,
             "info": rec.info or (f"exit {rec.exit_code}" if rec.exit_code else ""),
             "stdout": str(st.stdout(rec.attempt, r)) if rec.attempt else None,
             "stderr": str(st.stderr(rec.attempt, r)) if rec.attempt else None}
            for r, rec in enumerate(records)]


def _merge_replicas(row: dict[str, Any], replicas: list[dict[str, Any]],
                    history: list[dict[str, str]]) -> None:
    """Make ``row`` say what all replicas came to, not what the last to finish recorded.

    The replicas of a task share its history, so its last line is whichever replica
    finished last: the task completed only if every replica's latest attempt did."""
    row["replicas"] = replicas
    if row["state"] == "lost":  # the run died with its replicas: that says it all
        return
    n = len(replicas)
    # A running replica has no record of that attempt yet (a local run writes it at the end),
    # but its "running" line names a process that no record names and that is still alive.
    finished = {rep["job_id"] for rep in replicas}
    live = {line["info"] for line in history if line["state"] == "running"
            and _local_job_id(line["info"]) not in finished}
    running = sum(1 for info in live if _local_process_alive(info))
    # While some run, a replica without a record may be one of them: only failures count.
    bad = [rep for rep in replicas if rep["state"] != "completed"
           and not (running and rep["state"] == "never run")]
    bad.sort(key=lambda rep: rep["state"] == "never run")  # those that ran say more
    notes = [f"{running} of {n} replicas running"] if running else []
    if bad:
        first = bad[0]
        note = f"replica {first['replica']} of {n} {first['state']}"
        note += f": {first['info']}" if first["info"] else ""
        if len(bad) > 1:
            others = ", ".join(str(rep["replica"]) for rep in bad[1:11])
            note += f"; also replica{'s' if len(bad) > 2 else ''} {others}"
            note += ", ..." if len(bad) > 11 else ""
        notes.append(note)
        row.update(exit_code=first["exit_code"], job_id=first["job_id"])
        if first["stdout"]:
            row.update(stdout=first["stdout"], stderr=first["stderr"])
    elif replicas[0]["stdout"]:
        row.update(stdout=replicas[0]["stdout"], stderr=replicas[0]["stderr"])
    if running:
        row["state"] = "running"
    elif bad and row["state"] not in _IN_FLIGHT:
        row["state"] = bad[0]["state"]
    if notes:
        row["info"] = "; ".join(notes)


def _owned_by_run(job: JobRecord, last: dict[str, str]) -> bool:
    """Whether the in-flight attempt in ``last`` was a process of the run itself: a local
    one, or any whose transformer keeps no queue (those write their record only at the end,
    so the record is an older attempt's or none). A queued job's record is written first."""
    if str(job.attempt) != last.get("attempt"):
        return True
    return job.transformer == "local"


def where_in(info: str) -> str:
    """The nodes a status line names: ``pid P:S on HOST`` (a local process starting) or
    ``job ID on NODES; ...`` (a scheduler job's end); "" when it names none."""
    head = info.split(";", 1)[0]
    if head.startswith(("pid ", "job ")) and " on " in head:
        return head.split(" on ", 1)[1].strip()
    return ""


def _local_job_id(info: str) -> str | None:
    """The job id in a local "running" line's info (``pid PID:STARTTIME``), if it is one."""
    if not info.startswith("pid "):
        return None
    return next(iter(info[4:].split(";")[0].split()), None)  # "pid P:S on HOST" since #22


def _local_process_alive(info: str) -> bool:
    """Whether the process named in a local "running" line is alive: the watchdog may not
    have killed it yet."""
    from ..transformers.local import process_alive

    job_id = _local_job_id(info)
    return job_id is not None and process_alive(job_id) and not _dead(job_id.split(":")[0])


def _dead(pid: str) -> bool:
    """Whether ``pid`` is gone or a zombie: a killed task stays one until its new parent
    reaps it, which in a container can take a second or more."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def lock_holder_alive(root: Path) -> bool:
    """Whether a run holds ``root`` now. Where the kernel's lock table cannot be read (not
    Linux), a run may: the recorded states are then shown as they are.

    After a kill -9, the run's watchdog holds the lock a moment longer (the kernel still
    names the dead run): that run is not active."""
    try:
        pid = lock_holder(root)
    except OSError:
        return True
    return pid is not None and (not os.path.isdir("/proc/self") or not _dead(str(pid)))


def mark_stale(rows: list[dict[str, Any]], upstream: dict[str, list[str]]) -> None:
    """A completed unit downstream of one that is not completed will run again: show it as
    ``waiting`` (what it waits on is queued or running) or ``blocked`` (that one failed, or
    never ran), naming it. ``upstream`` maps a unit's key to its dependencies' keys, in an
    order where dependencies come first (the plan's)."""
    by_key = {r["key"]: r for r in rows}
    for key, deps in upstream.items():
        row = by_key.get(key)
        if row is None or row["state"] != "completed":
            continue
        stale = next((by_key[d] for d in deps if d in by_key
                      and by_key[d]["state"] != "completed"), None)
        if stale is None:
            continue
        waits = stale["state"] in (*_IN_FLIGHT, "attached", "waiting")
        row["state"] = "waiting" if waits else "blocked"
        row["info"] = (f"out of date: upstream {stale['kind']} '{stale['name']}' is "
                       f"{stale['state']}; it runs again after that one completes")


def print_status(spec_path: Path, state_dir: Path | None, as_json: bool = False,
                 upstream: Callable[[Spec], dict[str, list[str]]] | None = None) -> int:
    """`jobspec-do status`: exit 0 when every unit completed, 1 otherwise. ``upstream``
    gives each unit's dependencies (see mark_stale)."""
    state = open_state(spec_path, state_dir)
    active = lock_holder_alive(state.root)
    rows = [unit_status(state.unit(n), active) for n in state.spec.nodes.values()]
    for node, row in zip(state.spec.nodes.values(), rows, strict=True):
        row["key"] = node.key
    if upstream is not None:
        mark_stale(rows, upstream(state.spec))
    for row in rows:
        del row["key"]
    all_done = all(r["state"] == "completed" for r in rows)
    if as_json:
        print(json.dumps({"format": STATUS_FORMAT, "spec": str(spec_path),
                          "state_dir": str(state.root), "complete": all_done, "units": rows},
                         indent=2))
    else:
        names = [r["name"] + ("/" if r["kind"] == "group" else "") for r in rows]
        width = max([len("TASK"), *map(len, names)])
        print(f"{'TASK':<{width}}  {'STATE':<11} {'TRIES':>5} {'EXIT':>4} {'SECS':>8}  JOB")
        for name, r in zip(names, rows, strict=True):
            exit_code = "" if r["exit_code"] is None else str(r["exit_code"])
            secs = "" if r["duration"] is None else f"{r['duration']:.1f}"
            print(f"{name:<{width}}  {r['state']:<11} {r['attempts']:>5} {exit_code:>4} "
                  f"{secs:>8}  {r['job_id'] or ''}{_where(r)}")
            if r["info"] and (r["state"] in _ENDED_BADLY or (
                    r["state"] != "completed" and "replicas" in r)):
                # The row alone cannot say why (a missing output exits 0), which replica it is
                # about, nor where its logs are.
                logs = f" (logs: {r['stderr']})" if r["stderr"] else ""
                print(f"  {r['info']}{logs}")
    return EXIT_OK if all_done else EXIT_FAILED


def _where(row: dict[str, Any]) -> str:
    """Where a burst sent the unit's job, for the table."""
    burst = row.get("burst")
    if not burst or burst.get("state") not in ("moved", "direct"):
        return ""
    moved = f", moved from job {burst['from']}" if burst.get("from") else ""
    return f" (on {burst['target']}{moved})"


def print_logs(spec_path: Path, state_dir: Path | None, task: str, attempt: int | None,
               follow: bool) -> int:
    """`jobspec-do logs`: the stdout and stderr of one attempt of a task."""
    state = open_state(spec_path, state_dir)
    nodes = state.spec.find(task)
    if not nodes:
        raise JobspecError(f"no task or group '{task}' in {spec_path}")
    st = state.unit(nodes[0])
    n = attempt or st.last_attempt()
    if not n:
        raise JobspecError(f"'{task}' has not run yet")
    paths = sorted(st.dir.glob(f"stdout.{n}*")) + sorted(st.dir.glob(f"stderr.{n}*"))
    if not paths:
        raise JobspecError(f"no logs for attempt {n} of '{task}' in {st.dir}")
    offsets: dict[Path, int] = {}
    for path in paths:
        print(f"==> {path} <==")
        data = path.read_bytes()
        sys.stdout.write(data.decode(errors="replace"))
        offsets[path] = len(data)
    while follow:  # like tail -f, until the attempt is no longer queued or running
        running = _live_attempt(st, n)
        for path in sorted(st.dir.glob(f"std*.{n}*")):
            with open(path, "rb") as fh:
                fh.seek(offsets.get(path, 0))
                new = fh.read()
            if new:
                offsets[path] = offsets.get(path, 0) + len(new)
                sys.stdout.write(new.decode(errors="replace"))
                sys.stdout.flush()
        if not running:
            break
        time.sleep(0.3)
    return EXIT_OK


def _live_attempt(st: UnitState, attempt: int) -> bool:
    st.journal.refresh()  # the run appends as it goes
    rows = [r for r in st.history() if r["attempt"] == str(attempt)]
    return bool(rows) and rows[-1]["state"] in ("submitting", "queued", "running", "attached")


_STARTED = re.compile(r"(?:^|; )started (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)(?:;|$)")


def started_note(t: float) -> str:
    """How an attempt's end line says when it began to run: ``started <UTC ISO time>``.

    In the status line, not only in job.json, because the history outlives the record: the
    report dates older attempts from it. UTC with a Z, so a reader in another zone (or a
    machine whose zone changed) reads the same instant."""
    return "started " + datetime.fromtimestamp(t, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def started_in(info: str) -> float | None:
    """The start a status line's ``started ...`` part names (see ``started_note``), or None."""
    m = _STARTED.search(info)
    return datetime.fromisoformat(m.group(1)).timestamp() if m else None
