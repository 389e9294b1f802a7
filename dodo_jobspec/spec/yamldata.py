"""YAML text -> plain Python data, as ``yaml.load(text, Loader=CSafeLoader)`` returns it.

libyaml parses in C; PyYAML then composes a node tree (two Mark objects per node) and its
SafeConstructor builds the Python objects through a generic, generator-based machinery: at
100,000 tasks that was 2.4 s. A spec is maps, lists and scalars, which are built here
straight from libyaml's events (1.0 s). Whatever else the safe loader knows (merge keys,
explicit tags such as ``!!set``, complex keys, anything malformed) sends the document the
long way: composed, walked, and handed to PyYAML's constructor if the walk meets something
it does not build either. So the result is always exactly what ``yaml.load`` gives, and
errors are PyYAML's own, with one exception: a mapping that sets the same key twice, which
``yaml.load`` accepts silently (the last value wins), raises DuplicateKeyError. Each way
checks as it builds a mapping (one dict lookup per key); the first to meet a duplicate hands
the document to ``_check_duplicates``, which walks the composed nodes for the marks and the
spec path the error names.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


class _Unusual(Exception):
    """The node tree holds something only PyYAML's constructor builds."""


class _Duplicate(_Unusual):
    """A mapping sets a key twice: the long way finds where, and raises DuplicateKeyError."""


class DuplicateKeyError(ConstructorError):
    """A mapping that sets the same key twice (``yaml.load`` would keep the last value).

    ``path``: the spec path of the second occurrence (mapping keys as written, list
    indexes as ints); ``key``: that key as written; ``first_key`` and ``first_mark``: the
    earlier occurrence (the same key, perhaps written differently: ``1`` and ``1.0``);
    ``also``: the document's other duplicates, in document order."""

    def __init__(self, path: tuple[str | int, ...], key: ScalarNode, first: ScalarNode,
                 mapping: MappingNode) -> None:
        super().__init__("while constructing a mapping", mapping.start_mark,
                         f"found duplicate key '{key.value}' (first set on line "
                         f"{first.start_mark.line + 1})", key.start_mark)
        self.path = path
        self.key: str = key.value
        self.first_key: str = first.value
        self.first_mark = first.start_mark
        self.also: tuple[DuplicateKeyError, ...] = ()


def load(text: str, loader: type, aliases: list[bool] | None = None) -> Any:
    """The data of the single YAML document in ``text``, as ``yaml.load`` would give it.

    ``aliases``, if given, gets True appended when the document may use an alias (one value
    in several places), False when it certainly does not: spec/aliases.py then knows
    whether the data needs walking for alias bombs and loops."""
    if not loader.yaml_path_resolvers:
        try:
            data, aliased = _from_events(text, loader)
            if aliases is not None:
                aliases.append(aliased)
            return data
        except (_Unusual, yaml.YAMLError):
            pass  # the long way builds it, or raises PyYAML's own error (or a duplicate's)
    if aliases is not None:
        aliases.append(True)  # the long way is rare: assume the worst
    node = yaml.compose(text, Loader=_quick(loader))
    if node is None:
        return None
    try:
        return _build(node)
    except _Unusual:
        # A duplicate key that stopped _build is raised here; so is one that PyYAML's
        # constructor (which does not check) would otherwise accept.
        _check_duplicates(node)
        # The constructor of the same loader class, on the node tree already composed.
        constructor = loader(text)
        try:
            return constructor.construct_document(node)
        finally:
            constructor.dispose()


_NO_KEY = object()


def _from_events(text: str, loader: type) -> tuple[Any, bool]:
    """Build the document from the parser's events (and whether an alias was met);
    _Unusual if it is not plain data."""
    parser = loader(text)
    try:
        builder = _EventBuilder(parser, loader)
        return builder.document(), builder.aliased
    finally:
        parser.dispose()


