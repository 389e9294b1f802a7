"""`jobspec-do report`: the page holds what the records say, for real runs."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from dodo_jobspec.records import report_html
from dodo_jobspec.records.report import build
from dodo_jobspec.records.report_graph import OWN_LIMIT, GraphNode, draw
from dodo_jobspec.records.state import RUNS_LOG, read_runs, record_run
from dodo_jobspec.records.status import open_state
from tests.helpers import history_text, job_record, jobspec_do, write
from tests.services import FluxInstance, SlurmCluster, flux_command, need_service

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAILING_B = "mkdir -p $OUT && echo 'shard b: disk full' >&2 && exit 3"


class Page(HTMLParser):
    """Every element's tag and attributes, and the text inside each element with an id or a
    class we look at."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, *classes: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements
                if t == tag and set(classes) <= set(a.get("class", "").split())]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def _fan_out_in(tmp_path: Path) -> Path:
    """examples/fan-out-in.yaml with shard-b failing (exit 3, a line on stderr)."""
    text = (EXAMPLES / "fan-out-in.yaml").read_text()
    text = text.replace('command: "mkdir -p $OUT && echo b > $OUT/b.txt"',
                        f'command: "{FAILING_B}"')
    assert FAILING_B in text
    return write(tmp_path, text, "fan.yaml")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fan-out-in run twice with one failing shard: shard-b has two attempts, merge none."""
    folder = tmp_path_factory.mktemp("fan")
    spec = _fan_out_in(folder)
    assert jobspec_do("-k", spec, cwd=folder).returncode == 1
    assert jobspec_do("--report", spec, cwd=folder).returncode == 1
    return spec


def _status(spec: Path) -> dict[str, dict[str, Any]]:
    out = jobspec_do("status", spec, "--json", cwd=spec.parent)
    return {u["name"]: u for u in json.loads(out.stdout)["units"]}


def _recorded_attempts(spec: Path) -> dict[str, int]:
    """Attempts per task, counted from the history the way a reader would: running lines."""
    tasks = spec.parent / ".jobspec-do" / spec.stem / "tasks"
    return {p.name: history_text(p).count(",running,")
            for p in tasks.iterdir()}


def test_run_with_report_writes_a_page_that_holds_what_the_records_say(ran: Path) -> None:
    page_file = ran.parent / ".jobspec-do" / "fan" / "report.html"
    page = Page(page_file.read_text())
    status = _status(ran)
    # The summary counts units by state as `status` sees them.
    counts = Counter(u["state"] for u in status.values())
    assert counts == {"completed": 2, "failed": 1, "never run": 1}
    text = page_file.read_text()
    summary = Page(text[text.index('<section id="summary"'):text.index('<section id="timeline"')])
    chips = [t for t in summary.text if ": " in t]
    assert len(summary.having("span", "chip")) == len(counts)
    assert sorted(chips) == sorted(f"{state}: {n}" for state, n in counts.items())
    # One bar per recorded attempt: shard-b's two, one each for the others, none for merge.
    attempts = page.having("g", "attempt")
    per_unit = Counter(a["data-unit"] for a in attempts)
    assert per_unit == {k: v for k, v in _recorded_attempts(ran).items() if v}
    assert per_unit["shard-b"] == 2 and "merge" not in per_unit
    bars = page.having("rect", "bar")
    assert len(bars) == len(attempts)
    assert Counter(b["class"].split()[1] for b in bars) == {"st-completed": 2, "st-failed": 2}
    # The failed task leads the table, with its stderr's last line and its log paths.
    rows = [a for a in page.having("tr") if a.get("class", "").startswith("st-")]
    assert rows[0]["class"] == "st-failed"
    assert "shard b: disk full" in page.all_text
    assert status["shard-b"]["stderr"] in page.all_text
    # The command line that ran, as the runs log kept it.
    assert f"jobspec-do --report {ran}" in summary.all_text


def test_the_page_is_self_contained(ran: Path) -> None:
    text = (ran.parent / ".jobspec-do" / "fan" / "report.html").read_text()
    page = Page(text)
    assert not page.having("link") and not page.having("img") and not page.having("iframe")
    assert all("src" not in a for t, a in page.elements if t == "script")
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            if name in ("href", "src", "xlink:href"):
                assert value.startswith("#"), (tag, name, value)  # in-page references only
    assert "url(http" not in text and "@import" not in text


def test_json_holds_every_attempt_and_matches_status(ran: Path) -> None:
    out = jobspec_do("report", ran, "--json", cwd=ran.parent)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["format"] == 1
    status = _status(ran)
    units = {u["name"]: u for u in data["units"]}
    assert {k: u["state"] for k, u in units.items()} == {k: u["state"] for k, u in
                                                          status.items()}
    recorded = _recorded_attempts(ran)
    assert {k: len(u["history"]) for k, u in units.items()} == {**recorded, "merge": 0}
    b = units["shard-b"]
    assert [a["exit_code"] for a in b["history"]] == [3, 3]
    assert [a["state"] for a in b["history"]] == ["failed", "failed"]
    for a in b["history"]:
        assert a["started"] <= a["ended"] and a["job_id"]
    assert b["stderr_tail"] == ["shard b: disk full"]
    assert units["merge"]["depends_on"] == ["shard-a", "shard-b", "shard-c"]
    s = data["summary"]
    assert s["attempts"] == sum(recorded.values()) == 4
    assert s["transformers"] == ["local"]
    assert s["first_start"] <= s["last_end"]
    # Both runs are in the runs log, the second with --report.
    assert [r["command"] for r in s["runs"]] == [f"jobspec-do -k {ran}",
                                                 f"jobspec-do --report {ran}"]


def test_every_local_attempt_says_the_host_it_ran_on(ran: Path) -> None:
    """Each attempt, the first of shard-b's too (its job record is the second's now), names
    this machine: in `status --json`, the report's JSON, its hover text and its table."""
    host = socket.gethostname()
    status = _status(ran)
    assert {k: u["nodes"] for k, u in status.items()} == {
        "shard-a": host, "shard-b": host, "shard-c": host, "merge": None}
    data = json.loads(jobspec_do("report", ran, "--json", cwd=ran.parent).stdout)
    units = {u["name"]: u for u in data["units"]}
    assert [a["nodes"] for a in units["shard-b"]["history"]] == [host, host]
    assert units["shard-b"]["history"][-1]["transformer"] == "local"
    assert units["shard-b"]["nodes"] == host and units["merge"]["nodes"] == ""
    page = Page((ran.parent / ".jobspec-do" / "fan" / "report.html").read_text())
    titles = [t for t in page.text if t.startswith("shard-b · task · attempt")]
    assert len(titles) == 2 and all(f"on {host} (local)" in t for t in titles), titles
    assert page.text.count(f"{host} (local)") == 3  # the table cells of the tasks that ran


