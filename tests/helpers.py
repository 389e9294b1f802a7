"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dodo_jobspec import SpecError, load
from dodo_jobspec.errors import Problem
from dodo_jobspec.records.journal import Journal, UnitLog
from dodo_jobspec.spec.model import Resource, Spec

# Beside the checkout; $JOBSPEC_DO_REFERENCE elsewhere (a worktree one level deeper).
REFERENCE = Path(os.environ.get("JOBSPEC_DO_REFERENCE")
                 or Path(__file__).resolve().parents[2] / "shared" / "reference")
ONE_CORE = Resource("core", 1)


def write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    """Write a dedented spec file into ``folder``."""
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load_text(folder: Path, text: str, default: Resource | None = ONE_CORE,
              strict: bool = False) -> Spec:
    """Load a spec given as text."""
    return load(write(folder, text), default_resources=default, strict=strict)


def problems(folder: Path, text: str, default: Resource | None = ONE_CORE,
             strict: bool = False) -> list[Problem]:
    """The problems a spec given as text produces (fails the test if it loads)."""
    try:
        load_text(folder, text, default, strict)
    except SpecError as exc:
        return exc.problems
    raise AssertionError("the spec loaded, but problems were expected")


def jobspec_do(*args: str | Path, cwd: Path | None = None, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `jobspec-do` command line in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def counts(folder: Path) -> dict[str, int]:
    """How often each counted command ran: tests' commands append a line to count.<name>."""
    return {p.name.split(".", 1)[1]: len(p.read_text().splitlines())
            for p in sorted(folder.glob("count.*"))}


# A unit's records live in its state folder's journal (dodo_jobspec/records/journal.py); the
# tests name a unit by its folder (<state>/tasks/<name>), as a user finds it on disk.
def _journal_log(folder: Path) -> UnitLog | None:
    return Journal(folder.parent.parent).unit(f"{folder.parent.name}/{folder.name}")


def history_text(folder: Path) -> str:
    """The unit's history as the lines of a CSV file with a header line (``timestamp,
    attempt,state,info``); "" if it has none."""
    log = _journal_log(folder)
    if not log or not log.history:
        return ""
    return "timestamp,attempt,state,info\n" + "".join(
        f"{t:.3f},{a},{s},{i}\n" for t, a, s, i in log.history)


def job_record(folder: Path, replica: int | None = None) -> dict[str, object]:
    """The unit's (or a replica's) current job record as a dict ({} if it has none)."""
    log = _journal_log(folder)
    return dict(log.records.get(replica, {})) if log else {}


def has_records(folder: Path) -> bool:
    """Whether the journal holds any line of the unit."""
    log = _journal_log(folder)
    return bool(log and (log.history or log.records))


def set_record(folder: Path, **changes: object) -> None:
    """Change the unit's current job record as a run would: one more journal line."""
    import json

    rec = {**job_record(folder), **changes}
    line = json.dumps({"u": f"{folder.parent.name}/{folder.name}", "rec": rec})
    with open(folder.parent.parent / "journal.jsonl", "a") as fh:
        fh.write(line + "\n")
