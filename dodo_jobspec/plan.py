"""From a resolved spec to the units of work a transformer runs, and what each waits for.

The local transformer runs every task itself (groups are sub-runs: a group is done when its
children are). Batch schedulers submit top-level units only: a group is one job, and a
dependency of anything inside it becomes a dependency of the whole group.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from . import trees
from .errors import Problem, SpecError
from .spec.model import Group, Spec, Task, Unit
from .spec.source import locate, paused_gc

_GLOB_CHARS = frozenset("*?[")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class PlannedUnit:
    """One unit of work: a node plus everything the engine needs to run and check it."""

    node: Unit
    deps: tuple[Unit, ...]  # units of this plan that must finish first
    cwd: Path
    inputs: tuple[Path, ...]  # files read (globs expanded); a change re-runs the unit
    outputs: tuple[Path, ...]  # files made; a missing one after success is a failure
    whole_group: bool  # a group submitted as one job (batch schedulers)
    # Folders whose listing decides what the unit's glob inputs match: one more match is a
    # change too, and the no-op check must see it.
    scanned: tuple[Path, ...] = ()
    # For a group submitted as one job: a unit per descendant task that has steps (its own
    # cwd, nothing else), so that those steps run before the group's job as a top-level
    # task's run before its own.
    members: tuple[PlannedUnit, ...] = ()

    @property
    def key(self) -> str:
        return self.node.key

    @property
    def step_units(self) -> tuple[PlannedUnit, ...]:
        """The units whose steps run before this unit's job: itself for a task, its members
        for a group submitted whole, none for a group the local transformer runs (its
        children are units of their own)."""
        return (self,) if isinstance(self.node, Task) else self.members


def step_task(key: str, index: int, step: str) -> str:
    """The doit task name of step ``index`` (named ``step``) of the unit ``key``."""
    return f"{key}:step{index}-{step}"


def owned_step_task(pu: PlannedUnit, owner: PlannedUnit, index: int, step: str) -> str:
    """The doit task name of step ``index`` of ``owner``, one of ``pu.step_units``. A group
    job's task's step is named under the group (``group/g:task/t:step0-stage``): doit's
    tasks are told apart by their unit, the text before the first colon."""
    key = owner.key if owner is pu else f"{pu.key}:{owner.key}"
    return step_task(key, index, step)


def replica_task(key: str, replica: int) -> str:
    """The doit task name of one replica of the unit ``key``, when replicas run one by one."""
    return f"{key}:r{replica}"


def build(spec: Spec, submits_groups: bool) -> list[PlannedUnit]:
    """The units to run, dependencies first; SpecError if an input can never exist."""
    with paused_gc():  # one PlannedUnit and a few Paths per unit, all kept
        return _build(spec, submits_groups)


def _build(spec: Spec, submits_groups: bool) -> list[PlannedUnit]:
    spec_dir = spec.path.resolve().parent
    if submits_groups:
        units = [n for n in spec.nodes.values() if n.parent is None]
        deps_of = _top_level_deps
    else:
        units = list(spec.nodes.values())
        deps_of = _local_deps
    # This runs for every unit of a large spec (`plan` and every run): one Path per output,
    # made as cwd / output (parsing only the output), and one PlannedUnit per unit.
    cwds: dict[str | None, tuple[Path, str]] = {}
    staged = []
    # Two makers of one file would overwrite each other. Keyed by the path as text (hashing
    # a Path costs a microsecond or two), normalised only when it could name a file another
    # way (./x, a/../x, a//x).
    first_maker: dict[str, Unit] = {}
    problems: list[Problem] = []
    reads = False
    for node in units:
        known = cwds.get(node.attributes.cwd)
        if known is None:
            path = _cwd(node, spec_dir)
            known = cwds[node.attributes.cwd] = (path, str(path))
        cwd, base = known
        # A locally-run group is only the sum of its children: their outputs are theirs.
        written_all = _outputs(node) if submits_groups or isinstance(node, Task) else ()
        outputs = tuple([cwd / o for o in written_all])
        has_inputs = _has_inputs(node)
        reads = reads or has_inputs
        staged.append((node, cwd, outputs, has_inputs))
        for i, written in enumerate(written_all):
            key = written if written.startswith("/") else f"{base}/{written}"
            if "/." in key or "//" in key:
                key = os.path.normpath(key)
            first = first_maker.setdefault(key, node)
            if first is not node:
                where = (*_parse_path(node.spec_path), *(("outputs", i) if isinstance(
                    node, Task) else ()))
                problems.append(Problem(
                    f"output '{written}' is also an output of {_kind(first)} '{first.name}'",
                    where, "a file has one maker: remove it from one task's `outputs:`, or "
                    "have the tasks write different files", str(spec.path)))
    # What some unit makes: an input no unit makes must exist already, and one that a unit
    # makes puts its maker upstream.
    maker: dict[Path, Unit] = {p: node for node, _, outputs, _ in staged for p in outputs} \
        if reads else {}
    result = []
    implied = False
    for node, cwd, outputs, has_inputs in staged:
        deps = deps_of(node)
        inputs: tuple[Path, ...] = ()
        scanned: tuple[Path, ...] = ()
        if has_inputs:
            inputs, scanned, inside = _inputs(node, cwd, maker, problems, spec, outputs)
            makers = [m for m in (*(maker.get(path) for path in inputs), *inside)
                      if m is not None and m is not node]
            if makers:  # the same order doit keeps: shown by `plan`, kept by --no-wait
                deps = tuple(dict.fromkeys((*deps, *makers)))
                implied = True
        members: tuple[PlannedUnit, ...] = ()
        if submits_groups and isinstance(node, Group):
            members = tuple(PlannedUnit(child, (), _cwd(child, spec_dir), (), (), False)
                            for child in node.walk() if isinstance(child, Task) and child.steps)
        result.append(PlannedUnit(node, deps, cwd, inputs, outputs,
                                  submits_groups and isinstance(node, Group), scanned, members))
    if problems:
        raise SpecError(with_lines(problems, spec))
    return _dependencies_first(result) if implied else result


def _dependencies_first(units: list[PlannedUnit]) -> list[PlannedUnit]:
    """``units`` reordered so that each comes after its deps, otherwise as they were (the
    spec's order already has every `depends_on` first; a maker of an input may come later).
    A cycle through inputs is left to doit, which names it."""
    index = {pu.node.key: i for i, pu in enumerate(units)}
    placed: set[str] = set()
    out: list[PlannedUnit] = []
    for start in units:
        # Depth-first without recursion: a chain 10,000 deep linked only by files must plan.
        stack = [(start, iter(start.deps))]
        visiting = {start.node.key}
        while stack:
            pu, deps = stack[-1]
            dep = next((d for d in deps if d.key in index and d.key not in placed
                        and d.key not in visiting), None)
            if dep is not None:
                visiting.add(dep.key)
                stack.append((units[index[dep.key]], iter(units[index[dep.key]].deps)))
                continue
            stack.pop()
            if pu.node.key not in placed:
                placed.add(pu.node.key)
                out.append(pu)
    return out


def _parse_path(text: str) -> tuple[str | int, ...]:
    """The parts of a rendered spec path (``tasks[1].inputs`` -> tasks, 1, inputs)."""
    return tuple(int(m[2]) if m[2] else m[1] for m in _PATH_PART.finditer(text))


def with_lines(problems: list[Problem], spec: Spec) -> list[Problem]:
    """The problems, each with its line and column in the spec file (read again: rare).

    A part of a problem's path may be a rendered path (``tasks[1]``, a unit's spec_path)."""
    try:
        text = spec.path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return problems
    out = []
    for problem in problems:
        parts = tuple(q for part in problem.path
                      for q in (_parse_path(part) if isinstance(part, str) else (part,)))
        line, column = locate(text, parts)
        out.append(replace(problem, path=parts, line=line, column=column))
    return out


def _kind(node: Unit) -> str:
    return "task" if isinstance(node, Task) else "group"


def _cwd(node: Unit, spec_dir: Path) -> Path:
    cwd = node.attributes.cwd
    return (spec_dir / cwd).resolve() if cwd else spec_dir


def _resolve(cwd: Path, path: str) -> Path:
    # os.path, then one Path: this runs for every input of a large spec.
    return Path(path if path.startswith("/") else os.path.join(cwd, path))


def _has_inputs(node: Unit) -> bool:
    if isinstance(node, Task):
        return bool(node.inputs)
    return any(isinstance(c, Task) and c.inputs for c in node.walk())


def _outputs(node: Unit) -> tuple[str, ...]:
    if isinstance(node, Task):
        return node.outputs
    return tuple(o for child in node.walk() if isinstance(child, Task) for o in child.outputs)


def _inputs(node: Unit, cwd: Path, made: Mapping[Path, Unit], problems: list[Problem], spec: Spec,
            outputs: tuple[Path, ...]
            ) -> tuple[tuple[Path, ...], tuple[Path, ...], list[Unit]]:
    """The unit's input paths (globs expanded; a folder stays one path, see trees.py), the
    folders its globs list, and the units that make files inside an input folder or files
    a glob input will match (they must run first; an exact path's maker is found by path)."""
    tasks = [node] if isinstance(node, Task) else [
        c for c in node.walk() if isinstance(c, Task)]
    out: list[Path] = []
    scanned: list[Path] = []
    makers: list[Unit] = []
    for task in tasks:
        for pattern in task.inputs:
            full = _resolve(cwd, pattern)
            if _GLOB_CHARS & set(pattern):
                # A broken link matches too, but there is nothing to read.
                out.extend(sorted(Path(p) for p in glob.glob(str(full), recursive=True)
                                  if os.path.exists(p)))
                scanned.extend(_scanned(full))
                if made:  # fnmatch's * also crosses '/': a maker too many, never one too few
                    text = str(full)
                    makers += [u for path, u in made.items() if fnmatch.fnmatch(str(path), text)]
                continue
            inside = [u for path, u in made.items() if full in path.parents] \
                if made and full not in made else []
            makers += inside
            if full.exists() or full in made or inside:
                out.append(full)
            else:
                problems.append(Problem(
                    f"input '{pattern}' of task '{task.name}' does not exist and no task makes "
                    "it", (*_parse_path(task.spec_path), "inputs", task.inputs.index(pattern)),
                    "create the file, fix the path, or list it under `outputs:` of the task "
                    "that makes it", str(spec.path)))
    own = set(outputs)
    return (tuple(dict.fromkeys(p for p in out if p not in own)), tuple(dict.fromkeys(scanned)),
            makers)


def _scanned(pattern: Path) -> list[Path]:
    """The existing folders glob reads to expand ``pattern``: the one before the first
    wildcard, and every folder below it when a wildcard names folders too (``**``,
    ``*/x.csv``). Hidden folders are left out, as glob leaves them out."""
    parts = pattern.parts
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARS & set(part))
    root = Path(*parts[:first])
    while not root.is_dir() and root != root.parent:  # made later: its parent lists it
        root = root.parent
    if first == len(parts) - 1:
        return [root]
    return [root, *(Path(p) for p in trees.entries(str(root))[1:] if os.path.isdir(p))]


