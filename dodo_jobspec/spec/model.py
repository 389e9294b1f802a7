"""The resolved JobSpec model: what every later stage reads, and nothing else.

Everything here is frozen. Named resources are looked up, attributes inherited, requires merged,
group references placed, default names given and dependencies turned into object references, so
no later stage re-interprets the YAML.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar, overload

EMPTY: Mapping[str, Any] = MappingProxyType({})

_T = TypeVar("_T")


class _once(Generic[_T]):  # lower case: used like functools.cached_property
    """Like functools.cached_property (the value lands in the instance's ``__dict__``, so the
    next read is a plain attribute), without its lock: the values here are pure functions of
    a finished node, and computing one twice in two threads gives the same string."""

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _once[_T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> _T | _once[_T]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


def _empty() -> Mapping[str, Any]:
    return EMPTY


@dataclass(frozen=True, slots=True)
class Resource:
    """One vertex of a resource tree (``type``, ``count``, children under ``with``)."""

    type: str
    count: int = 1
    with_: tuple[Resource, ...] = ()
    requires: tuple[Mapping[str, Any], ...] = ()  # resource-level {name, field, match} items
    attributes: Mapping[str, Any] = field(default_factory=_empty)
    label: str | None = None
    exclusive: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, stable for hashing and for `plan --json`."""
        out: dict[str, Any] = {"type": self.type, "count": self.count}
        if self.with_:
            out["with"] = [r.to_dict() for r in self.with_]
        if self.requires:
            out["requires"] = [dict(r) for r in self.requires]
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        if self.label is not None:
            out["label"] = self.label
        if self.exclusive is not None:
            out["exclusive"] = self.exclusive
        return out


@dataclass(frozen=True, slots=True)
class Counts:
    """A resource tree flattened to what schedulers ask for.

    ``nodes`` is 0 when the tree names no node (the scheduler places the slots). Without an
    explicit ``slot`` vertex, each node (or the whole request, if there is no node) is one slot.
    """

    nodes: int
    slots: int
    cores_per_slot: int
    gpus_per_slot: int

    @property
    def cores(self) -> int:
        return self.slots * self.cores_per_slot

    @property
    def gpus(self) -> int:
        return self.slots * self.gpus_per_slot


@dataclass(frozen=True, slots=True)
class ResourceRequest:
    """One alternative of a task's or group's resources."""

    name: str | None  # the named top-level resource, or None when given inline
    tree: Resource
    counts: Counts

    @property
    def label(self) -> str:
        c = self.counts
        shape = f"{c.nodes} node(s), " if c.nodes else ""
        shape += f"{c.slots} slot(s) x {c.cores_per_slot} core(s)"
        if c.gpus_per_slot:
            shape += f" + {c.gpus_per_slot} gpu(s)"
        return f"{self.name or 'inline'} [{shape}]"