def test_records_read_by_forked_processes_make_the_same_report(
        ran: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large spec's records are read by a process per core, a share each: the report is
    the one a single reader makes (units in the spec's order, failed tails, transformers)."""
    from dodo_jobspec.records import report as report_module

    monkeypatch.setattr(report_module, "PER_WORKER", 1)  # 4 units: fork for 2 and more
    pools = []

    class Pool(report_module.ProcessPoolExecutor):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(report_module, "ProcessPoolExecutor", Pool)
    state = open_state(ran, None)
    made = {}
    for workers in (1, 2, 3):
        data = build(state.spec, state.root, workers).to_json()
        del data["summary"]["generated"]
        made[workers] = data
    assert pools == [1, 2]  # forked readers besides this process, for 2 and 3 workers
    assert made[1] == made[2] == made[3]
    assert [u["name"] for u in made[3]["units"]] == ["shard-a", "shard-b", "shard-c", "merge"]
    assert made[3]["units"][1]["stderr_tail"] == ["shard b: disk full"]


def test_where_names_the_nodes_and_who_ran_them() -> None:
    """A job a burster took names the burster (its record's transformer is burst:NAME)."""
    assert report_html._where("burst:flux-b", "vm (rank 0)") == "vm (rank 0) (burst to flux-b)"
    assert report_html._where("slurm", "c[1-2]") == "c[1-2] (slurm)"
    assert report_html._where("slurm", "") == "slurm"  # still queued: nowhere yet
    assert report_html._where("", "vm") == "vm"


def test_report_command_writes_to_the_state_dir_or_to_o(ran: Path, tmp_path: Path) -> None:
    out = jobspec_do("report", ran, "-o", tmp_path / "r.html", cwd=ran.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"report: {tmp_path / 'r.html'}"
    assert Page((tmp_path / "r.html").read_text()).having("g", "attempt")
    bad = jobspec_do("report", ran, "-o", tmp_path / "missing" / "r.html", cwd=ran.parent)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"cannot write the report to {tmp_path / 'missing' / 'r.html'}" in bad.stderr


def _graph_counts(text: str) -> tuple[int, int]:
    page = Page(text)
    return len(page.having("g", "node")), len(page.having("g", "edge") +
                                              page.having("path", "edge"))


@pytest.mark.parametrize("engine", ["dot", "layered"])
def test_the_graph_has_every_task_and_dependency(ran: Path, engine: str) -> None:
    if engine == "dot" and not shutil.which("dot"):
        need_service("Graphviz dot is not installed (Debian: graphviz)")
    state = open_state(ran, None)
    page = report_html.render(build(state.spec, state.root), engine)
    section = page[page.index('<section id="graph"'):page.index('<section id="tasks"')]
    assert f'data-engine="{engine}"' in section
    assert _graph_counts(section) == (4, 3)
    nodes = Page(section).having("g", "node")
    assert sum("st-failed" in n["class"] for n in nodes) == 1
    assert sum("st-never-run" in n["class"] for n in nodes) == 1


GROUPS = """
    version: 1
    name: nested
    groups:
    - name: outer
      tasks:
      - {name: prep, command: "true"}
      - {name: work, command: "true", depends_on: [prep]}
    tasks:
    - {name: first, command: "true"}
    - {group: outer, depends_on: [first]}
    - {name: last, command: "true", depends_on: [outer]}
"""


def test_groups_are_nodes_and_layers_follow_dependencies(tmp_path: Path) -> None:
    spec = write(tmp_path, GROUPS)
    state = open_state(spec, None)
    nodes = [GraphNode(n.name, "group" if n.is_group else "task", "never run",
                       n.parent.name if n.parent else None, tuple(d.name for d in n.depends_on))
             for n in state.spec.nodes.values()]
    layered = draw(nodes, "layered")
    deps = sum(len(n.depends_on) for n in nodes)
    assert (len(nodes), deps) == (5, 3)  # first, outer, prep, work, last; 3 depends_on
    assert _graph_counts(layered.svg) == (len(nodes), deps)
    members = Page(layered.svg).having("path", "member")
    assert len(members) == sum(n.parent is not None for n in nodes)
    # Left to right: each box starts right of every box it depends on, a group's members
    # right of the group.
    x = {m.group(2): int(m.group(3)) for m in
         re.finditer(r'<title>(task|group) ([^:]+): [^<]*</title><rect x="(\d+)"', layered.svg)}
    assert len(x) == len(nodes)
    for n in nodes:
        assert all(x[d] < x[n.name] for d in n.depends_on), (n, x)
        assert n.parent is None or x[n.parent] < x[n.name], (n, x)
    if shutil.which("dot"):
        drawn = draw(nodes, "dot")
        assert drawn.engine == "dot"
        assert _graph_counts(drawn.svg) == (len(nodes), deps)
        assert len(Page(drawn.svg).having("g", "cluster")) == 1  # the group's box


def test_a_graph_too_big_to_draw_is_left_out_and_the_page_says_so() -> None:
    nodes = [GraphNode(f"t{i}", "task", "completed", None, ()) for i in range(OWN_LIMIT + 1)]
    drawn = draw(nodes, "layered")
    assert drawn.svg == "" and "left out" in drawn.note


def test_a_long_timeline_shows_what_did_not_complete_and_says_it_left_rows_out(
        ran: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_html, "TIMELINE_LIMIT", 1)
    state = open_state(ran, None)
    page = Page(report_html.render(build(state.spec, state.root), "layered"))
    assert {a["data-unit"] for a in page.having("g", "attempt")} == {"shard-b"}
    assert "The timeline shows 1 of 3 rows" in page.all_text
    assert "the strip above the rows counts every attempt" in page.all_text


def test_replicas_run_apart_get_a_row_each(tmp_path: Path) -> None:
    spec = tmp_path / "replicas.yaml"
    shutil.copy(EXAMPLES / "replicas.yaml", spec)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    state = open_state(spec, None)
    report = build(state.spec, state.root)
    sample = next(u for u in report.units if u.name == "sample")
    assert sorted(a.replica for a in sample.history) == [0, 1, 2, 3]
    page = Page(report_html.render(report, "layered"))
    labels = [t for t in page.text if t.startswith("sample[") and "\n" not in t]
    assert labels == ["sample[0]", "sample[1]", "sample[2]", "sample[3]"]
    assert Counter(a["data-unit"] for a in page.having("g", "attempt")) == {"sample": 4,
                                                                            "collect": 1}


def test_a_spec_that_never_ran_still_gets_a_page(tmp_path: Path) -> None:
    spec = write(tmp_path, "version: 1\ntasks:\n- {name: a, command: 'true'}\n")
    out = jobspec_do("report", spec, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    page = Page((tmp_path / ".jobspec-do" / "spec" / "report.html").read_text())
    assert "Nothing has run yet" in page.all_text
    assert not page.having("g", "attempt")


def test_a_slurm_jobs_queue_wait_is_drawn_apart_from_its_run(tmp_path: Path,
                                                             slurm: SlurmCluster) -> None:
    """`--no-wait` submits `after` at once with afterok on `first`: it waits in Slurm's queue
    while `first` runs, and its script's start ends the wait."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: first, command: "sleep 3", attributes: {duration: 60s}}
        - {name: after, depends_on: [first], command: "true", attributes: {duration: 60s}}
        """)
    deadline = time.monotonic() + 120
    while True:
        r = jobspec_do(spec, "-t", "slurm", "--no-wait", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        if json.loads(jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)["complete"]:
            break
        assert time.monotonic() < deadline, "the spec did not complete on Slurm"
        time.sleep(0.5)
    state = open_state(spec, None)
    report = build(state.spec, state.root)
    units = {u.name: u for u in report.units}
    assert report.summary.transformers == ["slurm"]
    [first], [after] = units["first"].history, units["after"].history
    for a in (first, after):
        assert a.state == "completed" and a.exit_code == 0 and a.job_id
        assert a.submitted is not None and a.started is not None and a.ended is not None
        assert a.submitted <= a.started <= a.ended
    # `after` was in the queue for as long as `first` ran (3 s), and started after it.
    assert after.started - after.submitted > 2.0
    assert after.started >= first.started + 2.0
    page = Page(report_html.render(report, "layered"))
    waits = page.having("rect", "wait")
    assert len(waits) >= 1
    assert float(waits[-1]["width"]) > 1.0  # drawn, grey, before the bar
    titles = [t for t in page.text if t.startswith("after · task · attempt 1")]
    assert len(titles) == 1 and "waited" in titles[0] and f"job {after.job_id}" in titles[0]
    # Where: the cluster's one node, as squeue named it when polled, in the records, in
    # `status --json`, in the terminal status line and on the page.
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    assert (first.nodes, after.nodes) == (node, node)
    assert f"on {node} (slurm)" in titles[0]
    status = _status(spec)
    assert status["after"]["nodes"] == node
    job = job_record(state.root / "tasks" / "after")
    # Slurm's StartTime, in whole seconds: within a second of the script's own start.
    assert job["nodes"] == node and abs(job["run_start"] - after.started) < 1.0
    lines = history_text(state.root / "tasks" / "after").splitlines()
    assert re.search(f",completed,job {after.job_id} on {node}; started [0-9T:.-]+Z; "
                     "slurm COMPLETED$", lines[-1]), lines[-1]


def test_the_runs_log_keeps_one_line_per_different_run(tmp_path: Path) -> None:
    """A crontab calling the same command every minute must not grow the file each time."""
    record_run(tmp_path, "jobspec-do --cron spec.yaml", "slurm")
    record_run(tmp_path, "jobspec-do --cron spec.yaml", "slurm")
    record_run(tmp_path, "jobspec-do --resume spec.yaml", "slurm")
    record_run(tmp_path, "jobspec-do --cron spec.yaml", "slurm")
    with open(tmp_path / RUNS_LOG, "a") as fh:
        fh.write('{"time": 1, "comm')  # cut by a power loss
    assert [r["command"] for r in read_runs(tmp_path)] == [
        "jobspec-do --cron spec.yaml", "jobspec-do --resume spec.yaml",
        "jobspec-do --cron spec.yaml"]


def test_idle_time_between_runs_is_cut_short_and_the_axis_stays_true() -> None:
    scale = report_html._Scale([(0.0, 1.0), (1.5, 2.0), (100.0, 101.0)], 0.0, 101.0)
    assert scale.gaps == [(2.0, 100.0)]  # the half second between the first two stays
    left, right = report_html._LABEL_W, report_html._LABEL_W + report_html._PLOT_W
    assert scale.x(0.0) == left and abs(scale.x(101.0) - right) < 1e-6
    assert abs(scale.x(100.0) - scale.x(2.0) - scale.GAP_PX) < 1e-6
    xs = [scale.x(t / 4) for t in range(0, 405)]
    assert xs == sorted(xs)  # time never runs backwards
    # Equal times take equal widths on both sides of the cut.
    assert abs((scale.x(1.0) - scale.x(0.0)) - (scale.x(101.0) - scale.x(100.0))) < 1e-6
    axis = "".join(scale.axis(200))
    assert "1m38s idle" in axis
    ticks = re.findall(r'<text class="tick"[^>]*>\+([^<]*)</text>', axis)
    # True elapsed times on both sides of the cut, no two alike.
    assert ticks == ["0.0 s", "0.5 s", "1.0 s", "1.5 s", "2.0 s", "1m40.0s", "1m40.5s",
                     "1m41.0s"]


def test_a_flux_run_reports_each_job(tmp_path: Path) -> None:
    flux = flux_command()
    if flux is None:  # with CI=true a failure, as for every live service
        need_service("flux is not installed here (see tests/transformers/test_flux.py)")
    spec = _fan_out_in(tmp_path)
    run = subprocess.run([flux, "start", "--test-size=1", sys.executable, "-m",
                          "dodo_jobspec.cli", "-k", "-t", "flux", str(spec)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # shard-b failed
    state = open_state(spec, None)
    report = build(state.spec, state.root)
    assert report.summary.transformers == ["flux"]
    units = {u.name: u for u in report.units}
    [b] = units["shard-b"].history
    assert (b.state, b.exit_code) == ("failed", 3) and b.job_id == units["shard-b"].job_id
    assert b.submitted is not None and b.ended is not None and b.submitted <= b.ended
    assert units["shard-b"].where == "flux" and units["merge"].history == []
    page = Page(report_html.render(report, "layered"))
    assert Counter(a["data-unit"] for a in page.having("g", "attempt")) == {
        "shard-a": 1, "shard-b": 1, "shard-c": 1}


def _flux_job(flux: FluxInstance, job_id: str) -> dict[str, Any]:
    """One job as `flux jobs --json ID` tells it (one id: the job itself, not a list)."""
    data = json.loads(flux.run("jobs", "--json", job_id).stdout)
    assert isinstance(data, dict) and data.get("nodelist"), data
    return data


def test_a_flux_jobs_nodes_are_learnt_while_it_runs(tmp_path: Path, flux: FluxInstance) -> None:
    """A blocking run: the batched poller learns where and since when the job runs, and
    job record (so `status --json`) says so before the job ends."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: fx-sleeper, command: "sleep 4"}
        """)
    record = tmp_path / ".jobspec-do" / "spec" / "tasks" / "fx-sleeper"
    run = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", "-t", "flux", "-q",
                            str(spec)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            job = job_record(record)
            if job.get("state") == "running":
                break
            assert run.poll() is None, "the run ended before its record said it was running"
            assert time.monotonic() < deadline, f"never recorded as running: {job}"
            time.sleep(0.1)
        status = _status(spec)["fx-sleeper"]
        assert (status["state"], status["nodes"]) == ("running", job["nodes"])
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            run.kill()
    info = _flux_job(flux, job["job_id"])
    assert job["nodes"] == f"{info['nodelist']} (rank {info['ranks']})"
    assert job["run_start"] == pytest.approx(info["t_run"], abs=1e-3)
    done = job_record(record)
    assert (done["state"], done["nodes"]) == ("completed", job["nodes"])


def test_a_flux_jobs_queue_wait_is_drawn_apart_from_its_run(tmp_path: Path,
                                                            flux: FluxInstance) -> None:
    """With --no-wait, `fx-after` waits in Flux's queue on `fx-first` (afterok): its t_run,
    learnt by a later tick, ends the grey wait on the timeline; each attempt names its node
    and rank."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: fx-first, command: "sleep 3"}
        - {name: fx-after, depends_on: [fx-first], command: "true"}
        """)
    deadline = time.monotonic() + 120
    while True:
        r = jobspec_do(spec, "-t", "flux", "--no-wait", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        if json.loads(jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)["complete"]:
            break
        assert time.monotonic() < deadline, "the spec did not complete on Flux"
        time.sleep(0.3)
    state = open_state(spec, None)
    report = build(state.spec, state.root)
    units = {u.name: u for u in report.units}
    [first], [after] = units["fx-first"].history, units["fx-after"].history
    for a in (first, after):
        assert a.submitted is not None and a.started is not None and a.ended is not None
        assert a.submitted <= a.started <= a.ended
        assert re.fullmatch(r"\S+ \(rank \d+\)", a.nodes), a.nodes
    assert after.started - after.submitted > 2.0  # it waited while fx-first slept
    info = _flux_job(flux, str(after.job_id))
    assert after.started == pytest.approx(info["t_run"], abs=1e-3)
    assert after.nodes == f"{info['nodelist']} (rank {info['ranks']})"
    page = Page(report_html.render(report, "layered"))
    waits = page.having("rect", "wait")
    assert len(waits) >= 1 and float(waits[-1]["width"]) > 1.0
    titles = [t for t in page.text if t.startswith("fx-after · task · attempt 1")]
    assert len(titles) == 1 and "waited" in titles[0] and f"on {after.nodes} (flux)" in titles[0]


def test_a_group_run_as_its_members_spans_them_on_the_timeline(tmp_path: Path) -> None:
    spec = write(tmp_path, GROUPS)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    state = open_state(spec, None)
    units = {u.name: u for u in build(state.spec, state.root).units}
    [outer] = units["outer"].history
    members = [a for name in ("prep", "work") for a in units[name].history]
    assert outer.started == min(a.started for a in members)  # its first member's start
    assert outer.ended is not None and outer.ended >= max(a.ended for a in members)
