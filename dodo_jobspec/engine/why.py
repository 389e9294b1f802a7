"""What would run and why: doit's own up-to-date check, read without running anything.

doit answers for each task from the files as they are now. A task downstream of one that will
run looks up to date until the upstream has re-run, so "will run because X will" is
propagated here along the same file_dep edges doit uses.

Two states need no doit task objects at all, and they are the common ones of a large spec:
nothing ever ran (no doit database) and nothing changed since a run that left every unit done
(the no-op manifest `run` itself trusts, see noop.py). `plan` then costs about what describing
the units costs.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import noop
from ..errors import EXIT_OK
from ..model import Task
from ..plan import replica_task, step_task
from ..transformers.base import UnitContext

_REASONS = {
    "has_no_dependencies": "it has no inputs",
    "uptodate_false": "its definition changed (or it never completed)",
    "checker_changed": "the file checker changed",
    "missing_target": "an output or its completion record is missing",
    "changed_file_dep": "changed",
    "missing_file_dep": "missing",
    "removed_file_dep": "no longer an input",
    "added_file_dep": "new input",
}


@dataclass(frozen=True)
class Verdict:
    """Whether one doit task would run, and the reasons."""

    name: str
    unit: str
    runs: bool
    reasons: tuple[str, ...]


def analyse(prep: Any, noop_key: tuple[object, ...] | None = None,
            matched: tuple[int, dict[str, int]] | bool | None = False,
            force: tuple[str, ...] = ()) -> list[Verdict]:
    """A verdict for every doit task of ``prep`` (a Prepared), in run order.

    Two states are answered without doit: nothing ever ran here (no doit database: every task
    runs because "it never ran"), and ``noop_key`` given and the no-op manifest matches it
    (exactly the check `run` makes before doing anything, see noop.py: every task is up to
    date). Anything else goes through doit's own up-to-date check, task by task.
    ``matched``: what ``noop.match`` answered, when the caller already asked it.
    ``force``: the names given to --force; those units run whatever doit says, as in `run`.
    """
    if matched is False:  # not looked up by the caller
        matched = None if noop_key is None else noop.match(prep.state.root, noop_key)
    if matched and not force:
        return [Verdict(name, unit, False, ()) for name, unit in task_names(prep)]
    if not os.path.exists(prep.state.db):
        return [Verdict(name, unit, True, ("it never ran",)) for name, unit in task_names(prep)]
    return _analyse_doit(prep, {n.key for name in force for n in prep.spec.find(name)})


def task_names(prep: Any) -> list[tuple[str, str]]:
    """(doit task name, unit name) of every doit task, in the order ``task_dicts`` makes them.

    The same names as engine/loader.py's task_dicts (both use plan.py's namers; a test pins
    the order), without building the dicts."""
    local_replicas = not prep.transformer.submits_groups
    out: list[tuple[str, str]] = []
    for pu in prep.plan:
        node = pu.node
        key, name = node.key, node.name
        if isinstance(node, Task):
            out.extend((step_task(key, i, step.name), name) for i, step in enumerate(node.steps))
            if node.replicas > 1 and local_replicas:
                out.extend((replica_task(key, r), name) for r in range(node.replicas))
        out.append((key, name))
    return out


def _analyse_doit(prep: Any, forced: set[str] | None = None) -> list[Verdict]:
    """doit's own check of every task, with "upstream will run" propagated.

    ``forced``: unit keys whose doit records `run --force` would drop (engine/run.py)."""
    forced = forced or set()
    from doit.dependency import Dependency, JSONCodec
    from doit.task import dict_to_task

    from ..tasks.steps import StageConfig, StepRunner
    from ..tasks.unit import RunOptions, UnitRunner
    from .backend import IncrementalSqliteDB
    from .checker import MD5Checker
    from .loader import task_dicts

    state = prep.state
    runner = UnitRunner(prep.spec, state, prep.transformer, RunOptions(), lambda *a: None)
    steps = StepRunner(state, StageConfig(), lambda *a: None)
    dicts = task_dicts(prep.plan, runner, steps, state,
                       local_replicas=not prep.transformer.submits_groups)
    tasks = [dict_to_task(d) for d in dicts]
    by_name = {t.name: t for t in tasks}
    producer = {tgt: t.name for t in tasks for tgt in t.targets}
    if not state.db.exists():
        return [Verdict(t.name, t.meta["unit"], True, ("it never ran",)) for t in tasks]
    dep = Dependency(IncrementalSqliteDB, str(state.db), checker_cls=MD5Checker,
                     codec_cls=JSONCodec)
    runs: dict[str, bool] = {}
    out = []
    try:
        for task in tasks:
            status = dep.get_status(task, by_name, get_log=True)
            reasons = _reasons(status)
            is_forced = task.name.split(":", 1)[0] in forced
            if is_forced:
                reasons.insert(0, "forced (--force)")
            upstream = sorted({producer[f] for f in task.file_dep
                               if f in producer and runs.get(producer[f])})
            if upstream:
                reasons.append("upstream will run: " + ", ".join(
                    by_name[u].meta["unit"] for u in upstream[:5]))
            will = status.status != "up-to-date" or bool(upstream) or is_forced
            runs[task.name] = will
            out.append(Verdict(task.name, task.meta["unit"], will, tuple(reasons)))
    finally:
        dep.close()  # nothing was written: this only closes the connection
    return out


def _reasons(status: Any) -> list[str]:
    out = []
    for key, value in (status.reasons or {}).items():
        text = _REASONS.get(key, key)
        if key == "uptodate_false":
            out.append(text)
        elif isinstance(value, list) and value:
            shown = ", ".join(str(v) for v in value[:3]) + (" ..." if len(value) > 3 else "")
            out.append(f"{text}: {shown}")
        elif value:
            out.append(text)
    if status.status == "error":
        out.append("an input is missing: " + str(status.error_reason or ""))
    return out


def print_dry_run(prep: Any, noop_key: tuple[object, ...] | None = None,
                  force: tuple[str, ...] = ()) -> int:
    """`run --dry-run`: one line per unit that would run, with why.

    ``noop_key``: see ``analyse`` (the caller passes it only when `run` would use it)."""
    verdicts = analyse(prep, noop_key, force=force)
    todo = [v for v in verdicts if v.runs]
    lines = [f"would run {v.name}: " + "; ".join(v.reasons) for v in todo]
    lines.append(f"{len(todo)} of {len(verdicts)} would run; "
                 f"{len(verdicts) - len(todo)} up to date")
    _write(lines)
    return EXIT_OK


def print_plan(prep: Any, as_json: bool = False,
               noop_key: tuple[object, ...] | None = None) -> int:
    """`jobspec-do plan`: per unit, whether it would run, why, where, and the exact commands."""
    units = _described(prep, noop_key)
    if as_json:
        rows = [{"unit": pu.node.key, "runs": v.runs, "reasons": list(v.reasons),
                 "resources": req.label if req else None, "resources_choice": why,
                 "after": [d.key for d in pu.deps], "detail": detail}
                for pu, v, req, why, detail in units]
        print(json.dumps({"spec": str(prep.spec.path), "transformer": prep.transformer.name,
                          "units": rows}, indent=2))
        return EXIT_OK
    out = [f"plan for {prep.spec.path} on {prep.transformer.name}:"]
    add = out.append
    n = 0
    for pu, v, req, why, detail in units:
        n += v.runs
        if pu.deps:
            add(f"\n[{'RUN ' if v.runs else 'skip'}] {pu.node.key}  "
                f"(after {', '.join([d.key for d in pu.deps])})")
        else:
            add(f"\n[{'RUN ' if v.runs else 'skip'}] {pu.node.key}")
        if v.reasons:
            add("  why: " + "; ".join(v.reasons))
        elif not v.runs:
            add("  why: up to date")
        if req:
            add(f"  resources: {req.label} - {why}")
        out.extend(["  " + line for line in detail.splitlines()])
    add(f"\n{n} of {len(units)} units would run")
    _write(out)
    return EXIT_OK


def _described(prep: Any, noop_key: tuple[object, ...] | None) -> list[tuple[Any, ...]]:
    """(planned unit, verdict, chosen resources, why those, the transformer's description)."""
    from ..tasks.unit import RunOptions, UnitRunner

    matched = None if noop_key is None else noop.match(prep.state.root, noop_key)
    verdicts = {v.name: v for v in analyse(prep, noop_key, matched)}
    # Up to date: the manifest knows every unit's last attempt; otherwise read the histories.
    attempts = matched[1] if matched else last_attempts(prep)
    runner = UnitRunner(prep.spec, prep.state, prep.transformer, RunOptions(), lambda *a: None)
    unit, choose, describe = prep.state.unit, prep.transformer.choose, prep.transformer.describe
    folders: dict[str, Path] = {}
    out = []
    for pu in prep.plan:
        node = pu.node
        st = unit(node)
        attempt = attempts[node.key] + 1
        if pu.whole_group:  # the context names every child's folder
            ctx = runner._context(pu, st, attempt, "<token>", None, create=False)
        else:
            ctx = plan_context(prep.spec, pu, st, attempt, folders)
        req, why = choose(node)
        out.append((pu, verdicts[node.key], req, why, describe(node, ctx)))
    return out


def plan_context(spec: Any, pu: Any, st: Any, attempt: int, folders: dict[str, Path]
                 ) -> UnitContext:
    """What ``UnitRunner._context(pu, st, attempt, "<token>", None, create=False)`` gives for
    a unit that is not a whole group (a test pins that they are equal), with fewer Paths:
    ``UnitState.dir`` parses the whole folder name; here it is the parent folder's Path (one
    per parent, kept in ``folders``) joined with one component, and the logs are named as
    ``UnitState.stdout``/``stderr`` name them."""
    parent, _, folder = st.dir_str.rpartition("/")  # dir_str is "<root>/<kind>/<folder>"
    base = folders.get(parent)
    if base is None:
        base = folders[parent] = Path(parent)
    workdir = _child(base, folder)
    return UnitContext(spec, workdir, attempt, "<token>", _child(workdir, f"stdout.{attempt}"),
                       _child(workdir, f"stderr.{attempt}"), pu.cwd)


def _child(base: Path, name: str) -> Path:
    """``base / name`` for a ``name`` of one component. pathlib's own shortcut for that (what
    its directory walks use) skips parsing ``name`` again: a third of `plan`'s Path cost at
    10,000 units. Python versions without it get ``/``."""
    make = getattr(base, "_make_child_relpath", None)
    return make(name) if make is not None else base / name  # type: ignore[no-any-return]


def _write(lines: list[str]) -> None:
    """Print ``lines`` as print() would, one write instead of one call per line."""
    sys.stdout.write("\n".join(lines) + "\n")


def last_attempts(prep: Any) -> dict[str, int]:
    """Each unit's highest recorded attempt (``UnitState.last_attempt``; 0 if it never ran),
    by unit key. A unit folder that does not exist is known from one listing of its parent:
    a clean state directory costs no file operation per unit."""
    listings: dict[str, set[str]] = {}
    out: dict[str, int] = {}
    for pu in prep.plan:
        st = prep.state.unit(pu.node)
        parent, _, folder = st.dir_str.rpartition("/")  # dir_str is "<root>/<kind>/<folder>"
        names = listings.get(parent)
        if names is None:
            try:
                names = listings[parent] = set(os.listdir(parent))
            except OSError:
                names = listings[parent] = set()
        out[pu.node.key] = st.last_attempt() if folder in names else 0
    return out
