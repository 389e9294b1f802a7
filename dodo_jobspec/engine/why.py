"""What would run and why: doit's own up-to-date check, read without running anything.

doit answers for each task from the files as they are now. A task downstream of one that will
run looks up to date until the upstream has re-run, so "will run because X will" is
propagated here along the same file_dep edges doit uses.

Two states need no doit task objects at all, and they are the common ones of a large spec:
nothing ever ran (no doit database) and nothing changed since a run that left every unit done
(the no-op manifest `run` itself trusts, see noop.py). `plan` then costs about what describing
the units costs.

The reasons are told in the spec's terms (``_Explainer``): upstream units by name, not by
jobspec-do's records under the state folder; the spec's files relative to its folder; what the
last attempt did (failed, never ran) from the job record of each task that will run.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .. import noop
from ..errors import EXIT_OK
from ..plan import owned_step_task, replica_task
from ..spec.model import Task
from ..transformers.base import UnitContext


@dataclass(frozen=True)
class Verdict:
    """Whether one doit task would run, and the reasons."""

    name: str
    unit: str
    runs: bool
    reasons: tuple[str, ...]


def analyse(prep: Any, noop_key: tuple[object, ...] | None = None,
            matched: tuple[int, dict[str, int]] | bool | None = False,
            force: tuple[str, ...] = (), parts: bool = True) -> list[Verdict]:
    """A verdict for every doit task of ``prep`` (a Prepared), in run order.

    Two states are answered without doit: nothing ever ran here (no doit database: every task
    runs because "it never ran"), and ``noop_key`` given and the no-op manifest matches it
    (exactly the check `run` makes before doing anything, see noop.py: every task is up to
    date). Anything else goes through doit's own up-to-date check, task by task.
    ``matched``: what ``noop.match`` answered, when the caller already asked it.
    ``force``: the names given to --force; those units run whatever doit says, as in `run`.
    ``parts``: False for the units' verdicts only, without their replicas' and steps' (what
    `plan` and `--dry-run` show; a unit's verdict says why its parts run): replicas are then
    counted, never one object each.
    """
    if matched is False:  # not looked up by the caller
        matched = None if noop_key is None else noop.match(prep.state.root, noop_key)
    if matched and not force:
        return [Verdict(name, unit, False, ()) for name, unit in task_names(prep, parts)]
    if not os.path.exists(prep.state.db):
        return [Verdict(name, unit, True, ("it never ran",))
                for name, unit in task_names(prep, parts)]
    return _analyse_doit(prep, {n.key for name in force for n in prep.spec.find(name)}, parts)


def task_names(prep: Any, parts: bool = True) -> list[tuple[str, str]]:
    """(doit task name, unit name) of every doit task, in the order ``task_dicts`` makes them.

    The same names as engine/loader.py's task_dicts (both use plan.py's namers; a test pins
    the order), without building the dicts. ``parts``: see ``analyse``."""
    if not parts:
        return [(pu.node.key, pu.node.name) for pu in prep.plan]
    local_replicas = not prep.transformer.submits_groups
    out: list[tuple[str, str]] = []
    for pu in prep.plan:
        node = pu.node
        key, name = node.key, node.name
        for owner in pu.step_units:
            task = owner.node
            out.extend((owned_step_task(pu, owner, i, step.name), task.name)
                       for i, step in enumerate(getattr(task, "steps", ())))
        if isinstance(node, Task) and node.replicas > 1 and local_replicas:
            out.extend((replica_task(key, r), name) for r in range(node.replicas))
        out.append((key, name))
    return out


class _Seen(NamedTuple):
    """What the reasons need of a doit task already checked: its meta and first target."""

    meta: dict[str, Any]
    targets: list[str]


@dataclass
class _Replicas:
    """The replicas of one unit checked so far: a count and a flag each, not a task each."""

    key: str  # the unit's key
    unit: str  # its name
    folder: str  # its state folder: replica r's record is <folder>/done.r<r>.json
    first: int  # the run order of replica 0
    runs: bytearray  # replica r will run: runs[r]


class _Index:
    """The doit tasks checked so far: by name, by target, in run order, and whether each
    will run. A replica is not stored: its name and its record's path say which it is."""

    def __init__(self) -> None:
        self.seen: dict[str, _Seen] = {}
        self.maker: dict[str, str] = {}  # target -> task name
        self.rank: dict[str, int] = {}
        self.will: dict[str, bool] = {}
        self.by_folder: dict[str, _Replicas] = {}
        self.by_key: dict[str, _Replicas] = {}
        self.count = 0

    def add(self, task: Any) -> None:
        replica = task.meta.get("replica")
        if replica is None:
            self.seen[task.name] = _Seen(task.meta, task.targets[:1])
            self.rank[task.name] = self.count
            for target in task.targets:
                self.maker[target] = task.name
        elif replica == 0:
            key = task.name.split(":", 1)[0]
            reps = _Replicas(key, task.meta["unit"], task.targets[0].rpartition("/")[0],
                             self.count, bytearray())
            self.by_folder[reps.folder] = self.by_key[key] = reps
        self.count += 1

    def ran(self, task: Any, runs: bool) -> None:
        """Record whether ``task`` (added last) will run."""
        if "replica" in task.meta:
            self.by_key[task.name.split(":", 1)[0]].runs.append(runs)
        else:
            self.will[task.name] = runs

    def _replica(self, name: str) -> tuple[_Replicas, int] | None:
        key, _, part = name.partition(":")
        reps = self.by_key.get(key)
        if reps is None or not part.startswith("r") or not part[1:].isdigit():
            return None
        r = int(part[1:])
        return (reps, r) if r < len(reps.runs) else None

    def name_of(self, path: str) -> str | None:
        """The task whose target ``path`` is, if it was checked."""
        name = self.maker.get(path)
        if name is not None:
            return name
        folder, _, file = path.rpartition("/")
        reps = self.by_folder.get(folder)
        if reps is None or not (file.startswith("done.r") and file.endswith(".json")):
            return None
        number = file[6:-5]
        if not number.isdigit() or int(number) >= len(reps.runs):
            return None
        return f"{reps.key}:r{int(number)}"

    def task(self, name: str) -> _Seen | None:
        seen = self.seen.get(name)
        if seen is not None:
            return seen
        found = self._replica(name)
        if found is None:
            return None
        reps, r = found
        return _Seen({"unit": reps.unit, "replica": r}, [f"{reps.folder}/done.r{r}.json"])

    def order(self, name: str) -> int:
        rank = self.rank.get(name)
        if rank is not None:
            return rank
        found = self._replica(name)
        return -1 if found is None else found[0].first + found[1]

    def runs(self, name: str) -> bool:
        if name in self.will:
            return self.will[name]
        found = self._replica(name)
        return found is not None and bool(found[0].runs[found[1]])


