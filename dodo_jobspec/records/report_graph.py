"""The report's dependency graph as inline SVG: Graphviz ``dot`` when it is installed, else a
layered layout of our own.

Both draw every task and group as a node coloured by its state (class ``node st-<state>``)
and every ``depends_on`` as an edge (class ``edge``); a group's members hang off it with
dashed lines (class ``member``) in our layout, and sit in its box (a cluster) in dot's.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

# dot's layout time grows fast with the graph; past these sizes the page says what it left out.
DOT_LIMIT = 400
OWN_LIMIT = 1500
_W, _H, _GAP_X, _GAP_Y = 150, 24, 60, 12

# Fill colours by state, shared with the page's stylesheet (report_html.STATE_COLOURS).
COLOURS = {
    "completed": "#4caf50", "failed": "#e53935", "timeout": "#fb8c00", "canceled": "#8e24aa",
    "interrupted": "#8e24aa", "lost": "#616161", "unknown": "#616161", "blocked": "#bdbdbd",
    "running": "#1e88e5", "queued": "#90caf9", "submitting": "#90caf9", "attached": "#1e88e5",
    "never run": "#e0e0e0", "not run": "#e0e0e0",
}


@dataclass(frozen=True)
class GraphNode:
    """One task or group to draw."""

    name: str
    kind: str  # "task" or "group"
    state: str
    parent: str | None  # the enclosing group's name
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Drawn:
    """A drawn graph: the SVG (empty when not drawn), who drew it, and a note for the page."""

    svg: str
    engine: str  # "dot", "layered" or "none"
    note: str


def state_class(state: str) -> str:
    """The CSS class of a state: ``st-never-run`` for "never run"."""
    return "st-" + state.replace(" ", "-")


def draw(nodes: Sequence[GraphNode], engine: str = "auto") -> Drawn:
    """The graph of ``nodes``: ``engine`` is "dot", "layered" or "auto" (dot when installed
    and the graph is small enough for it, else layered)."""
    if not nodes:
        return Drawn("", "none", "The spec has no tasks.")
    if engine in ("auto", "dot") and shutil.which("dot") and len(nodes) <= DOT_LIMIT:
        svg = _dot_svg(nodes)
        if svg:
            return Drawn(svg, "dot", "Drawn by Graphviz dot.")
        if engine == "dot":
            return Drawn(_layered(nodes), "layered", "Graphviz dot failed; drawn by "
                         "jobspec-do's own layered layout.")
    if len(nodes) > OWN_LIMIT:
        return Drawn("", "none", f"{len(nodes):,} tasks and groups are more than a drawing "
                     f"can show legibly (the limit is {OWN_LIMIT:,}): the graph is left out; "
                     "`jobspec-do graph SPEC --format dot` prints it whole.")
    if engine == "layered":
        why = "as asked"
    elif not shutil.which("dot"):
        why = "Graphviz is not installed; Debian: apt install graphviz"
    else:
        why = f"more than {DOT_LIMIT} nodes for dot"

    return Drawn(_layered(nodes), "layered", f"Drawn by jobspec-do's own layered layout ({why}).")


def _dot_source(nodes: Sequence[GraphNode]) -> str:
    """The graph in dot's language: groups are clusters holding a node of their own."""
    ids = {(n.kind, n.name): f"n{i}" for i, n in enumerate(nodes)}
    by_name = {n.name: n for n in nodes if n.kind == "task"}
    by_name.update({n.name: n for n in nodes if n.kind == "group"})  # as the resolver prefers
    children: dict[str | None, list[GraphNode]] = {}
    for n in nodes:
        children.setdefault(n.parent, []).append(n)
    out = ["digraph G {", "  rankdir=LR; bgcolor=transparent;",
           '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=11];']
    # Iterative, groups inside groups: (node list, indent) pairs, closing braces as markers.
    stack: list[tuple[GraphNode | None, int]] = [(n, 1) for n in reversed(children.get(None, []))]
    while stack:
        item, depth = stack.pop()
        pad = "  " * depth
        if item is None:
            out.append(pad + "}")
            continue
        attrs = (f'label={_quote(item.name)}, fillcolor="{COLOURS.get(item.state, "#e0e0e0")}"'
                 f', tooltip={_quote(f"{item.kind} {item.name}: {item.state}")}'
                 f', class="{state_class(item.state)}"')
        if item.kind == "group":
            out.append(f"{pad}subgraph cluster_{ids[('group', item.name)]} {{")
            out.append(f'{pad}  label={_quote("group " + item.name)}; style=dashed;')
            out.append(f"{pad}  {ids[('group', item.name)]} [{attrs}, shape=folder];")
            stack.append((None, depth))
            stack.extend((c, depth + 1) for c in reversed(children.get(item.name, [])))
        else:
            out.append(f"{pad}{ids[('task', item.name)]} [{attrs}];")
    for n in nodes:
        for dep in n.depends_on:
            src = by_name.get(dep)
            if src is not None:
                out.append(f"  {ids[(src.kind, src.name)]} -> {ids[(n.kind, n.name)]};")
    out.append("}")
    return "\n".join(out)


