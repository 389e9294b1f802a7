"""Render a resolved spec's task/group graph as text, Graphviz dot, or Mermaid."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from .model import Group, Spec, Task, Unit

FORMATS = ("text", "dot", "mermaid")


Inferred = Mapping[str, Sequence[Unit]]  # unit key -> units it reads from (what plan adds)


def render(spec: Spec, fmt: str = "text", inferred: Inferred | None = None) -> str:
    """The dependency graph of ``spec`` in ``fmt`` (one of FORMATS); ``inferred`` edges (a
    unit reads what another makes) are drawn apart from the written ``depends_on``."""
    inferred = inferred or {}
    if fmt == "dot":
        return _dot(spec, inferred)
    if fmt == "mermaid":
        return _mermaid(spec, inferred)
    return _text(spec, inferred)


def _describe(node: Unit) -> str:
    if isinstance(node, Group):
        kind = "group"
    elif node.local:
        kind = "local task"
    else:
        kind = "task"
    extra = f" x{node.replicas}" if isinstance(node, Task) and node.replicas > 1 else ""
    return f"{kind} {node.name}{extra}"


def _text(spec: Spec, inferred: Inferred) -> str:
    lines = [f"{spec.name}:"]

    def emit(node: Unit, indent: int) -> None:
        deps = ", ".join(d.name for d in node.after)
        after = f"  <- after {deps}" if deps else ""
        reads = ", ".join(d.name for d in inferred.get(node.key, ()))
        after += f"  <- reads what {reads} makes (inferred)" if reads else ""
        lines.append(f"{'  ' * indent}- {_describe(node)}{after}")
        if isinstance(node, Group):
            for child in node.children:
                emit(child, indent + 1)

    for node in spec.top:
        emit(node, 1)
    return "\n".join(lines)


def _id(node: Unit) -> str:
    return json.dumps(node.key)


def _dot(spec: Spec, inferred: Inferred) -> str:
    out = [f"digraph {json.dumps(spec.name)} {{", "  rankdir=LR;", "  node [shape=box];"]

    def emit(node: Unit, indent: str) -> None:
        if isinstance(node, Group):
            out.append(f"{indent}subgraph {json.dumps('cluster_' + node.name)} {{")
            out.append(f"{indent}  label={json.dumps('group ' + node.name)};")
            out.append(f"{indent}  {_id(node)} [label={json.dumps(node.name)}, shape=folder];")
            for child in node.children:
                emit(child, indent + "  ")
            out.append(f"{indent}}}")
        else:
            shape = ", shape=ellipse" if node.local else ""
            out.append(f"{indent}{_id(node)} [label={json.dumps(_describe(node))}{shape}];")

    for node in spec.top:
        emit(node, "  ")
    for node in spec.nodes.values():
        for dep in node.after:
            out.append(f"  {_id(dep)} -> {_id(node)};")
        for dep in inferred.get(node.key, ()):
            out.append(f"  {_id(dep)} -> {_id(node)} [style=dashed, label=\"inferred\"];")
    out.append("}")
    return "\n".join(out)


def _mermaid(spec: Spec, inferred: Inferred) -> str:
    ids = {n.key: f"n{i}" for i, n in enumerate(spec.nodes.values())}
    out = ["flowchart LR"]

    def label(node: Unit) -> str:
        return _describe(node).replace('"', "'")

    def emit(node: Unit, indent: str) -> None:
        if isinstance(node, Group):
            out.append(f'{indent}subgraph {ids[node.key]}["{label(node)}"]')
            for child in node.children:
                emit(child, indent + "  ")
            out.append(f"{indent}end")
        else:
            out.append(f'{indent}{ids[node.key]}["{label(node)}"]')

    for node in spec.top:
        emit(node, "  ")
    for node in spec.nodes.values():
        for dep in node.after:
            out.append(f"  {ids[dep.key]} --> {ids[node.key]}")
        for dep in inferred.get(node.key, ()):
            out.append(f"  {ids[dep.key]} -.->|inferred| {ids[node.key]}")
    return "\n".join(out)
