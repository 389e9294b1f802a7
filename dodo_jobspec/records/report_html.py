"""The report as one self-contained HTML page: inline CSS, SVG and a little JavaScript.

Everything a reader needs is drawn here, on the server side: the summary, the timeline (an
SVG with a native tooltip per attempt), the graph and the table read without JavaScript and
print; the script only adds a detail panel on click and a filter over the table. No external
resource is referenced, so the page opens from ``file://`` with no network.

Scale: the table holds every unit, in chunks the browser may skip laying out until they are
scrolled near (``content-visibility``); the timeline draws at most TIMELINE_LIMIT rows (every
unit that did not complete first, then the longest) and says so when it leaves some out.
"""

from __future__ import annotations

import bisect
import html
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import StateError
from ..spec.model import Spec
from .report import TAILS, Attempt, Report, UnitReport, build
from .report_assets import CSS, JS
from .report_graph import COLOURS, Drawn, GraphNode, draw, state_class
from .state import atomic_write

TIMELINE_LIMIT = 1000  # rows; past this the timeline shows a selection and says so
TABLE_CHUNK = 500  # table rows per chunk: the unit the browser skips while off screen
_LABEL_W, _PLOT_W, _AXIS_H = 190, 900, 22
_BAD = ("failed", "timeout", "canceled", "interrupted", "lost", "unknown", "blocked")
_LIVE = ("running", "queued", "submitting", "attached")


@dataclass(frozen=True)
class _Row:
    label: str
    unit: UnitReport
    attempts: list[Attempt]


def render(report: Report, graph_engine: str = "auto") -> str:
    """The whole page for ``report``; ``graph_engine`` as ``report_graph.draw`` takes it."""
    s = report.summary
    graph = draw([GraphNode(u.name, u.kind, u.state, u.parent, tuple(u.depends_on))
                  for u in report.units], graph_engine)
    title = f"jobspec-do report: {s.spec}"
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_css()}</style></head><body>",
        f"<header><h1>{_e(title)}</h1></header>",
        _summary(report),
        _timeline(report),
        _graph(graph),
        _table(report),
        '<aside id="detail" hidden><button type="button" id="detail-close">close</button>'
        '<pre id="detail-text"></pre></aside>',
        f"<script>{JS}</script></body></html>\n",
    ])


def _e(text: object) -> str:
    text = str(text)
    # Most names and states hold nothing to escape: one scan instead of html.escape's five.
    return html.escape(text, quote=True) if _SPECIAL.search(text) else text


_SPECIAL = re.compile(r"[&<>\"']")