@dataclass(frozen=True)
class Written:
    """A file a spec writes: a task's output or what a write step writes."""

    path: str  # absolute and normalised
    digest: str | None  # sha256 of what a write step writes; None: a task's output
    where: tuple[str | int, ...]  # its spec path (the output, or the write step)


def written(spec: Spec) -> list[Written]:
    """Every file the tasks of ``spec`` write, where the spec says so, in spec order. Each
    task's own folder (``attributes.cwd``) decides where its relative paths land."""
    spec_dir = spec.path.resolve().parent
    cwds: dict[str | None, str] = {}
    out: list[Written] = []
    for node in spec.nodes.values():
        if not isinstance(node, Task) or not (node.outputs or node.steps):
            continue
        cwd = cwds.get(node.attributes.cwd)
        if cwd is None:
            cwd = cwds[node.attributes.cwd] = str(_cwd(node, spec_dir))
        for step in node.steps:
            if step.name == "write":
                digest = hashlib.sha256((step.content or "").encode()).hexdigest()
                out.append(Written(os.path.normpath(os.path.join(cwd, step.path)), digest,
                                   _parse_path(step.spec_path)))
        for i, output in enumerate(node.outputs):
            out.append(Written(os.path.normpath(os.path.join(cwd, output)), None,
                               (*_parse_path(node.spec_path), "outputs", i)))
    return out


