"""In what order one batch script starts a group's children, and what each waits for.

Shared by the Slurm and Flux group scripts. A child waits for a sibling when anything inside
it waits for something inside that sibling: through ``depends_on`` (and the barriers of
``local: true`` tasks), or through files, when one of its tasks reads (``inputs:``) what a
task of the sibling writes (``outputs:``). Top-level units are ordered the same way by
``plan.py``; inside one script only the script can keep that order.

File matching follows ``plan.py``'s rules without touching the disk: an input names an
output exactly, or a folder above it, or a glob that matches it. Paths are relative to the
task's ``cwd`` attribute (else the spec's folder).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from ..spec.model import Group, Task, Unit
from .base import SubmitError

_GLOB_CHARS = frozenset("*?[")


def launch_order(group: Group, spec_dir: Path) -> list[tuple[Unit, list[Unit]]]:
    """``group``'s children in an order a script can start them, each with its siblings to
    wait for (in the group's order). SubmitError when they wait for each other in a cycle."""
    def sibling_of(node: Unit) -> Unit | None:
        for n in (node, *node.ancestors()):
            if n.parent is group:
                return n
        return None  # outside this group: the engine waited for it before submitting

    made = {path: child for child in group.children
            for task in _tasks(child) for path in _paths(task, task.outputs, spec_dir)}
    deps: dict[Unit, list[Unit]] = {}
    for child in group.children:
        inner = [child, *(child.walk() if isinstance(child, Group) else ())]
        found = {s for n in inner for d in n.after if (s := sibling_of(d)) not in (None, child)}
        found |= {m for task in _tasks(child) for m in _makers(task, made, spec_dir)
                  if m is not child}
        deps[child] = [c for c in group.children if c in found]
    # The Slurm script waits for one child at a time, so it starts first what needs no new
    # wait: a child that waits for a slow sibling then delays only the children after it.
    order: list[Unit] = []
    waited: set[Unit] = set()
    while len(order) < len(group.children):
        ready = [c for c in group.children if c not in order and all(d in order for d in deps[c])]
        if not ready:
            stuck = [c.name for c in group.children if c not in order]
            raise SubmitError(f"group '{group.name}': its children {', '.join(stuck)} wait for "
                              "each other (through depends_on, or one reading what another "
                              "writes), so no order can start them")
        pick = next((c for c in ready if waited.issuperset(deps[c])), ready[0])
        order.append(pick)
        waited.update(deps[pick])
    return [(c, deps[c]) for c in order]


def _tasks(node: Unit) -> list[Task]:
    if isinstance(node, Task):
        return [node]
    return [c for c in node.walk() if isinstance(c, Task)]


def _paths(task: Task, names: Iterable[str], spec_dir: Path) -> list[str]:
    base = os.path.join(spec_dir, task.attributes.cwd or "")
    return [os.path.normpath(os.path.join(base, name)) for name in names]


def _makers(task: Task, made: dict[str, Unit], spec_dir: Path) -> Iterable[Unit]:
    """The children that write a file ``task`` reads."""
    for pattern, full in zip(task.inputs, _paths(task, task.inputs, spec_dir), strict=True):
        if _GLOB_CHARS & set(pattern):
            yield from (m for path, m in made.items() if fnmatch.fnmatch(path, full))
        elif full in made:
            yield made[full]
        else:  # a folder: everything made below it
            yield from (m for path, m in made.items() if path.startswith(full + os.sep))