class _EventBuilder:
    """Containers on a stack; each scalar, alias or container goes into the one on top."""

    def __init__(self, parser: Any, loader: type) -> None:
        self.get = parser.get_event
        self.implicit: dict[Any, list[tuple[str, Any]]] = loader.yaml_implicit_resolvers
        ctor = SafeConstructor()
        self.scalars = {f"tag:yaml.org,2002:{name}": getattr(ctor, f"construct_yaml_{name}")
                        for name in ("int", "float", "bool", "null", "timestamp")}
        self.anchors: dict[str, Any] = {}
        self.aliased = False

    def document(self) -> Any:
        get = self.get
        get()  # StreamStartEvent
        if get().__class__ is StreamEndEvent:
            return None  # no document at all
        stack: list[list[Any]] = []  # [container, key waiting for its value or _NO_KEY]
        while True:
            event = get()
            kind = event.__class__
            if kind is ScalarEvent:
                value = self.scalar(event)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                container: Any = {} if kind is MappingStartEvent else []
                self.anchor(event, container)
                if stack:
                    self.place(stack[-1], container)
                stack.append([container, _NO_KEY])
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                done = stack.pop()
                if stack:
                    continue
                return self.end(done[0])
            elif kind is AliasEvent:
                if event.anchor not in self.anchors:
                    raise _Unusual  # PyYAML's error comes from the long way
                value = self.anchors[event.anchor]
                self.aliased = True
            else:
                raise _Unusual
            if not stack:
                return self.end(value)
            self.place(stack[-1], value)

    def scalar(self, event: ScalarEvent) -> Any:
        if event.tag is not None and event.tag != "!":
            raise _Unusual  # an explicit tag
        value = event.value
        if event.implicit[0]:  # plain: resolved as PyYAML's Resolver.resolve does
            implicit = self.implicit
            for tag, regexp in (*implicit.get(value[0] if value else "", ()),
                                *implicit.get(None, ())):
                if regexp.match(value):
                    make = self.scalars.get(tag)
                    if make is None:
                        raise _Unusual  # e.g. a merge key
                    value = make(ScalarNode(tag, value))
                    break
        self.anchor(event, value)
        return value

    def anchor(self, event: Any, value: Any) -> None:
        if event.tag is not None and event.tag != "!":
            raise _Unusual
        if event.anchor is not None:
            if event.anchor in self.anchors:
                raise _Unusual  # a duplicate anchor: PyYAML decides
            self.anchors[event.anchor] = value

    @staticmethod
    def place(top: list[Any], value: Any) -> None:
        container, key = top
        if container.__class__ is list:
            container.append(value)
        elif key is _NO_KEY:
            if value.__class__ is dict or value.__class__ is list:
                raise _Unusual  # a complex key
            if value in container:
                raise _Duplicate
            top[1] = value
        else:
            container[key] = value
            top[1] = _NO_KEY

    def end(self, value: Any) -> Any:
        self.get()  # DocumentEndEvent
        if self.get().__class__ is not StreamEndEvent:
            raise _Unusual  # a second document: PyYAML's error
        return value


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
                    name = key.value
                else:
                    if key.__class__ is not ScalarNode:
                        raise _Unusual  # a complex key (PyYAML refuses unhashable ones)
                    name = build(key)  # merge keys have their own tag: _Unusual
                if name in out:
                    raise _Duplicate
                out[name] = build(value)
            return out
        if kind is SequenceNode and node.tag == _SEQ:
            items: list[Any] = []
            made[id(node)] = items
            items.extend([build(child) for child in node.value])
            return items
        raise _Unusual

    return build(root)


def _check_duplicates(root: Node) -> None:
    """Raise DuplicateKeyError for the first key, in document order, that a mapping sets
    again (the others in its ``also``). Keys are compared as the Python values they build,
    as the dict they go into would compare them (``1`` and ``1.0`` are one key); merge keys
    (``<<``) and complex keys are not compared. Only on the long way."""
    ctor = SafeConstructor()
    seen: set[int] = set()  # an anchored node is checked once, where it first appears
    path: list[str | int] = []
    found: list[DuplicateKeyError] = []

    def value_of(key: Node) -> Any:
        if key.__class__ is not ScalarNode or key.tag == _MERGE:
            return object()  # equal to nothing
        if key.tag == _STR:
            return key.value
        try:
            made = ctor.construct_object(key)
            hash(made)
        except (yaml.YAMLError, TypeError):
            return object()  # PyYAML's constructor reports it
        return made

    def walk(node: Node) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[Any, ScalarNode] = {}
            for key, value in node.value:
                name = value_of(key)
                if name in first:
                    where = (*path, key.value)
                    found.append(DuplicateKeyError(where, key, first[name], node))
                else:
                    first[name] = key
                path.append(key.value if key.__class__ is ScalarNode else "?")
                walk(value)
                path.pop()
        elif isinstance(node, SequenceNode):
            for index, child in enumerate(node.value):
                path.append(index)
                walk(child)
                path.pop()

    walk(root)
    if found:
        found[0].also = tuple(found[1:])
        raise found[0]