@dataclass(frozen=True, slots=True)
class Attributes:
    """Effective attributes after inheritance (task over group over resource over global)."""

    duration: float | None = None  # seconds
    cwd: str | None = None
    environment: Mapping[str, str] = field(default_factory=_empty)
    watch: bool = False
    # Other flags, passed on by the transformers that know them.
    extra: Mapping[str, Any] = field(default_factory=_empty)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, stable for hashing."""
        return {"duration": self.duration, "cwd": self.cwd,
                "environment": dict(sorted(self.environment.items())), "watch": self.watch,
                "extra": {k: self.extra[k] for k in sorted(self.extra)}}


@dataclass(frozen=True, slots=True)
class Requires:
    """Effective requirements.

    ``mapping`` is the older draft's {namespace: {key: value}} merged global < group < task.
    ``groups`` holds the alternatives of a ``requires: a|b`` reference to named top-level groups,
    each as (name, items).
    """

    mapping: Mapping[str, Any] = field(default_factory=_empty)  # values: scalar or mapping
    groups: tuple[tuple[str, tuple[Mapping[str, Any], ...]], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"mapping": {k: dict(v) if isinstance(v, Mapping) else v
                            for k, v in sorted(self.mapping.items())},
                "groups": [[n, [dict(i) for i in items]] for n, items in self.groups]}

    def __bool__(self) -> bool:
        return bool(self.mapping or self.groups)


@dataclass(frozen=True, slots=True)
class Step:
    """A step run before its task.

    ``stage`` makes ``path`` (a file or directory, relative to the spec's folder) present on
    every node the task runs on. ``write`` writes ``content`` to ``path`` (relative to the
    staging directory, made executable if asked); the 0.0.x format's scripts become these.
    """

    name: str
    path: str
    spec_path: str = ""
    content: str | None = None
    executable: bool = False


@dataclass(frozen=True, eq=False)
class Node:
    """What tasks and groups share: identity, place in the tree, and dependencies.

    Nodes compare by identity. ``parent`` and ``depends_on`` are filled in by the resolver,
    which is the only code that writes to a Node after construction.
    """

    name: str
    spec_path: str  # e.g. "tasks[1]" or "groups[0].tasks[2]"
    resources: tuple[ResourceRequest, ...]  # alternatives; empty = none (default supplied later)
    attributes: Attributes
    requires: Requires
    parent: Group | None = field(default=None, compare=False)
    depends_on: tuple[Node, ...] = field(default=(), compare=False)
    after: tuple[Node, ...] = field(default=(), compare=False)  # depends_on + sibling order

    @property
    def is_group(self) -> bool:
        return isinstance(self, Group)

    def __post_init__(self) -> None:
        # Both attributes exist from construction on, in this order: one added later turns
        # the instance's key-sharing __dict__ into a full one (184 -> 832 bytes per node).
        object.__setattr__(self, "_key",
                           f"{'group' if isinstance(self, Group) else 'task'}/{self.name}")
        object.__setattr__(self, "_digest", None)

    @property
    def key(self) -> str:
        """Unique id: a group and a task may share a name (the spec's own examples do)."""
        return self._key  # type: ignore[attr-defined,no-any-return]

    @property
    def digest(self) -> str:
        """Content hash of the resolved definition (what a run compares to its records).

        Computed when first read, once the resolver has finished the node: `validate`,
        `graph` and a `plan` answered without doit never need it. Two threads computing it
        at once compute the same string."""
        value: str | None = self._digest  # type: ignore[attr-defined]
        if value is None:
            blob = json.dumps(definition(self), sort_keys=True,  # type: ignore[arg-type]
                              separators=(",", ":"), default=str)
            value = hashlib.sha256(blob.encode()).hexdigest()
            object.__setattr__(self, "_digest", value)
        return value

    def ancestors(self) -> Iterator[Group]:
        """Enclosing groups, nearest first."""
        g = self.parent
        while g is not None:
            yield g
            g = g.parent

    @property
    def top(self) -> Node:
        """The top-level node that contains this one (itself if it is top level)."""
        node: Node = self
        while node.parent is not None:
            node = node.parent
        return node

    @property
    def depth(self) -> int:
        return sum(1 for _ in self.ancestors())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


@dataclass(frozen=True, eq=False, repr=False)
class Task(Node):
    """A resolved task: one command (or only steps), run ``replicas`` times."""

    command: tuple[str, ...] | str | None = None  # list form is exec'd; str runs under a shell
    local: bool = False
    replicas: int = 1
    steps: tuple[Step, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False, repr=False)
class Group(Node):
    """A resolved group: children run inside one allocation, in the order given."""

    children: tuple[Task | Group, ...] = ()

    def walk(self) -> Iterator[Task | Group]:
        """Every descendant, depth first, in spec order."""
        stack = list(reversed(self.children))
        while stack:
            node = stack.pop()
            yield node
            if isinstance(node, Group):
                stack.extend(reversed(node.children))


Unit = Task | Group


@dataclass(frozen=True, eq=False)
class Spec:
    """A whole resolved JobSpec."""

    name: str
    path: Path
    top: tuple[Unit, ...]  # top-level tasks and groups, in run order
    nodes: Mapping[str, Unit]  # every task and group by key, dependencies first
    # The top-level `attributes.callback` as written (checked when a run attaches a webhook).
    callback: Any = None

    @_once
    def digest(self) -> str:
        """The hash of every node's digest, in order."""
        return hashlib.sha256("".join(n.digest for n in self.nodes.values()).encode()
                              ).hexdigest()

    @property
    def tasks(self) -> list[Task]:
        return [n for n in self.nodes.values() if isinstance(n, Task)]

    @property
    def groups(self) -> list[Group]:
        return [n for n in self.nodes.values() if isinstance(n, Group)]

    def find(self, name: str) -> list[Unit]:
        """Nodes called ``name`` (a task and a group may share one), or with that key."""
        if name in self.nodes:
            return [self.nodes[name]]
        return [n for k in (f"task/{name}", f"group/{name}") if (n := self.nodes.get(k))]


def definition(node: Unit) -> dict[str, Any]:
    """The resolved definition of a node as plain data (what its digest covers)."""
    d: dict[str, Any] = {
        "kind": "group" if isinstance(node, Group) else "task",
        "name": node.name,
        "resources": [{"name": r.name, "tree": r.tree.to_dict()} for r in node.resources],
        "attributes": node.attributes.to_dict(),
        "requires": node.requires.to_dict(),
        "depends_on": sorted(n.name for n in node.depends_on),
        "parent": node.parent.name if node.parent else None,
    }
    if isinstance(node, Task):
        d.update(command=node.command if isinstance(node.command, str | None)
                 else list(node.command), local=node.local, replicas=node.replicas,
                 steps=[[s.name, s.path, s.content, s.executable] for s in node.steps],
                 inputs=list(node.inputs),
                 outputs=list(node.outputs))
    else:
        d["children"] = [c.digest for c in node.children]
    return d
