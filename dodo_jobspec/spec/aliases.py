"""YAML aliases stay cheap: a spec that expands to far more than it writes is refused.

A YAML alias (``*a``) is a reference: parsing ``a: &a [x, x]`` nine levels deep is a few
hundred bytes and a few dozen objects, but everything that walks the data afterwards (the
schema check, resolving, the records) walks every expanded copy: 9^8 leaves took 16 s and
1 GB, one level more did not finish. And an alias inside its own anchor (``&r {self: *r}``)
is a loop that nothing after the parser can walk at all. Both are found here, on the parsed
data, before anything else looks at it: one visit per distinct list or mapping.
"""

from __future__ import annotations

from typing import Any

from ..errors import PathPart

# How many values aliases may add beyond what the file writes out: generous for specs that
# share a resource or an environment across many tasks (each alias adds a copy's size).
MAX_EXTRA = 1_000_000


class AliasProblem(Exception):
    """What is wrong (``message``), where (``path``), and the fix (``hint``)."""

    def __init__(self, message: str, path: tuple[PathPart, ...], hint: str) -> None:
        super().__init__(message)
        self.path = path
        self.hint = hint


def check(data: Any) -> None:
    """Raise AliasProblem if ``data`` is recursive, or if its aliases expand it by more than
    MAX_EXTRA values. Only for data whose YAML used an alias (yamldata.load says)."""
    sizes, distinct = _sizes(data)
    total = sizes.get(id(data), 1)
    if total - distinct > MAX_EXTRA:
        raise AliasProblem(
            f"YAML aliases expand this spec to {total:,} values, more than "
            f"{MAX_EXTRA:,} beyond the {distinct:,} it writes out",
            _biggest_shared(data, sizes),
            "write the shared part once per use, or share less: an alias copies all of its "
            "anchor wherever it appears")


def _sizes(root: Any) -> tuple[dict[int, int], int]:
    """The expanded size of every distinct list and mapping under ``root`` (by id), and how
    many values the file writes out; without recursion (a spec may nest deeply), and
    without paths (100,000 tasks that share an alias are walked in well under a second).
    AliasProblem on a cycle, with its path found by a second, slower walk."""
    sizes: dict[int, int] = {}
    distinct = 0
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    containers = (dict, list)
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            total = own = 1
            for child in (node.values() if node.__class__ is dict else node):
                if child.__class__ in containers or isinstance(child, containers):
                    total += sizes[id(child)]
                else:
                    total += 1
                    own += 1
            sizes[key] = total
            distinct += own
            continue
        if key in sizes:
            continue
        if key in open_:
            raise AliasProblem("this value contains itself (a YAML alias inside its own "
                               "anchor): it would never end", _loop_path(root),
                               "an alias (*name) can only refer to a finished anchor (&name)")
        open_.add(key)
        stack.append((node, True))
        for child in (node.values() if node.__class__ is dict else node):
            if isinstance(child, containers) and id(child) not in sizes:
                stack.append((child, False))
    return sizes, distinct


def _loop_path(root: Any) -> tuple[PathPart, ...]:
    """The path to the first value found inside itself (depth first)."""
    stack: list[tuple[Any, tuple[PathPart, ...], frozenset[int]]] = [(root, (), frozenset())]
    while stack:
        node, path, above = stack.pop()
        for part, child in _children(node):
            if isinstance(child, dict | list):
                if id(child) in above or child is node:
                    return (*path, part)
                stack.append((child, (*path, part), above | {id(node)}))
    return ()


def _children(node: Any) -> list[tuple[PathPart, Any]]:
    if isinstance(node, dict):
        return [(str(k), v) for k, v in node.items()]
    if isinstance(node, list):
        return list(enumerate(node))
    return []


def _biggest_shared(root: Any, sizes: dict[int, int]) -> tuple[PathPart, ...]:
    """The path down the largest branch to the first value that is an alias's copy: where
    the expansion happens."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        for _, child in _children(node):
            if isinstance(child, dict | list):
                if id(child) in seen:
                    shared.add(id(child))
                else:
                    seen.add(id(child))
                    stack.append(child)
    path: tuple[PathPart, ...] = ()
    node = root
    while True:
        kids = [(p, c) for p, c in _children(node) if isinstance(c, dict | list)]
        if not kids:
            return path
        part, node = max(kids, key=lambda pc: sizes.get(id(pc[1]), 1))
        path = (*path, part)
        if id(node) in shared:
            return path
