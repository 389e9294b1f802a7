"""What would run and why: doit's own up-to-date check, read without running anything.

doit answers for each task from the files as they are now. A task downstream of one that will
run looks up to date until the upstream has re-run, so "will run because X will" is
propagated here along the same file_dep edges doit uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from doit.dependency import Dependency, JSONCodec, MD5Checker
from doit.task import dict_to_task

from ..errors import EXIT_OK
from ..tasks.steps import StageConfig, StepRunner
from ..tasks.unit import RunOptions, UnitRunner
from .backend import IncrementalSqliteDB
from .loader import task_dicts

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


def analyse(prep: Any) -> list[Verdict]:
    """A verdict for every doit task of ``prep`` (a Prepared), in run order."""
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
            upstream = sorted({producer[f] for f in task.file_dep
                               if f in producer and runs.get(producer[f])})
            if upstream:
                reasons.append("upstream will run: " + ", ".join(
                    by_name[u].meta["unit"] for u in upstream[:5]))
            will = status.status != "up-to-date" or bool(upstream)
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


def print_dry_run(prep: Any) -> int:
    """`run --dry-run`: one line per unit that would run, with why."""
    verdicts = analyse(prep)
    todo = [v for v in verdicts if v.runs]
    for v in todo:
        print(f"would run {v.name}: " + "; ".join(v.reasons))
    print(f"{len(todo)} of {len(verdicts)} would run; {len(verdicts) - len(todo)} up to date")
    return EXIT_OK


def print_plan(prep: Any, as_json: bool = False) -> int:
    """`jobspec-do plan`: per unit, whether it would run, why, where, and the exact commands."""
    verdicts = {v.name: v for v in analyse(prep)}
    runner = UnitRunner(prep.spec, prep.state, prep.transformer, RunOptions(), lambda *a: None)
    rows = []
    for pu in prep.plan:
        v = verdicts[pu.node.key]
        st = prep.state.unit(pu.node)
        attempt = st.last_attempt() + 1
        ctx = runner._context(pu, st, attempt, "<token>", None, create=False)
        req, why = prep.transformer.choose(pu.node)
        rows.append({
            "unit": pu.node.key, "runs": v.runs, "reasons": list(v.reasons),
            "resources": req.label if req else None, "resources_choice": why,
            "after": [d.key for d in pu.deps],
            "detail": prep.transformer.describe(pu.node, ctx)})
    if as_json:
        print(json.dumps({"spec": str(prep.spec.path), "transformer": prep.transformer.name,
                          "units": rows}, indent=2))
        return EXIT_OK
    print(f"plan for {prep.spec.path} on {prep.transformer.name}:")
    for row in rows:
        verdict = "RUN " if row["runs"] else "skip"
        print(f"\n[{verdict}] {row['unit']}"
              + (f"  (after {', '.join(row['after'])})" if row["after"] else ""))
        if row["reasons"]:
            print("  why: " + "; ".join(row["reasons"]))
        elif not row["runs"]:
            print("  why: up to date")
        if row["resources"]:
            print(f"  resources: {row['resources']} - {row['resources_choice']}")
        for line in row["detail"].splitlines():
            print("  " + line)
    n = sum(r["runs"] for r in rows)
    print(f"\n{n} of {len(rows)} units would run")
    return EXIT_OK