def inferred_edges(spec: Spec) -> dict[str, tuple[Unit, ...]]:
    """The edges a run adds to ``depends_on`` because a unit reads what another makes: for
    each unit key, those upstream units (for `graph`, which marks them as inferred)."""
    out = {}
    for pu in build(spec, False):
        written = set(_local_deps(pu.node))
        extra = tuple(d for d in pu.deps if d not in written)
        if extra:
            out[pu.node.key] = extra
    return out


def _local_deps(node: Unit) -> tuple[Unit, ...]:
    """A task waits for its `after` set and for what its enclosing groups wait for."""
    if node.parent is None and isinstance(node, Task):  # the common case, without detours
        return tuple(dict.fromkeys(node.after))  # type: ignore[arg-type]
    deps: list[Unit] = list(node.after)  # type: ignore[arg-type]
    for group in node.ancestors():
        deps.extend(d for d in group.after if not _inside(d, node))  # type: ignore[misc]
    if isinstance(node, Group):
        deps.extend(node.children)
    return tuple(dict.fromkeys(deps))


def _top_level_deps(unit: Unit) -> tuple[Unit, ...]:
    """Everything outside ``unit`` that it or its descendants wait for, as top-level units."""
    members = [unit, *(unit.walk() if isinstance(unit, Group) else ())]
    deps: list[Unit] = []
    for member in members:
        for dep in member.after:
            top = dep.top
            if top is not unit:
                deps.append(top)  # type: ignore[arg-type]
    return tuple(dict.fromkeys(deps))


def _inside(dep: Unit, node: Unit) -> bool:
    return dep is node or any(a is dep for a in node.ancestors())