def _analyse_doit(prep: Any, forced: set[str] | None = None, parts: bool = True
                  ) -> list[Verdict]:
    """doit's own check of every task, with "upstream will run" propagated.

    ``forced``: unit keys whose doit records `run --force` would drop (engine/run.py).
    ``parts``: also the verdicts of replicas and steps (else only the units')."""
    forced = forced or set()
    from doit.dependency import Dependency, JSONCodec
    from doit.task import dict_to_task

    from ..tasks.steps import StageConfig, StepRunner
    from ..tasks.unit import RunOptions, UnitRunner
    from .backend import IncrementalSqliteDB
    from .checker import MD5Checker
    from .loader import iter_task_dicts

    state = prep.state
    runner = UnitRunner(prep.spec, state, prep.transformer, RunOptions(), lambda *a: None)
    steps = StepRunner(state, StageConfig(), lambda *a: None)
    dicts = iter_task_dicts(prep.plan, runner, steps, state,
                            local_replicas=not prep.transformer.submits_groups)
    if not state.db.exists():
        return [Verdict(d["name"], d["meta"]["unit"], True, ("it never ran",)) for d in dicts
                if parts or ":" not in d["name"]]
    # Each doit task is built, checked and let go; the index keeps what the reasons need of
    # it later, and a unit's replicas only as a count (100,000 replicas as doit tasks took
    # 600 MB here).
    index = _Index()
    dep = Dependency(IncrementalSqliteDB, str(state.db), checker_cls=MD5Checker,
                     codec_cls=JSONCodec)
    why = _Explainer(prep, index)
    out = []
    try:
        for d in dicts:
            task = dict_to_task(d)
            index.add(task)
            status = dep.get_status(task, index.seen, get_log=True)
            is_forced = task.name.split(":", 1)[0] in forced
            upstream = [m for f in task.file_dep
                        if (m := index.name_of(f)) is not None and index.runs(m)]
            stale = status.status != "up-to-date" or bool(upstream)
            runs = stale or is_forced
            index.ran(task, runs)
            # doit writes "checker:" with every success and drops it on a failure.
            reasons = why.reasons(task, status, upstream,
                                  dep._get(task.name, "checker:") is not None) if stale else []
            if is_forced:
                reasons.insert(0, "forced (--force)")
            if parts or ":" not in task.name:
                out.append(Verdict(task.name, task.meta["unit"], runs, tuple(reasons)))
            dep.backend.forget(task.name)  # read once: nothing here reads it again
    finally:
        dep.close()  # nothing was written: this only closes the connection
    return out


