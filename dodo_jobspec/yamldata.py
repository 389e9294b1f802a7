"""YAML text -> plain Python data, as ``yaml.load(text, Loader=CSafeLoader)`` returns it.

libyaml parses and composes the node tree in C; PyYAML's SafeConstructor then builds the
Python objects in Python through a generic, generator-based machinery: at 100,000 tasks that
was 1.4 s of a 2.4 s load. A spec is maps, lists and scalars, which a direct walk of the
node tree builds in a seventh of that time. Anything else the safe loader knows (merge
keys, explicit tags such as ``!!set`` or ``!!binary``, complex keys) makes the walk step
aside and PyYAML's constructor build the whole document, so the result is always exactly
what ``yaml.load`` gives; errors are PyYAML's too.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Unusual(Exception):
    """The node tree holds something only PyYAML's constructor builds."""


def load(text: str, loader: type) -> Any:
    """The data of the single YAML document in ``text``, as ``yaml.load`` would give it."""
    node = yaml.compose(text, Loader=_quick(loader))
    if node is None:
        return None
    try:
        return _build(node)
    except _Unusual:
        # The constructor of the same loader class, on the node tree already composed.
        constructor = loader(text)
        try:
            return constructor.construct_document(node)
        finally:
            constructor.dispose()


@cache
def _quick(loader: type) -> type:
    """``loader`` with a leaner ``resolve``: libyaml's composer calls it from C for every
    node (a million at 100,000 tasks), and PyYAML's builds a new list of candidate regexps
    on each call. Same lookups in the same order, so the same tags; a loader with path
    resolvers keeps its own."""
    if loader.yaml_path_resolvers:
        return loader
    implicit: dict[Any, list[tuple[str, Any]]] = loader.yaml_implicit_resolvers
    scalar, seq, mapping = (loader.DEFAULT_SCALAR_TAG, loader.DEFAULT_SEQUENCE_TAG,
                            loader.DEFAULT_MAPPING_TAG)

    def resolve(self: Any, kind: type, value: Any, implied: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if implied[0]:
                for tag, regexp in implicit.get(value[0] if value else "", ()):
                    if regexp.match(value):
                        return tag
                for tag, regexp in implicit.get(None, ()):
                    if regexp.match(value):
                        return tag
            return scalar
        return seq if kind is SequenceNode else mapping

    return type(f"Quick{loader.__name__}", (loader,), {"resolve": resolve})


def _build(root: Node) -> Any:
    ctor = SafeConstructor()
    scalars = {f"tag:yaml.org,2002:{name}": getattr(ctor, f"construct_yaml_{name}")
               for name in ("int", "float", "bool", "null", "timestamp")}
    made: dict[int, Any] = {}  # an anchored node is one object wherever it is aliased

    def build(node: Node) -> Any:
        kind = node.__class__
        if kind is ScalarNode:
            if node.tag == _STR:
                return node.value
            make = scalars.get(node.tag)
            if make is None:
                raise _Unusual
            return make(node)
        done = made.get(id(node))
        if done is not None:
            return done
        if kind is MappingNode and node.tag == _MAP:
            out: dict[Any, Any] = {}
            made[id(node)] = out
            for key, value in node.value:
                if key.__class__ is ScalarNode and key.tag == _STR:
                    out[key.value] = build(value)
                    continue
                if key.__class__ is not ScalarNode:
                    raise _Unusual  # a complex key (PyYAML refuses unhashable ones)
                out[build(key)] = build(value)  # merge keys have their own tag: _Unusual
            return out
        if kind is SequenceNode and node.tag == _SEQ:
            items: list[Any] = []
            made[id(node)] = items
            items.extend([build(child) for child in node.value])
            return items
        raise _Unusual

    return build(root)
