"""Resource trees: parse them from spec data and flatten them to scheduler counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .model import EMPTY, Counts, Resource, ResourceRequest

CORE_TYPES = frozenset({"core", "cores", "cpu", "cpus"})
GPU_TYPES = frozenset({"gpu", "gpus"})


def parse_resource(data: Mapping[str, Any]) -> Resource:
    """Build a Resource tree from a schema-valid mapping (``replicas`` stands in for ``count``)."""
    reqs = data.get("requires") or ()
    if isinstance(reqs, Mapping):  # older mapping forms {ns: {key: value}}, {key: value}
        reqs = [item for ns, kv in reqs.items() for item in (
            [{"name": ns, "field": k, "match": v} for k, v in kv.items()]
            if isinstance(kv, Mapping) else
            [{"field": ns, "match": kv}] if kv is not None else [])]
    return Resource(
        type=str(data["type"]),
        count=int(data.get("count", data.get("replicas", 1))),
        with_=tuple(parse_resource(c) for c in data.get("with") or ()),
        requires=tuple(MappingProxyType(dict(r)) for r in reqs),
        attributes=MappingProxyType(dict(data.get("attributes") or {})) or EMPTY,
        label=data.get("label"),
        exclusive=data.get("exclusive"),
    )


def flatten(tree: Resource) -> Counts:
    """Flatten a tree to nodes, slots, cores per slot and gpus per slot."""
    nodes = _count_to(tree, "node")
    slots = _count_to(tree, "slot")
    if slots:
        slot = _first(tree, "slot")
        assert slot is not None
        cores = _sum_under(slot.with_, CORE_TYPES)
        gpus = _sum_under(slot.with_, GPU_TYPES)
    else:
        # No explicit slot: one slot per node, or one for the whole request.
        unit = _first(tree, "node")
        below: Iterable[Resource] = unit.with_ if unit else (tree,)
        slots = nodes or 1
        cores = _sum_under(below, CORE_TYPES)
        gpus = _sum_under(below, GPU_TYPES)
    return Counts(nodes=nodes, slots=slots, cores_per_slot=max(cores, 1), gpus_per_slot=gpus)


def request(name: str | None, tree: Resource) -> ResourceRequest:
    """A ResourceRequest with its counts computed."""
    return ResourceRequest(name, tree, flatten(tree))


def sum_requests(requests: list[ResourceRequest]) -> ResourceRequest:
    """What a group without resources asks for: the sum of its children (older draft rule)."""
    trees = tuple(r.tree for r in requests)
    counts = Counts(
        nodes=sum(r.counts.nodes for r in requests),
        slots=sum(r.counts.slots for r in requests),
        cores_per_slot=max(r.counts.cores_per_slot for r in requests),
        gpus_per_slot=max(r.counts.gpus_per_slot for r in requests),
    )
    return ResourceRequest("sum-of-tasks", Resource("group", 1, trees), counts)


def _count_to(tree: Resource, kind: str) -> int:
    """Product of counts from the root down to the first vertex of ``kind`` (0 if none)."""
    if tree.type == kind:
        return tree.count
    best = 0
    for child in tree.with_:
        below = _count_to(child, kind)
        best += below
    return tree.count * best if best else 0


def _first(tree: Resource, kind: str) -> Resource | None:
    if tree.type == kind:
        return tree
    for child in tree.with_:
        found = _first(child, kind)
        if found is not None:
            return found
    return None


def _sum_under(trees: Iterable[Resource], kinds: frozenset[str]) -> int:
    total = 0
    for t in trees:
        if t.type in kinds:
            total += t.count
        else:
            total += t.count * _sum_under(t.with_, kinds)
    return total