SHOWN = 5  # names listed in one reason before "and N more"

# A job record's state -> how that attempt ended ("it failed last time").
_ENDED = {"failed": "failed", "timeout": "timed out", "canceled": "was canceled",
          "interrupted": "was interrupted", "lost": "was lost", "blocked": "was blocked"}

# doit's reason -> what it says of the files it lists.
_FILE_REASONS = (("missing_target", "target"), ("missing_file_dep", "missing"),
                 ("changed_file_dep", "changed"), ("added_file_dep", "added"),
                 ("removed_file_dep", "removed"))

_VERBS = {"missing": ("has not completed", "have not completed"),
          "changed": ("ran again", "ran again"), "will": ("will run", "will run")}


def listing(names: list[str], limit: int = SHOWN) -> str:
    """``names`` without repeats, in their order: "a, b, c and 17 more" past ``limit``."""
    seen = list(dict.fromkeys(names))
    if len(seen) <= limit:
        return ", ".join(seen)
    return ", ".join(seen[:limit]) + f" and {len(seen) - limit} more"


class _Explainer:
    """doit's reasons for one task, told in the spec's terms.

    doit speaks of files, jobspec-do's own records among them (``<state>/tasks/<folder>/
    done.json``, a replica's ``done.r<N>.json``, a step's ``step<N>.json``; groups' under
    ``groups/``, see state.py): those are named as the unit, replica or step they record,
    and the spec's files are shown relative to the spec's folder. Only tasks that will run
    are explained, and only one whose definition check failed costs a file read: its job
    record, to tell "it never ran" and "it failed last time" from "its definition changed".
    """

    def __init__(self, prep: Any, index: _Index) -> None:
        self.prep = prep
        self.index = index
        self.root = f"{prep.state.root}/"
        folder = prep.spec.path.parent
        self.spec_dirs = tuple(dict.fromkeys(
            f"{p}/" for p in (os.path.abspath(folder), os.path.realpath(folder))))
        self.nodes: dict[str, Any] | None = None  # unit key -> unit, made when first needed
        # unit key -> how its replicas' last attempts ended -> those replicas
        self.replicas_ended: dict[str, dict[str, list[int]]] = {}
        self.parts: dict[str, dict[str, None]] = {}  # unit key -> its parts' reasons, once each

    # -- names -----------------------------------------------------------------------------
    def path(self, path: str) -> str:
        """A spec file's path, relative to the spec's folder when it is inside it."""
        for base in self.spec_dirs:
            if path.startswith(base):
                return path[len(base):]
        return path

    def record(self, path: str, unit_key: str) -> tuple[bool, str] | None:
        """(upstream, label) if ``path`` is one of jobspec-do's records, else None.

        The label of another unit's record is "task b" or "group g" ("task c's replica 2"
        for a part of it); of one of this unit's own parts, "replica 2" or "step write"."""
        if not path.startswith(self.root):
            return None
        rest = path[len(self.root):]
        kind = "group" if rest.startswith("groups/") else "task"
        maker = self.index.name_of(path)
        task = self.index.task(maker) if maker is not None else None
        if task is None:  # not made by this plan (a unit since removed): its folder names it
            return True, f"{kind} {rest.split('/')[1]}"
        meta = task.meta
        part = (f"replica {meta['replica']}" if "replica" in meta
                else f"step {meta['kind']}" if "kind" in meta else "")
        if maker.split(":", 1)[0] == unit_key:
            return False, part or "its completion record"
        unit = f"{kind} {meta['unit']}"
        return True, f"{unit}'s {part}" if part else unit

    # -- the last attempt ------------------------------------------------------------------
    def last_time(self, task: Any, unit_key: str) -> tuple[str, bool]:
        """Why the definition check failed, from the task's job record (its one read):
        (the reason, whether it never ran)."""
        if self.nodes is None:
            self.nodes = {pu.node.key: pu.node for pu in self.prep.plan}
        node = self.nodes[unit_key]
        st = self.prep.state.unit(node)
        replica, step = task.meta.get("replica"), task.meta.get("kind")
        rec = st.read_job(replica)
        if rec.attempt == 0 and rec.state == "new":
            if replica is None and step is None and unit_key in self.replicas_ended:
                return "", False  # its replicas ran (and say how they ended); it never did
            return "it never ran", True
        where = f"attempt {rec.attempt}"
        if rec.state == "completed":
            if step is not None:
                return f"step {step} changed", False
            if rec.digest != node.digest:
                return "its definition changed", False
            if rec.transformer and rec.transformer != self.prep.transformer.name:
                return f"it last ran with the {rec.transformer} transformer", False
            # Unchanged, but doit forgot its success: doit does when an upstream task fails
            # (the other reasons then say which), or a kill took the last records.
            return "", False
        if rec.exit_code is not None:
            where += f", exit {rec.exit_code}"
        elif rec.info:
            where += ": " + self.short(rec.info)
        ended = _ENDED.get(rec.state)
        how = (f"{ended} last time ({where})" if ended
               else f"was still {rec.state} when last seen ({where})")
        if replica is not None:
            self.replicas_ended.setdefault(unit_key, {}).setdefault(how, []).append(replica)
        return "it " + how, False

    def replicas(self, unit_key: str) -> list[str]:
        """How the replicas of ``unit_key`` that will run ended last time, if they ran:
        "replicas 0, 2 failed last time (attempt 2, exit 1)"."""
        return [f"replica{'s' if len(nums) > 1 else ''} {listing([str(n) for n in nums])} {how}"
                for how, nums in self.replicas_ended.get(unit_key, {}).items()]

    def short(self, info: str, limit: int = 80) -> str:
        """A record's ``info``, its paths relative, cut to ``limit`` characters."""
        info = " ".join(self.path(word) for word in info.split(" "))
        return info if len(info) <= limit else info[:limit - 3] + "..."

    # -- one task --------------------------------------------------------------------------
    def reasons(self, task: Any, status: Any, upstream: list[str], succeeded: bool
                ) -> list[str]:
        """Why ``task`` will run. ``upstream``: the doit tasks it reads from that will run;
        ``succeeded``: doit holds a completed run of it (else its files' states say nothing:
        every input looks changed, every output missing)."""
        r = status.reasons or {}
        unit_key = task.name.split(":", 1)[0]
        out: list[str] = []
        never = False
        if "uptodate_false" in r:
            text, never = self.last_time(task, unit_key)
            if text:
                out.append(text)
        told: set[tuple[bool, str]] = set()  # records already explained
        if "replica" not in task.meta and "kind" not in task.meta:
            out += self.replicas(unit_key)  # the unit's own row is the one `plan` shows
            told = {(False, f"replica {n}")
                    for nums in self.replicas_ended.get(unit_key, {}).values() for n in nums}
        if r.get("has_no_dependencies"):
            out.append("it has no inputs")
        if r.get("checker_changed"):
            out.append("the file checker changed")
        detailed = succeeded and not never  # else doit's file states tell nothing
        files: dict[str, list[str]] = {what: [] for _, what in _FILE_REASONS}
        records: dict[tuple[bool, str], str] = {}  # (upstream, label) -> missing|changed|will
        for key, what in _FILE_REASONS:
            found = r.get(key) or ()
            if what in ("missing", "changed"):
                found = sorted(found, key=self._rank)  # upstream first, in run order
            for path in found:
                rec = self.record(path, unit_key)
                if rec is None:
                    files[what].append(self.path(path))
                elif what == "changed" and not detailed:
                    continue  # never completed: every record looks changed
                elif what in ("target", "added", "removed"):
                    files[what].append(rec[1] if rec[0] or what == "target" else f"its {rec[1]}")
                else:
                    records.setdefault(rec, what)
        for name in sorted(set(upstream), key=self.index.order):
            maker = self.index.task(name)
            assert maker is not None  # upstream names tasks already checked
            rec = self.record(maker.targets[0], unit_key) or (True, maker.meta["unit"])
            if records.get(rec) != "missing":
                records[rec] = "will"
        if detailed:
            for what, text in (("target", "an output or its completion record is missing"),
                               ("changed", "changed"), ("added", "new input"),
                               ("removed", "no longer an input")):
                if files[what]:
                    out.append(f"{text}: {listing(files[what])}")
        if files["missing"]:
            out.append("an input is missing: " + listing(files["missing"]))
        # Its own replicas or steps that will run: why they will, if they said more than
        # "it ..." (how its replicas ended is said above); else that they will.
        own = [k for k, s in records.items() if not k[0] and s != "changed" and k not in told]
        lifted = bool(own) and not never and self._lift(unit_key, out)
        for up in (False, True):
            if never and not up:
                continue  # its own replicas or steps add nothing to "it never ran"
            for state in ("missing", "changed", "will"):
                if lifted and not up and state != "changed":
                    continue
                labels = [label for (u, label), s in records.items()
                          if u == up and s == state and (u, label) not in told]
                if labels:
                    out.append(_phrase(up, state, labels))
        if "replica" in task.meta or "kind" in task.meta:
            # A dict, not a list: 100,000 replicas mostly say the same few things.
            self.parts.setdefault(unit_key, {}).update(dict.fromkeys(out))
        return out or ["its last completion was not recorded"]

    def _lift(self, unit_key: str, out: list[str]) -> bool:
        """Add to a unit's own reasons (``out``) why its replicas and steps will run, all
        but their "it ..."; True if that added any."""
        lifted = [text for text in dict.fromkeys(self.parts.pop(unit_key, ()))
                  if not text.startswith("it ") and text not in out]
        out += lifted
        return bool(lifted)

    def _rank(self, path: str) -> int:
        """Run order of the task that makes ``path`` (-1: no task makes it)."""
        maker = self.index.name_of(path)
        return -1 if maker is None else self.index.order(maker)


