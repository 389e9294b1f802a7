"""Render a resolved spec's task/group graph as text, Graphviz dot, or Mermaid."""

from __future__ import annotations

import json

from .model import Group, Spec, Task, Unit

FORMATS = ("text", "dot", "mermaid")


def render(spec: Spec, fmt: str = "text") -> str:
    """The dependency graph of ``spec`` in ``fmt`` (one of FORMATS)."""
    if fmt == "dot":
        return _dot(spec)
    if fmt == "mermaid":
        return _mermaid(spec)
    return _text(spec)


def _describe(node: Unit) -> str:
    if isinstance(node, Group):
        kind = "group"
    elif node.local:
        kind = "local task"
    else:
        kind = "task"
    extra = f" x{node.replicas}" if isinstance(node, Task) and node.replicas > 1 else ""
    return f"{kind} {node.name}{extra}"


def _text(spec: Spec) -> str:
    lines = [f"{spec.name}:"]

    def emit(node: Unit, indent: int) -> None:
        deps = ", ".join(d.name for d in node.after)
        after = f"  <- after {deps}" if deps else ""
        lines.append(f"{'  ' * indent}- {_describe(node)}{after}")
        if isinstance(node, Group):
            for child in node.children:
                emit(child, indent + 1)

    for node in spec.top:
        emit(node, 1)
    return "\n".join(lines)


def _id(node: Unit) -> str:
    return json.dumps(node.key)


def _dot(spec: Spec) -> str:
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
    out.append("}")
    return "\n".join(out)


def _mermaid(spec: Spec) -> str:
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
    return "\n".join(out)