def _quote(text: str) -> str:
    """A dot string: quotes and backslashes escaped, any other character as itself (dot
    reads UTF-8; JSON's \\uXXXX would show literally)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_svg(nodes: Sequence[GraphNode]) -> str:
    """dot's SVG without its XML prolog (it is inlined in the page); "" if dot failed."""
    try:
        out = subprocess.run(["dot", "-Tsvg"], input=_dot_source(nodes), capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    start = out.stdout.find("<svg")
    if out.returncode != 0 or start < 0:
        return ""
    return out.stdout[start:]


def _layered(nodes: Sequence[GraphNode]) -> str:
    """Our own drawing: longest-path layers from left to right (a group one layer before its
    members), each layer ordered by the mean position of its predecessors."""
    index = {(n.kind, n.name): i for i, n in enumerate(nodes)}
    by_name = {n.name: index[(n.kind, n.name)] for n in nodes if n.kind == "task"}
    by_name.update({n.name: index[(n.kind, n.name)] for n in nodes if n.kind == "group"})
    deps: list[tuple[int, int]] = []  # (from, to) for depends_on
    members: list[tuple[int, int]] = []  # (group, member)
    for i, n in enumerate(nodes):
        deps += [(by_name[d], i) for d in n.depends_on if d in by_name]
        if n.parent is not None and n.parent in by_name:
            members.append((by_name[n.parent], i))
    preds: list[list[int]] = [[] for _ in nodes]
    succs: list[list[int]] = [[] for _ in nodes]
    for a, b in (*deps, *members):
        preds[b].append(a)
        succs[a].append(b)
    # Kahn's order: the layer of a node is one past its deepest predecessor's (no recursion).
    layer = [0] * len(nodes)
    waiting = [len(p) for p in preds]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    while ready:
        i = ready.pop()
        for j in succs[i]:
            layer[j] = max(layer[j], layer[i] + 1)
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    layers: list[list[int]] = [[] for _ in range(max(layer) + 1)]
    for i in range(len(nodes)):
        layers[layer[i]].append(i)
    pos = [0.0] * len(nodes)
    for column in layers:
        for k, i in enumerate(column):
            pos[i] = k
    for _sweep in range(2):  # barycentre sweeps: fewer crossings, cheap
        for column in layers[1:]:
            column.sort(key=lambda i: (sum(pos[p] for p in preds[i]) / len(preds[i])
                                       if preds[i] else pos[i]))
            for k, i in enumerate(column):
                pos[i] = k
    x = [layer[i] * (_W + _GAP_X) + 10 for i in range(len(nodes))]
    y = [pos[i] * (_H + _GAP_Y) + 10 for i in range(len(nodes))]
    width = len(layers) * (_W + _GAP_X) - _GAP_X + 20
    height = max(len(c) for c in layers) * (_H + _GAP_Y) - _GAP_Y + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">'
             '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
             'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#888"/></marker>'
             "</defs>"]
    for cls, pairs in (("member", members), ("edge", deps)):
        arrow = ' marker-end="url(#arrow)"' if cls == "edge" else ""
        for a, b in pairs:
            x1, y1, x2, y2 = x[a] + _W, y[a] + _H / 2, x[b], y[b] + _H / 2
            mid = (x1 + x2) / 2
            parts.append(f'<path class="{cls}" d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} '
                         f'{mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"{arrow}/>')
    for i, n in enumerate(nodes):
        label = n.name if len(n.name) <= 22 else n.name[:21] + "…"
        shape = "group" if n.kind == "group" else "task"
        parts.append(f'<g class="node {shape} {state_class(n.state)}"><title>'
                     f'{html.escape(f"{n.kind} {n.name}: {n.state}")}</title>'
                     f'<rect x="{x[i]}" y="{y[i]:.0f}" width="{_W}" height="{_H}" rx="5" '
                     f'fill="{COLOURS.get(n.state, "#e0e0e0")}"/>'
                     f'<text x="{x[i] + _W / 2:.0f}" y="{y[i] + 16:.0f}">'
                     f'{html.escape(label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
