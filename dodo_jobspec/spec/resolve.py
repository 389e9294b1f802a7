"""Turn a schema-valid spec document into the resolved model, checking the spec's rules.

The resolver collects every problem it finds (unknown names with a suggestion, duplicates, a
group used twice, missing commands or resources, dependency cycles) before raising, so one run
reports them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import Problem, SpecError, format_path, suggest
from .model import (
    EMPTY,
    Attributes,
    Group,
    Node,
    Requires,
    Resource,
    ResourceRequest,
    Spec,
    Step,
    Task,
    Unit,
)
from .model import definition as definition  # re-exported: the records' spec.json
from .resources import parse_resource, request, sum_requests
from .source import Document, paused_gc, read_document, scalar_text
from .validate import schema_problems

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_REF_ONLY = frozenset({"group", "depends_on"})
KNOWN_ATTRIBUTES = ("duration", "cwd", "environment", "watch")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a Flux-style duration (``300s``, ``5m``, ``1.5h``, ``2d``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def load(path: str | Path, *, default_resources: Resource | None = None,
         strict: bool = False, digests: bool = True) -> Spec:
    """Read, validate and resolve a spec file; raise SpecError listing every problem.

    ``digests`` is accepted for older callers: every node's content hash is now computed
    when first read (only a run reads them)."""
    return resolve(read_document(path), default_resources=default_resources, strict=strict,
                   digests=digests)


def resolve(doc: Document, *, default_resources: Resource | None = None,
            strict: bool = False, digests: bool = True) -> Spec:
    """Validate ``doc`` against the schema, then resolve it into a Spec.

    A jobspec 0.0.x document is first translated into an equivalent version-1 one.
    ``digests`` is accepted for older callers (node digests are computed when first read).
    """
    with paused_gc():  # a large spec is a large graph of objects that all stay alive
        return _resolve(doc, default_resources, strict)


def _resolve(doc: Document, default_resources: Resource | None, strict: bool) -> Spec:
    data = doc.data
    # legacy.is_legacy needs a `task:` key and no `tasks:`; its module (and the stagers it
    # uses) is imported only for such a document.
    if isinstance(data, dict) and "task" in data and "tasks" not in data:
        from . import legacy

        if legacy.is_legacy(data) and strict:
            # Checking the translation would name paths and lines of a file nobody wrote.
            raise SpecError([doc.problem(
                "this is an older 0.0.x jobspec (`task:` with `transform:` steps), which the "
                "current upstream spec does not accept", ["task"],
                "drop --strict to run it (jobspec-do translates it), or rewrite it with "
                "`tasks:` (see `jobspec-do schema --strict`)", at_key=True)])
        if legacy.is_legacy(data):
            doc = legacy.translate(doc)  # SpecError, located in the 0.0.x file, if it cannot be
    problems = _foreign_format(doc) or schema_problems(doc, strict)
    if problems and problems[0].message.startswith("this is "):
        raise SpecError(problems)
    resolver = _Resolver(doc, default_resources)
    spec = None
    try:
        spec = resolver.run()
    except (KeyError, TypeError, ValueError, AttributeError):
        if not problems:  # only expected on data the schema already rejected
            raise
    problems += resolver.problems
    if problems or spec is None:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise SpecError(problems)
    return spec


def _foreign_format(doc: Document) -> list[Problem]:
    """One clear problem for files of another format, instead of a cascade of schema errors."""
    data = doc.data
    if data.get("version") == 2 and ("entrypoint" in data or "groups" in data):
        return [doc.problem("this is a `version: 2` Flux hierarchy config (for `jobspec start`), "
                            "not a JobSpec", ["version"],
                            "jobspec-do runs version 1 JobSpecs: tasks, groups, resources")]
    return []  # 0.0.x files (`task:` + `transform:`) are translated by `legacy`, not refused


@dataclass
class _Raw:
    """A task or group entry as written, with where it was written."""

    data: dict[str, Any]
    path: tuple[str | int, ...]
    node: Unit | None = None
    deps: list[str] = field(default_factory=list)
    deps_path: tuple[str | int, ...] = ()


class _Resolver:
    def __init__(self, doc: Document, default: Resource | None) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.default = request("default", default) if default is not None else None
        self.problems: list[Problem] = []
        self.named: dict[str, ResourceRequest] = {}
        self.named_requires: dict[str, tuple[Mapping[str, Any], ...]] = {}
        self.global_requires: dict[str, dict[str, Any]] = {}
        self.group_defs: dict[str, _Raw] = {}
        self.group_refs: dict[str, tuple[str | int, ...]] = {}
        self.names: dict[str, tuple[str | int, ...]] = {}
        self.raws: list[_Raw] = []
        self.building: list[str] = []
        self.plain_attributes: dict[int, tuple[_Inherited, Attributes]] = {}

    def err(self, message: str, path: tuple[str | int, ...] | list[str | int],
            hint: str | None = None, *, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(message, list(path), hint, at_key=at_key))

    # -- the whole document ---------------------------------------------------------------
    def run(self) -> Spec | None:
        for name, body in (self.data.get("resources") or {}).items():
            body = self._resource_as_written(body, ("resources", name))
            self.named[str(name)] = request(str(name), parse_resource(body))
        for name, body in (self.data.get("requires") or {}).items():
            if isinstance(body, list):
                self.named_requires[str(name)] = tuple(MappingProxyType(dict(i)) for i in body)
            else:  # older draft: a global {namespace: {key: value}} or {key: value} entry
                self.global_requires[str(name)] = body
        self._collect_groups(self.data.get("groups") or [], ("groups",), None)
        self._collect_refs()
        self._collect_names()
        # A notification URL is where the run reports, not what a task runs: not inherited
        # into any task's definition (adding one must not re-run every task).
        top_attrs = self.data.get("attributes")
        if isinstance(top_attrs, dict) and "callback" in top_attrs:
            top_attrs = {k: v for k, v in top_attrs.items() if k != "callback"}
        glob = _Inherited(self._attrs({}, top_attrs, None, ()),
                          Requires(_freeze2(self.global_requires)), ())
        top: list[Unit] = []
        for gname, raw in self.group_defs.items():
            if gname not in self.group_refs and raw.data.get("_parent") is None:
                top.append(self._group(gname, raw, glob, None))
        top += self._children(self.data.get("tasks") or [], ("tasks",), glob, None)
        self._unreached_groups()
        self._link(top)
        if self.problems:
            self._order(top)  # every cycle too, in the same run: not one problem at a time
            return None
        order = self._order(top)
        if order is None:
            return None
        # Node digests are computed when first read (model.Node.digest), not here.
        name = self.data.get("name") or self.doc.path.stem
        attributes = self.doc.data.get("attributes")
        callback = attributes.get("callback") if isinstance(attributes, dict) else None
        return Spec(str(name), self.doc.path, tuple(top), {n.key: n for n in order}, callback)

    def _collect_groups(self, groups: list[Any], path: tuple[str | int, ...],
                        parent: str | None) -> None:
        for i, g in enumerate(groups):
            if not isinstance(g, dict):
                continue
            gpath = (*path, i)
            name = g.get("name") or (f"{parent}-group-{i}" if parent else f"group-{i}")
            if name in self.group_defs:
                first = format_path(self.group_defs[name].path)
                self.err(f"duplicate group name '{name}' (also defined at {first})",
                         (*gpath, "name"), "give each group its own name")
                continue
            self.group_defs[name] = _Raw({**g, "_parent": parent}, gpath)
            self._collect_groups(g.get("groups") or [], (*gpath, "groups"), name)

    def _task_lists(self) -> list[tuple[list[Any], tuple[str | int, ...]]]:
        lists = [(self.data.get("tasks") or [], ("tasks",))]
        lists += [(raw.data.get("tasks") or [], (*raw.path, "tasks"))
                  for raw in self.group_defs.values()]
        return lists

    def _collect_refs(self) -> None:
        for tasks, path in self._task_lists():
            for i, t in enumerate(tasks):
                if not isinstance(t, dict) or "group" not in t:
                    continue
                ref, tpath = t["group"], (*path, i)
                if ref not in self.group_defs:
                    near = suggest(ref, self.group_defs)
                    self.err(f"unknown group '{ref}'", (*tpath, "group"),
                             f"did you mean '{near}'?" if near else _known(self.group_defs))
                elif ref in self.group_refs:
                    self.err(f"group '{ref}' is used twice (also at "
                             f"{format_path(self.group_refs[ref])}); a group runs once",
                             (*tpath, "group"), "define a second group with its own name")
                else:
                    self.group_refs[ref] = tpath
                extra = sorted(set(t) - _REF_ONLY)
                if extra:
                    self.err(f"a group reference cannot also set {', '.join(extra)}",
                             (*tpath, extra[0]),
                             f"set these on group '{ref}' itself; only depends_on may stand "
                             "beside group:", at_key=True)

    def _collect_names(self) -> None:
        for tasks, path in self._task_lists():
            for i, t in enumerate(tasks):
                if isinstance(t, dict) and "name" in t and "group" not in t:
                    self._claim(str(t["name"]), (*path, i, "name"))

    def _claim(self, name: str, path: tuple[str | int, ...]) -> None:
        if name in self.names:
            self.err(f"duplicate task name '{name}' (also used at "
                     f"{format_path(self.names[name][:-1])})", path,
                     "task names must be unique: depends_on refers to them")
        else:
            self.names[name] = path

    def _default_name(self, prefix: str, index: int) -> str:
        name, n = f"{prefix}task-{index}", 2
        while name in self.names:
            name, n = f"{prefix}task-{index}-{n}", n + 1
        self.names[name] = ()
        return name

    # -- tasks and groups -------------------------------------------------------------------
    def _children(self, tasks: list[Any], path: tuple[str | int, ...], inh: _Inherited,
                  parent: str | None) -> list[Unit]:
        out: list[Unit] = []
        prefix = f"{parent}-" if parent else ""
        for i, t in enumerate(tasks):
            tpath = (*path, i)
            if "group" in t:
                ref = t["group"]
                if self.group_refs.get(ref) != tpath:
                    continue  # already reported (unknown or used twice)
                raw = self.group_defs[ref]
                if ref in self.building:
                    cycle = " -> ".join([*self.building[self.building.index(ref):], ref])
                    self.err(f"group '{ref}' contains itself: {cycle}", (*tpath, "group"))
                    continue
                node = self._group(ref, raw, inh, t)
                out.append(node)
            else:
                name = str(t["name"]) if "name" in t else self._default_name(prefix, i)
                out.append(self._task(name, t, tpath, inh))
        return out

    def _task(self, name: str, t: dict[str, Any], path: tuple[str | int, ...],
              inh: _Inherited) -> Task:
        # This runs once per task: the common case (no resources, attributes, steps of its
        # own) takes no detour; Attributes inherited unchanged are shared, not rebuilt.
        get = t.get
        value = get("resources")
        own = self._resources(value, (*path, "resources")) if value is not None else ()
        res = own or inh.resources
        if not res and inh.depth == 0:
            res = self._missing_resources("task", name, path)
        command = get("command")
        steps_data = get("steps")
        if command is None and not steps_data:
            self.err(f"task '{name}' has no command", path,
                     "add `command: [program, arg, ...]` (or a string run by /bin/sh -c)")
        if isinstance(command, list):
            command = tuple(_env_str(c) for c in command)
        value = get("attributes")
        if value is None and not own:
            attributes = self._inherited_attributes(inh)
        else:
            attributes = _attributes(self._attrs(inh.attrs_raw, value, own, path))
        steps: tuple[Step, ...] = ()
        if steps_data:
            origins = self.doc.origins or {}
            rendered = [format_path((*path, "steps", j)) for j in range(len(steps_data))]
            steps = tuple(Step(s["name"], s.get("path", ""), origins.get(where, where),
                               s.get("content"), bool(s.get("executable", False)))
                          for where, s in zip(rendered, steps_data, strict=True))
        inputs, outputs = get("inputs"), get("outputs")
        task = Task(
            name=name, spec_path=format_path(path), resources=res,
            attributes=attributes,
            requires=inh.requires if "requires" not in t else self._requires(inh.requires, t,
                                                                             path),
            command=command, local=bool(get("local", False)),
            replicas=int(get("replicas", 1)), steps=steps,
            inputs=tuple(inputs) if inputs else (), outputs=tuple(outputs) if outputs else (),
        )
        for j, s in enumerate(steps):
            if not s.path:
                self.err(f"a {s.name} step needs a path", (*path, "steps", j),
                         f"write `- name: {s.name}` with `path: <file or directory>`")
            elif s.name == "write" and (s.content is None or Path(s.path).is_absolute()
                                        or ".." in Path(s.path).parts):
                self.err("a write step needs `content` and a relative path inside the staging "
                         "directory", (*path, "steps", j), "write e.g. `path: job.sh`")
        deps = get("depends_on")
        self.raws.append(_Raw(t, path, task, list(deps) if deps else [], (*path, "depends_on")))
        return task

    def _inherited_attributes(self, inh: _Inherited) -> Attributes:
        """``_attributes`` of what ``inh`` passes down, built once per enclosing level."""
        hit = self.plain_attributes.get(id(inh))
        if hit is None:  # the entry keeps ``inh`` alive, so its id is not reused meanwhile
            hit = self.plain_attributes[id(inh)] = (inh, _attributes(dict(inh.attrs_raw)))
        return hit[1]

    def _group(self, name: str, raw: _Raw, inh: _Inherited, ref: dict[str, Any] | None
               ) -> Group:
        g, path = raw.data, raw.path
        own = self._resources(g.get("resources"), (*path, "resources"))
        attrs = self._attrs(inh.attrs_raw, g.get("attributes"), own, path)
        requires = self._requires(inh.requires, g, path)
        mine = _Inherited(attrs, requires, own or inh.resources, inh.depth + 1)
        self.building.append(name)
        children = self._children(g.get("tasks") or [], (*path, "tasks"), mine, name)
        for sub_name, sub in self.group_defs.items():
            if sub.data.get("_parent") == name and sub_name not in self.group_refs:
                children.append(self._group(sub_name, sub, mine, None))
        self.building.pop()
        res = own or inh.resources
        if not res:
            child_res = [c.resources[0] for c in children if c.resources]
            if children and len(child_res) == len(children):
                res = (sum_requests(child_res),)
            elif inh.depth == 0:
                res = self._missing_resources("group", name, path)
        if not children:
            self.err(f"group '{name}' has no tasks", path, "add `tasks:` to the group")
        group = Group(name=name, spec_path=format_path(path), resources=res,
                      attributes=_attributes(attrs), requires=requires,
                      children=tuple(children))
        for c in children:
            object.__setattr__(c, "parent", group)
        deps = list(g.get("depends_on") or ())
        deps_path: tuple[str | int, ...] = (*path, "depends_on")
        if ref and ref.get("depends_on"):
            deps += list(ref["depends_on"])
            deps_path = (*self.group_refs[name], "depends_on")
        self.raws.append(_Raw(g, path, group, deps, deps_path))
        return group

    def _unreached_groups(self) -> None:
        """Groups that only reference each other are never placed: report the loop."""
        built = {raw.node.name for raw in self.raws if isinstance(raw.node, Group)}
        container = {}
        for name, path in self.group_refs.items():
            owner = [g for g, raw in self.group_defs.items() if path[:len(raw.path)] == raw.path
                     and len(path) == len(raw.path) + 2]
            container[name] = owner[0] if owner else None
        reported: set[str] = set()
        for name in self.group_defs:
            if name in built or name in reported:
                continue
            chain = [name]
            while (up := container.get(chain[-1])) is not None and up not in chain:
                chain.append(up)
            if up is None:
                continue  # inside a group that is itself reported
            loop = chain[chain.index(up):]
            reported.update(loop)
            cycle = " -> ".join([*reversed(loop), loop[-1]])
            self.err(f"group '{up}' contains itself: {cycle}", (*self.group_refs[up], "group"),
                     "a group cannot run inside itself; break the loop of group: references")

    def _missing_resources(self, kind: str, name: str, path: tuple[str | int, ...]
                           ) -> tuple[ResourceRequest, ...]:
        if self.default is not None:
            return (self.default,)
        known = ", ".join(sorted(self.named)[:8]) or "define one under the top-level resources:"
        self.err(f"{kind} '{name}' has no resources, and no default is configured", path,
                 f"add `resources: <name>` ({known}), or run with the local transformer, which "
                 "supplies one core by default")
        return ()

    def _resources(self, value: Any, path: tuple[str | int, ...]
                   ) -> tuple[ResourceRequest, ...]:
        if value is None:
            return ()
        if isinstance(value, dict):
            value = self._resource_as_written(value, path)
            return (request(None, parse_resource(value)),)
        if not isinstance(value, str):  # `resources: on` is a boolean: the schema said so
            return ()
        out = []
        for alt in (a.strip() for a in str(value).split("|")):
            if alt in self.named:
                out.append(self.named[alt])
            else:
                near = suggest(alt, self.named)
                self.err(f"unknown resource '{alt}'", path,
                         f"did you mean '{near}'?" if near else _known(self.named))
        return tuple(out)

    def _attrs(self, base: dict[str, Any], own: dict[str, Any] | None,
               resources: tuple[ResourceRequest, ...] | None, path: tuple[str | int, ...]
               ) -> dict[str, Any]:
        for key in own or {}:
            # Other keys are scheduler flags and pass through; a near miss of a known one is
            # almost always a typo that would silently do nothing.
            if key not in KNOWN_ATTRIBUTES and (near := suggest(key, KNOWN_ATTRIBUTES)):
                self.err(f"unknown attribute '{key}'", (*path, "attributes", key),
                         f"did you mean '{near}'?", at_key=True)
        if own:
            own = self._check_attributes(own, (*path, "attributes"))
        merged = dict(base)
        layers = [dict(resources[0].tree.attributes)] if resources else []
        layers.append(own or {})
        for layer in layers:
            for key, value in layer.items():
                if key == "environment":
                    merged["environment"] = {**merged.get("environment", {}), **(value or {})}
                else:
                    merged[key] = value
        return merged

    def _check_attributes(self, own: dict[str, Any], path: tuple[str | int, ...]
                          ) -> dict[str, Any]:
        """What the schema cannot say: a zero duration, an environment name no shell takes.
        Returns ``own`` with each environment value that YAML read as a number or a boolean
        as it was written: `010`, `1.10`, `yes` and `12:30` would become 8, 1.1, true and
        750, and an environment variable is text."""
        duration = own.get("duration")
        seconds = parse_duration(duration) if duration is not None else None
        if seconds == 0:
            self.err("a duration of 0 leaves the task no time to run", (*path, "duration"),
                     "remove `duration` for no limit, or give the time it needs (e.g. 5m)")
        elif seconds is not None and not math.isfinite(seconds):
            self.err("a duration must be a finite time", (*path, "duration"),
                     "remove `duration` for no limit, or give the time it needs (e.g. 5m)")
        env = own.get("environment") or {}
        for name in env:
            if not _ENV_NAME.match(str(name)):
                self.err(f"'{name}' is not an environment variable name",
                         (*path, "environment", name), "a name is letters, digits and _, "
                         "and does not start with a digit", at_key=True)
        return self._env_as_written(own, path)

    def _env_as_written(self, attrs: dict[str, Any], path: tuple[str | int, ...]
                        ) -> dict[str, Any]:
        """``attrs`` with each environment value YAML read as a number or a boolean taken as
        written in the spec (at ``path``, the attributes' own)."""
        env = attrs.get("environment") or {}
        written = {}
        for name, value in env.items():
            if not isinstance(value, str):
                text = scalar_text(self.doc.text, (*path, "environment", name))
                if text is not None:
                    written[name] = text
        return {**attrs, "environment": {**env, **written}} if written else attrs

    def _resource_as_written(self, body: Any, path: tuple[str | int, ...]) -> Any:
        """A resource's body with its attributes' environment as written (see above)."""
        if isinstance(body, dict) and isinstance(body.get("attributes"), dict) \
                and body["attributes"].get("environment"):
            return {**body, "attributes": self._env_as_written(body["attributes"],
                                                               (*path, "attributes"))}
        return body

    def _requires(self, inherited: Requires, data: dict[str, Any], path: tuple[str | int, ...]
                  ) -> Requires:
        value = data.get("requires")
        if value is None:
            return inherited
        if isinstance(value, dict):  # older draft: merge namespace by namespace, key by key
            merged = {ns: _thaw(kv) for ns, kv in inherited.mapping.items()}
            for ns, kv in value.items():
                old = merged.get(ns)
                merged[ns] = {**old, **kv} if isinstance(old, dict) and isinstance(kv, dict) else kv
            return Requires(_freeze2(merged), inherited.groups)
        groups = []
        for alt in (a.strip() for a in str(value).split("|")):
            if alt in self.named_requires:
                groups.append((alt, self.named_requires[alt]))
            else:
                near = suggest(alt, self.named_requires)
                self.err(f"unknown requires group '{alt}'", (*path, "requires"),
                         f"did you mean '{near}'?" if near else _known(self.named_requires))
        return Requires(inherited.mapping, tuple(groups))

    # -- dependencies -------------------------------------------------------------------------
    def _link(self, top: list[Unit]) -> None:
        by_name: dict[str, list[Unit]] = {}
        for raw in self.raws:
            if raw.node is not None:
                by_name.setdefault(raw.node.name, []).append(raw.node)
        for raw in self.raws:
            node = raw.node
            assert node is not None
            deps: list[Node] = []
            seen: set[int] = set()
            nested = node.parent is not None
            for j, dep in enumerate(raw.deps):
                found = by_name.get(dep, [])
                if len(found) == 1 and not nested and found[0] is not node:
                    if id(found[0]) not in seen:  # the common case: one top-level target
                        seen.add(id(found[0]))
                        deps.append(found[0])
                    continue
                if len(found) > 1:  # a task and a group share the name: prefer a sibling
                    found = [n for n in found if n.parent is node.parent] or found
                target = found[0] if len(found) == 1 else None
                if len(found) > 1:
                    self.err(f"'{dep}' names both a task and a group", (*raw.deps_path, j),
                             "rename one of them so depends_on is unambiguous")
                elif target is None:
                    near = suggest(dep, by_name)
                    self.err(f"unknown task or group '{dep}' in depends_on", (*raw.deps_path, j),
                             f"did you mean '{near}'?" if near else _known(by_name))
                elif target is node:
                    self.err(f"'{dep}' depends on itself", (*raw.deps_path, j),
                             "remove it from depends_on")
                elif nested and any(a is target for a in node.ancestors()):
                    self.err(f"'{node.name}' depends on its own group '{dep}', which cannot "
                             "finish before it", (*raw.deps_path, j),
                             "depend on a task inside the group")
                elif id(target) not in seen:
                    seen.add(id(target))
                    deps.append(target)
            object.__setattr__(node, "depends_on", tuple(deps))
        _set_order_edges(top)
        for raw in self.raws:
            if isinstance(raw.node, Group):
                _set_order_edges(list(raw.node.children))

    def _order(self, top: list[Unit]) -> list[Unit] | None:
        """Nodes with every dependency and child before its dependents (iterative DFS);
        None after reporting every cycle (each once, whichever node the search met first)."""
        nodes = [raw.node for raw in self.raws if raw.node is not None]
        state: dict[int, int] = {}  # 1 = on the stack, 2 = done
        order: list[Unit] = []
        cycles: set[frozenset[int]] = set()
        for root in nodes:
            if state.get(id(root)):
                continue
            stack: list[tuple[Unit, list[Unit]]] = [(root, _edges(root))]
            state[id(root)] = 1
            while stack:
                node, todo = stack[-1]
                if not todo:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
                    continue
                nxt = todo.pop()
                s = state.get(id(nxt))
                if s == 1:
                    at = next(i for i, (n, _) in enumerate(stack) if n is nxt)
                    members = frozenset(id(n) for n, _ in stack[at:])
                    if members in cycles:
                        continue
                    cycles.add(members)
                    cycle = [*(n.name for n, _ in stack[at:]), nxt.name]
                    raw = next(r for r in self.raws if r.node is nxt)
                    self.err("dependency cycle: " + " -> ".join(cycle)
                             + " (each waits for the next)", raw.path,
                             "a local task waits for every sibling listed before it"
                             if any(isinstance(n, Task) and n.local for n, _ in stack[at:])
                             else "remove one of these depends_on entries")
                    continue  # the search goes on: every other cycle is reported too
                if not s:
                    state[id(nxt)] = 1
                    stack.append((nxt, _edges(nxt)))
        return None if cycles else order


@dataclass(frozen=True)
class _Inherited:
    attrs_raw: dict[str, Any]
    requires: Requires
    resources: tuple[ResourceRequest, ...]
    depth: int = 0


def _edges(node: Unit) -> list[Unit]:
    """What must finish before ``node`` finishes: its `after` set, a group's children, and
    whatever its enclosing groups wait for (a child cannot start before its group does)."""
    edges: list[Unit] = list(reversed(node.after))  # type: ignore[arg-type]
    for group in node.ancestors():
        edges += reversed(group.after)  # type: ignore[arg-type]
    if isinstance(node, Group):
        edges += reversed(node.children)
    return edges


def _set_order_edges(siblings: list[Unit]) -> None:
    """`after` = depends_on plus order around local tasks, which act as barriers."""
    barrier: Unit | None = None
    for i, node in enumerate(siblings):
        after = list(node.depends_on)
        if isinstance(node, Task) and node.local:
            have = {id(n) for n in after}
            after += [s for s in siblings[:i] if id(s) not in have]
        elif barrier is not None and barrier not in after:
            after.append(barrier)
        if isinstance(node, Task) and node.local:
            barrier = node
        object.__setattr__(node, "after", tuple(after))


def _attributes(raw: dict[str, Any]) -> Attributes:
    env = {str(k): _env_str(v) for k, v in (raw.get("environment") or {}).items()}
    # `callback` is jobspec-do's own (the webhook URL, maybe with a token in its query): it
    # is not the task's, and must not reach its records or a scheduler's job attributes.
    extra = {k: v for k, v in raw.items()
             if k not in ("duration", "cwd", "environment", "watch", "callback")}
    duration = raw.get("duration")
    return Attributes(
        duration=parse_duration(duration) if duration is not None else None,
        cwd=raw.get("cwd"),
        environment=MappingProxyType(env) if env else EMPTY,
        watch=bool(raw.get("watch", False)),
        extra=MappingProxyType(extra) if extra else EMPTY,
    )


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _freeze2(mapping: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: MappingProxyType(dict(v)) if isinstance(v, dict) else v
                             for k, v in mapping.items()})


def _thaw(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _known(names: Mapping[str, Any]) -> str:
    listed = sorted(names)
    if not listed:
        return "none are defined"
    more = f", ... ({len(listed)} in all)" if len(listed) > 8 else ""
    return "known: " + ", ".join(listed[:8]) + more