def _phrase(upstream: bool, state: str, labels: list[str]) -> str:
    """"upstream task b has not completed", "upstream tasks a, b ran again", "upstream will
    run: a, b", "replicas 0, 2 will run"..."""
    if upstream and state == "will":
        return "upstream will run: " + listing([lb.removeprefix("task ") for lb in labels])
    verb = _VERBS[state][len(labels) > 1]
    kinds = {label.split(" ", 1)[0] for label in labels}
    if len(labels) > 1 and len(kinds) == 1 and not any("'s " in lb for lb in labels):
        # "tasks a, b", "replicas 0, 2": the kind once
        text = f"{kinds.pop()}s {listing([lb.split(' ', 1)[1] for lb in labels])} {verb}"
    else:
        text = f"{listing(labels)} {verb}"
    return f"upstream {text}" if upstream else text


def print_dry_run(prep: Any, noop_key: tuple[object, ...] | None = None,
                  force: tuple[str, ...] = ()) -> int:
    """`run --dry-run`: one line per unit that would run, with why.

    ``noop_key``: see ``analyse`` (the caller passes it only when `run` would use it)."""
    # One line per unit: a replica's or a step's doit task is part of its unit, whose own
    # verdict gives their reasons (and runs whenever one of them does).
    verdicts = analyse(prep, noop_key, force=force, parts=False)
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
                f"(after {listing([d.key for d in pu.deps], 10)})")
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
    verdicts = {v.name: v for v in analyse(prep, noop_key, matched, parts=False)}
    # Up to date: the manifest knows every unit's last attempt; otherwise read the histories.
    attempts = matched[1] if matched else last_attempts(prep)
    runner = UnitRunner(prep.spec, prep.state, prep.transformer, RunOptions(), lambda *a: None)
    unit, choose, describe = prep.state.unit, prep.transformer.choose, prep.transformer.describe
    folders: dict[str, Path] = {}
    driver = None
    if getattr(prep, "burst", None) is not None:
        from ..bursters.move import BurstDriver

        driver = BurstDriver(prep.burst, prep.transformer, lambda *a: None, prep.state.root)
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
        detail = describe(node, ctx)
        if driver is not None:  # --- burst hook: where it may go instead, and what it would run
            detail = "\n".join([*driver.plan(node, ctx), detail])
        out.append((pu, verdicts[node.key], req, why, detail))
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
    by unit key: one read of the journal for all of them."""
    return {pu.node.key: prep.state.unit(pu.node).last_attempt() for pu in prep.plan}