def _clock(t: float | None) -> str:
    if t is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _secs(d: float | None) -> str:
    if d is None:
        return ""
    if d < 60:
        return f"{d:.2f} s" if d < 10 else f"{d:.1f} s"
    m, sec = divmod(round(d), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


# -- summary ------------------------------------------------------------------------------
def _summary(report: Report) -> str:
    s = report.summary
    chips = "".join(f'<span class="chip {state_class(k)}">{_e(k)}: {v:,}</span>'
                    for k, v in s.counts.items())
    runs = s.runs[-10:]
    commands = "".join(f"<li><time>{_e(_clock(r.get('time')))}</time> "
                       f"<code>{_e(r.get('command') or '(not recorded)')}</code></li>"
                       for r in reversed(runs))
    older = f"<li>… and {len(s.runs) - len(runs)} earlier runs</li>" if len(s.runs) > 10 else ""
    live = ('<p class="live">A run holds the state directory: this is a snapshot of a run in '
            'progress.</p>' if s.run_active else "")
    items = [
        ("spec", f"{_e(s.spec)} <code>{_e(s.spec_file)}</code>"),
        ("state directory", f"<code>{_e(s.state_dir)}</code>"),
        ("transformer", _e(", ".join(s.transformers) or "—")),
        ("first start", _e(_clock(s.first_start))),
        ("last end", _e(_clock(s.last_end))),
        ("wall time", _e(_secs(s.wall) or "—")),
        ("units", f"{len(report.units):,} ({chips})"),
        ("attempts", f"{s.attempts:,}"),
        ("command line", f"<ul class=\"runs\">{commands}{older}</ul>" if runs
         else "not recorded (no run has taken this state directory since reports began)"),
        ("report made", _e(_clock(s.generated))),
    ]
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<section id="summary"><h2>Summary</h2>{live}<dl>{rows}</dl></section>'


# -- timeline -----------------------------------------------------------------------------
def _rows(report: Report) -> list[_Row]:
    rows = []
    for u in report.units:
        replicas = sorted({a.replica for a in u.history if a.replica is not None})
        if replicas:
            rows += [_Row(f"{u.name}[{r}]", u, [a for a in u.history if a.replica == r])
                     for r in replicas]
        else:
            rows.append(_Row(u.name, u, list(u.history)))
    return rows


def _ends(a: Attempt, now: float) -> tuple[float | None, float | None, float]:
    """(submitted, started, ended) of an attempt; one still going ends now."""
    return a.submitted, a.started, a.ended if a.ended is not None else now


def _choose(rows: list[_Row], now: float) -> list[_Row]:
    """At most TIMELINE_LIMIT rows: those that did not complete, then the longest, in the
    order of the spec."""
    if len(rows) <= TIMELINE_LIMIT:
        return rows

    def span(row: _Row) -> float:
        total = 0.0
        for a in row.attempts:
            sub, start, end = _ends(a, now)
            begin = start if start is not None else sub
            total += end - begin if begin is not None else 0.0
        return total

    order = sorted(range(len(rows)), key=lambda i: (rows[i].unit.state == "completed",
                                                    -span(rows[i])))
    keep = sorted(order[:TIMELINE_LIMIT])
    return [rows[i] for i in keep]


class _Scale:
    """Time to x: linear, except that a long idle stretch between runs (a resume the next
    morning) is cut down to GAP_PX and labelled, so the runs around it keep their width."""

    GAP_PX = 56

    def __init__(self, spans: list[tuple[float, float]], t0: float, t1: float) -> None:
        busy: list[list[float]] = []
        for begin, end in sorted(spans):
            if busy and begin <= busy[-1][1]:
                busy[-1][1] = max(busy[-1][1], end)
            else:
                busy.append([begin, end])
        worked = sum(e - b for b, e in busy) or (t1 - t0) or 1e-3
        # Idle stretches worth cutting: long in themselves and against the work around them.
        self.gaps = [(a[1], b[0]) for a, b in itertools.pairwise(busy)
                     if b[0] - a[1] > max(5.0, 0.25 * worked)]
        shown = (t1 - t0) - sum(g1 - g0 for g0, g1 in self.gaps)
        self.px_per_s = (_PLOT_W - self.GAP_PX * len(self.gaps)) / max(shown, 1e-3)
        self.t0, self.t1 = t0, t1
        # Segments between the gaps: (first second, last second, x of the first).
        self.segments: list[tuple[float, float, float]] = []
        start, px = t0, float(_LABEL_W)
        for g0, g1 in self.gaps:
            self.segments.append((start, g0, px))
            px += (g0 - start) * self.px_per_s + self.GAP_PX
            start = g1
        self.segments.append((start, t1, px))
        self._starts = [seg[0] for seg in self.segments]

    def x(self, t: float) -> float:
        k = max(0, bisect.bisect_right(self._starts, t) - 1)
        start, end, px = self.segments[k]
        if t <= end or k == len(self.segments) - 1:
            return px + (t - start) * self.px_per_s
        # Inside a cut gap: spread over its width.
        g0, g1 = self.gaps[k]
        gap_px = px + (g0 - start) * self.px_per_s
        return gap_px + (t - g0) / max(g1 - g0, 1e-9) * self.GAP_PX

    def axis(self, height: int) -> list[str]:
        shown = sum(e - b for b, e, _ in self.segments)
        step = _nice(shown / 8)
        out = [f'<line class="axis" x1="{_LABEL_W}" x2="{_LABEL_W + _PLOT_W}" y1="{_AXIS_H}" '
               f'y2="{_AXIS_H}"/>']
        for start, end, _ in self.segments:
            k = math.ceil((start - self.t0) / step - 1e-9)
            while self.t0 + k * step <= end + step * 1e-4:
                px = self.x(self.t0 + k * step)
                out.append(f'<line class="tick" x1="{px:.1f}" x2="{px:.1f}" y1="{_AXIS_H - 4}"'
                           f' y2="{height}"/><text class="tick" x="{px:.1f}" '
                           f'y="{_AXIS_H - 7}">+{_tick(k * step, step)}</text>')
                k += 1
        for g0, g1 in self.gaps:
            px = self.x(g0)
            out.append(f'<g class="gap"><title>{_e(_secs(g1 - g0))} when nothing ran, cut short'
                       f'</title><rect x="{px + 4:.1f}" y="{_AXIS_H}" width="{self.GAP_PX - 8}"'
                       f' height="{height - _AXIS_H}"/><text x="{px + self.GAP_PX / 2:.1f}" '
                       f'y="{_AXIS_H - 7}">{_e(_secs(g1 - g0))} idle</text></g>')
        return out


def _timeline(report: Report) -> str:
    s = report.summary
    now = s.generated
    rows = [r for r in _rows(report) if r.attempts]
    if not rows or s.first_start is None:
        return ('<section id="timeline"><h2>Timeline</h2><p>Nothing has run yet: no attempt '
                'is recorded.</p></section>')
    shown = _choose(rows, now)
    spans = []
    for row in rows:
        for a in row.attempts:
            sub, start, end = _ends(a, now)
            begin = sub if sub is not None else start
            spans.append((begin if begin is not None else end, end))
    t0 = min(b for b, _ in spans)
    t1 = max(e for _, e in spans)
    scale = _Scale(spans, t0, max(t1, t0 + 1e-3))
    row_h = 16 if len(shown) <= 300 else 5
    labels = row_h >= 12

    height = _AXIS_H + 50 + len(shown) * row_h + 6
    width = _LABEL_W + _PLOT_W + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="timeline of {len(shown)} rows">']
    out += scale.axis(height)
    out += _concurrency([a for r in rows for a in r.attempts], scale.x, now)
    top = _AXIS_H + 50
    for k, row in enumerate(shown):
        y = top + k * row_h
        if k % 2:
            out.append(f'<rect class="stripe" x="0" y="{y}" width="{width}" height="{row_h}"/>')
        if labels:
            name = row.label if len(row.label) <= 28 else row.label[:27] + "…"
            out.append(f'<text class="label" x="{_LABEL_W - 6}" y="{y + row_h - 4}">'
                       f"{_e(name)}</text>")
        for a in row.attempts:
            out.append(_bar(row, a, now, scale.x, y, row_h))
    out.append("</svg>")
    note = ""
    if len(shown) < len(rows):
        note = (f'<p class="note">The timeline shows {len(shown):,} of {len(rows):,} rows: every '
                "one that did not complete, then the longest. The table below lists every unit; "
                "the strip above the rows counts every attempt.</p>")
    if scale.gaps:
        note += ('<p class="note">Stretches when nothing ran (between runs) are cut short and '
                 "marked “idle”; the times on the axis stay true.</p>")
    legend = "".join(f'<span class="chip {state_class(k)}">{k}</span>'
                     for k in ("completed", "failed", "timeout", "canceled", "running", "lost"))
    return (f'<section id="timeline"><h2>Timeline</h2>{note}<p class="legend">{legend}'
            '<span class="chip wait">queue wait</span> Hover a bar for its attempt; click it '
            f'for the details.</p><div class="scroll">{"".join(out)}</div></section>')


def _tick(value: float, step: float) -> str:
    """An axis label: as precise as the step between ticks, so no two read the same."""
    digits = 0 if step >= 1 else 1 if step >= 0.1 else 2 if step >= 0.01 else 3
    value = round(value, digits)
    if value < 60:
        return f"{value:.{digits}f} s"
    minutes, sec = divmod(value, 60)
    hours, minutes = divmod(int(minutes), 60)
    secs = f"{sec:0{3 + digits if digits else 2}.{digits}f}s"
    return f"{hours}h{minutes:02d}m{secs}" if hours else f"{minutes}m{secs}"


def _nice(raw: float) -> float:
    """A round step (1, 2 or 5 times a power of ten seconds) of at least ``raw``."""
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


def _concurrency(attempts: Iterable[Attempt], x: Callable[[float], float], now: float
                 ) -> list[str]:
    """A strip counting the attempts running at each moment, over every row (shown or not):
    each of its bins shows the most that ran at once within it."""
    bins = 300
    events: list[tuple[float, int]] = []
    for a in attempts:
        sub, start, end = _ends(a, now)
        begin = start if start is not None else sub
        if begin is not None:
            events += [(begin, 1), (max(end, begin), -1)]
    events.sort()  # at one instant an end (-1) comes before a start: no false overlap
    counts = [0] * bins
    running, last = 0, 0
    for t, step in events:
        b = min(bins - 1, max(0, int((x(t) - _LABEL_W) / _PLOT_W * bins)))
        for k in range(last, b):  # the bins since the last event held what ran then
            counts[k] = max(counts[k], running)
        running += step
        counts[b] = max(counts[b], running)
        last = b
    peak = max(counts) or 1
    top, h = _AXIS_H + 6, 36
    pts = [f"{_LABEL_W},{top + h}"]
    for b, c in enumerate(counts):
        px0 = _LABEL_W + b / bins * _PLOT_W
        px1 = _LABEL_W + (b + 1) / bins * _PLOT_W
        py = top + h - c / peak * h
        pts += [f"{px0:.1f},{py:.1f}", f"{px1:.1f},{py:.1f}"]
    pts.append(f"{_LABEL_W + _PLOT_W},{top + h}")
    return [f'<text class="label" x="{_LABEL_W - 6}" y="{top + h / 2 + 4}">running at once '
            f"(max {peak:,})</text>",
            f'<polygon class="concurrency" points="{" ".join(pts)}"/>']


def _bar(row: _Row, a: Attempt, now: float, x: Callable[[float], float], y: int,
         row_h: int) -> str:
    sub, start, end = _ends(a, now)
    begin = start if start is not None else sub
    if begin is None:  # a group run as its children: no time of its own
        begin = end
    h = max(row_h - 4, 2)
    parts = []
    if sub is not None and start is not None and start > sub:
        parts.append(f'<rect class="wait" x="{x(sub):.1f}" y="{y + 2}" '
                     f'width="{max(x(start) - x(sub), 0.5):.1f}" height="{h}"/>')
    open_ = " open" if a.ended is None else ""
    parts.append(f'<rect class="bar {state_class(a.state)}{open_}" x="{x(begin):.1f}" '
                 f'y="{y + 2}" width="{max(x(end) - x(begin), 1.5):.1f}" height="{h}"/>')
    lines = [f"{row.label} · {row.unit.kind} · attempt {a.number} · "
             f"{a.state if a.ended is not None else a.state + ' (still going)'}"]
    if sub is not None:
        wait = f" (waited {_secs(start - sub)})" if start is not None and start >= sub else ""
        lines.append(f"submitted {_clock(sub)}{wait}")
    if start is not None:
        lines.append(f"started {_clock(start)}")
    lines.append(f"ended {_clock(a.ended)}" + (f" after {_secs(end - begin)}"
                                               if a.ended is not None else ""))
    where = _where(a.transformer or row.unit.where, a.nodes)
    facts = [f"exit {a.exit_code}" if a.exit_code is not None else "",
             f"job {a.job_id}" if a.job_id else "", f"on {where}" if where else ""]
    if any(facts):
        lines.append(" · ".join(f for f in facts if f))
    if a.info:
        lines.append(a.info)
    return (f'<g class="attempt" data-unit="{_e(row.unit.name)}" data-attempt="{a.number}">'
            f"<title>{_e(chr(10).join(lines))}</title>{''.join(parts)}</g>")


def _where(transformer: str, nodes: str) -> str:
    """Where an attempt ran, as a reader says it: ``c[1-2] (slurm)``, ``vm (rank 0) (burst
    to flux-b)``; the transformer alone while its nodes are unknown."""
    who = (f"burst to {transformer.removeprefix('burst:')}"
           if transformer.startswith("burst:") else transformer)
    if not nodes:
        return who
    return f"{nodes} ({who})" if who else nodes


# -- graph --------------------------------------------------------------------------------
def _graph(drawn: Drawn) -> str:
    body = f'<div class="scroll graph-box">{drawn.svg}</div>' if drawn.svg else ""
    return (f'<section id="graph" data-engine="{drawn.engine}"><h2>Dependency graph</h2>'
            f'<p class="note">{_e(drawn.note)}</p>{body}</section>')


# -- table --------------------------------------------------------------------------------
def _rank(u: UnitReport) -> int:
    if u.state in _BAD:
        return 0
    if u.state in _LIVE:
        return 1
    return 3 if u.state == "completed" else 2


# Fixed column widths: every chunk is a table of its own, and they must line up.
_COLUMNS = (("task", 15), ("state", 9), ("attempts", 8), ("exit", 5), ("duration", 8),
            ("job id", 11), ("where", 6), ("resources", 17), ("info", 21))
_COLGROUP = "<colgroup>" + "".join(f'<col style="width:{w}%">' for _, w in _COLUMNS) + \
    "</colgroup>"


def _table(report: Report) -> str:
    """Every unit, failed first. In chunks of TABLE_CHUNK rows, each its own fixed-layout
    table in a box the browser skips until it is scrolled near (``content-visibility``, which
    table parts themselves do not take): 10,000 rows in one table cost seconds to lay out."""
    units = sorted(report.units, key=_rank)  # stable: the spec's order within a rank
    head = "".join(f"<th>{name}</th>" for name, _ in _COLUMNS)
    chunks, rows = [], []
    lines = 0  # rows of text in the chunk, for the size it claims while skipped
    for k, u in enumerate(units):
        name = u.name + ("/" if u.kind == "group" else "")
        rows.append(f'<tr class="{state_class(u.state)}"><td>{_e(name)}</td>'
                    f"<td>{_e(u.state)}</td>"
                    f"<td>{u.attempts}</td><td>{'' if u.exit_code is None else u.exit_code}"
                    f"</td><td>{_secs(u.duration)}</td><td>{_e(u.job_id or '')}</td>"
                    f"<td>{_e(_where(u.where, u.nodes))}</td><td>{_e(u.resources)}</td>"
                    f"<td>{_e(u.info)}</td>"
                    "</tr>")
        lines += 2
        if u.state in _BAD:
            logs = " ".join(f"<code>{_e(p)}</code>" for p in (u.stderr, u.stdout) if p)
            tail = (f"<pre class=\"stderr\">{_e(chr(10).join(u.stderr_tail))}</pre>"
                    if u.stderr_tail else "")
            rows.append(f'<tr class="detail"><td colspan="9">{tail}'
                        f"<p>logs: {logs or '—'}</p></td></tr>")
            lines += 4 + len(u.stderr_tail)
        if (k + 1) % TABLE_CHUNK == 0 or k == len(units) - 1:
            chunks.append(f'<div class="chunk" style="contain-intrinsic-size:auto '
                          f'{lines * 11}px"><table class="tasks">{_COLGROUP}<tbody>'
                          f'{"".join(rows)}</tbody></table></div>')
            rows, lines = [], 0
    bad = sum(u.state in _BAD for u in units)
    shown = (f"the last lines of the stderr of the first {TAILS} (the others' log paths "
             "say where to look)" if bad > TAILS else "the last lines of their stderr")
    return (f'<section id="tasks"><h2>Tasks</h2><p class="note">{len(units):,} units, '
            f"those that did not complete first, with {shown}.</p>"
            f'<div id="task-table"><table class="tasks">{_COLGROUP}<thead><tr>{head}</tr>'
            f"</thead></table>{''.join(chunks)}</div></section>")


# -- CSS and JS ---------------------------------------------------------------------------
def _css() -> str:
    colours = "".join(f".{state_class(k)}{{--c:{v}}}" for k, v in COLOURS.items())
    return colours + CSS


def write(spec: Spec, root: Path, dest: Path, graph_engine: str = "auto") -> Path:
    """Build the report of ``spec``'s records in ``root`` and write it to ``dest`` atomically
    (a browser reloading it never sees half a page). StateError when ``dest`` cannot be
    written, naming it."""
    page = render(build(spec, root), graph_engine)
    try:
        atomic_write(dest, page)
    except OSError as exc:
        raise StateError(f"cannot write the report to {dest}: {exc.strerror or exc}; pass "
                         "-o FILE to write it elsewhere") from exc
    return dest
