"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dodo_jobspec import SpecError, load
from dodo_jobspec.errors import Problem
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
