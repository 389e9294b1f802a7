"""Two specs of one project folder writing one file: said by `validate`, `plan` and
`--dry-run` as a warning, refused by `run` (exit 2) unless it is given
``--allow-shared-outputs``.

What the other specs write is known from their runs (records/claims.py): a spec that never
ran here claims nothing yet, and is told once it runs and the other is run again.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import JobspecError, Problem
from ..plan import with_lines, written
from ..records import claims
from ..spec.model import Spec

FLAG = "--allow-shared-outputs"


class SharedOutputsError(JobspecError):
    """A run refused because another spec of the folder writes one of its files (exit 2)."""


def _files(spec: Spec) -> tuple[dict[str, str | None], dict[str, tuple[str | int, ...]]]:
    """path -> digest (None if any writer's content is unknown), and path -> where first."""
    files: dict[str, str | None] = {}
    where: dict[str, tuple[str | int, ...]] = {}
    for w in written(spec):
        if w.path in files and files[w.path] != w.digest:
            files[w.path] = None  # two writers in this spec (a step and an output)
        else:
            files.setdefault(w.path, w.digest)
        where.setdefault(w.path, w.where)
    return files, where


def problems(spec: Spec, root: Path, run: bool = False) -> list[Problem]:
    """One problem per file that another spec of the folder writes too, located in ``spec``
    (``root``: this spec's state folder). ``run``: worded for `run`, which refuses."""
    files, where = _files(spec)
    found = claims.others(spec.path, root, files)
    if not found:
        return []
    base = os.path.realpath(spec.path.parent)
    out = []
    for claim in found:
        shown = os.path.relpath(claim.path, base) if claim.path.startswith(base + os.sep) \
            else claim.path
        other = os.path.basename(claim.spec)
        hint = ("each run overwrites what the other wrote: have one write another file, or "
                "keep the specs in folders of their own"
                + ("" if run else f" (`run` refuses this without {FLAG})"))
        out.append(Problem(
            f"'{shown}' is also written by {other} (as its last run recorded in "
            f"{os.path.relpath(claim.state, base)}/{claims.CLAIMS})",
            where[claim.path], hint, str(spec.path)))
    return with_lines(out, spec)


def warn(found: list[Problem]) -> None:
    """Print ``found`` on stderr as warnings."""
    for p in found:
        print(replace(p, message=f"warning: {p.message}").render(), file=sys.stderr)


def refuse(found: list[Problem]) -> SharedOutputsError:
    """The error `run` raises for ``found`` (nothing has run yet)."""
    return SharedOutputsError("\n".join(p.render() for p in found)
                              + f"\nnothing was run; pass {FLAG} to run it anyway")


def record(spec: Spec, root: Path) -> None:
    """Record what ``spec`` writes in its state folder ``root`` (held by a run)."""
    claims.record(root, _files(spec)[0])
