"""Small helpers shared by the tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from dodo_jobspec import SpecError, load
from dodo_jobspec.errors import Problem
from dodo_jobspec.model import Resource, Spec

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
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
