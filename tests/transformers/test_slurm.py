"""The Slurm transformer: pinned scripts, pure helpers, then real jobs on the test cluster.

Golden files live in tests/transformers/golden/slurm/; rewrite them with ``UPDATE_GOLDEN=1``.
Tests that request the ``slurm`` fixture run on a real single-node cluster (tests/services.py).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from dodo_jobspec.spec.model import Group, Spec, Task, Unit
from dodo_jobspec.spec.resolve import load
from dodo_jobspec.transformers import slurm as slurm_module
from dodo_jobspec.transformers.base import (
    JobState,
    JobStatus,
    SubmitError,
    TransformerOptions,
    UnitContext,
)
from dodo_jobspec.transformers.slurm import (
    ClusterInfo,
    SlurmTransformer,
    _combine,
    _nodes,
    _Row,
    _slurm_time,
    _time,
)
from tests.helpers import REFERENCE, load_text
from tests.services import SlurmCluster

GOLDEN = Path(__file__).parent / "golden" / "slurm"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCES = [("corpus", p) for p in sorted((REFERENCE / "corpus").glob("*.yaml"))] + \
          [("examples", p) for p in sorted(EXAMPLES.glob("*.yaml"))]
# A fixed cluster for the pinned scripts: four 16-CPU nodes without GPUs (so `a|b` choices
# show up), in one default partition.
FAKE_CLUSTER = ClusterInfo.parse("".join(f"n{i}|16|(null)|debug*\n" for i in range(1, 5)))
# The same, plus a 'gpu' partition of two 32-CPU nodes with 4 GPUs each, their gres written
# the two ways sinfo prints them.
GPU_CLUSTER = ClusterInfo.parse("".join(f"n{i}|16|(null)|debug*\n" for i in range(1, 5))
                                + "g1|32|gpu:a100:4(S:0-1)|gpu\ng2|32|gpu:2,gpu:v100:2|gpu\n")
FAST = TransformerOptions(poll_interval=0.2)


def context(spec: Spec, unit: Unit, root: Path, *, cwd: Path | None = None, attempt: int = 1,
            token: str | None = None, after: Sequence[str] = ()) -> UnitContext:
    """The UnitContext the engine would give ``unit``, with state folders under ``root``."""
    kids = {n.key: root / n.key for n in (unit.walk() if isinstance(unit, Group) else ())
            if isinstance(n, Task)}
    work = root / unit.key
    return UnitContext(spec=spec, workdir=work, attempt=attempt,
                       token=token or f"jsd-{uuid.uuid4().hex}", stdout=work / f"stdout.{attempt}",
                       stderr=work / f"stderr.{attempt}", cwd=cwd or spec.path.parent,
                       after_jobs=tuple(after), children=kids)


def unit(spec: Spec, key: str) -> Unit:
    return spec.nodes[key]


def run(t: SlurmTransformer, u: Unit, ctx: UnitContext, timeout: float = 60) -> JobStatus:
    """Submit ``u`` and poll status until it is terminal."""
    job_id = t.submit(u, ctx)
    return wait(t, job_id, timeout)


def wait(t: SlurmTransformer, job_id: str, timeout: float = 60,
         states: frozenset[JobState] | None = None) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        st = t.status([job_id])[job_id]
        if (st.state in states) if states else st.state.terminal:
            return st
        assert time.monotonic() < deadline, f"job {job_id} still {st} after {timeout}s"
        time.sleep(0.2)


# -- golden scripts ----------------------------------------------------------------------------
@pytest.mark.parametrize("folder", ["corpus", "examples"])
def test_every_golden_file_has_its_source(folder: str) -> None:
    """The sources are found by glob, some outside the repository: if they are missing, their
    golden cases must fail here rather than silently not be collected."""
    sources = {p.stem for f, p in SOURCES if f == folder}
    goldens = {p.stem for p in (GOLDEN / folder).glob("*.txt")}
    assert sources, f"no {folder} specs found (looked in {REFERENCE / 'corpus'} and {EXAMPLES})"
    assert sources == goldens, (
        f"{folder}: specs without a golden file: {sorted(sources - goldens)}; golden files "
        f"without a spec (missing source, or a stale golden to delete): "
        f"{sorted(goldens - sources)}")


@pytest.mark.parametrize(("folder", "path"), SOURCES, ids=[f"{f}/{p.stem}" for f, p in SOURCES])
def test_golden_scripts(folder: str, path: Path) -> None:
    t = SlurmTransformer(cluster=FAKE_CLUSTER)
    spec = load(path, default_resources=t.default_resources)
    parts = []
    for u in t.units(spec):
        # Fixed placeholder paths and ids, so the files do not depend on where tests run.
        after = [f"ID_OF_{d.name}" for d in u.after]
        ctx = context(spec, u, Path("/state"), cwd=Path("/spec"), token="TOKEN", after=after)
        parts.append(f"########## {u.key}\n{t.describe(u, ctx)}")
    text = "\n".join(parts)
    golden = GOLDEN / folder / f"{path.stem}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}; run with UPDATE_GOLDEN=1 to write it"
    assert text == golden.read_text()


@pytest.mark.parametrize(("folder", "path"), SOURCES, ids=[f"{f}/{p.stem}" for f, p in SOURCES])
def test_no_script_names_the_jobs_it_waits_on(folder: str, path: Path) -> None:
    """prepare() writes a script before the ids of the jobs it waits on are known: they must
    only ever be on sbatch's command line."""
    t = SlurmTransformer(cluster=FAKE_CLUSTER)
    spec = load(path, default_resources=t.default_resources)
    for u in t.units(spec):
        ctx = context(spec, u, Path("/state"), cwd=Path("/spec"), token="TOKEN")
        assert t.render(u, ctx) == t.render(u, replace(ctx, after_jobs=("12", "34")))


# -- written ahead -----------------------------------------------------------------------------
def _fake_sbatch(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """sbatch answering job 42 to every call; the argv of each call."""
    calls: list[list[str]] = []

    class FakeSbatch:
        returncode = 0

        def __init__(self, argv: list[str], **_: object) -> None:
            calls.append(argv)

        def communicate(self, timeout: float | None = None) -> tuple[str, str]:
            return "42\n", ""

    monkeypatch.setattr(slurm_module.subprocess, "Popen", FakeSbatch)
    return calls


def test_sbatch_runs_between_start_submit_and_its_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """start_submit returns with sbatch started, not finished: the engine works meanwhile."""
    spec = load_text(tmp_path, "version: 1\ntasks:\n- {name: a, command: [true]}\n")
    t, u = SlurmTransformer(cluster=FAKE_CLUSTER), unit(spec, "task/a")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gate = tmp_path / "gate"
    # 42 if the gate opened while it ran (within 3 s), 41 if the caller waited for it first.
    (bin_dir / "sbatch").write_text(
        f"#!/bin/bash\nfor _ in $(seq 300); do [ -e {gate} ] && break; sleep 0.01; done\n"
        f"if [ -e {gate} ]; then echo 42; else echo 41; fi\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    answer = t.start_submit(u, context(spec, u, tmp_path / "state"))  # returns: not waited
    gate.touch()
    assert answer() == "42"
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: Invalid account' >&2\n"
                                    "exit 1\n")
    answer = t.start_submit(u, context(spec, u, tmp_path / "state", attempt=2))
    with pytest.raises(SubmitError, match="Invalid account"):
        answer()


def test_a_script_written_ahead_is_sent_as_written_with_the_ids_on_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_text(tmp_path, "version: 1\ntasks:\n- {name: a, command: [true]}\n")
    t, u = SlurmTransformer(cluster=FAKE_CLUSTER), unit(spec, "task/a")
    ctx = context(spec, u, tmp_path / "state")
    t.prepare(u, ctx)  # before the ids it waits on are known
    script = ctx.workdir / "job.1.sbatch"
    assert script.read_text() == t.render(u, ctx)
    renders: list[object] = []
    monkeypatch.setattr(t, "render", lambda *args: renders.append(args) or "#!/bin/sh\n")
    calls = _fake_sbatch(monkeypatch)
    assert t.submit(u, replace(ctx, after_jobs=("7", "8"))) == "42"
    assert renders == []  # not rendered a second time
    assert calls == [["sbatch", "--parsable", "--dependency=afterok:7:8",
                      "--kill-on-invalid-dep=yes", str(script)]]
    # Taken once: submitting the attempt again writes its script again.
    t.submit(u, ctx)
    assert len(renders) == 1


def test_a_script_written_ahead_for_another_token_is_written_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_text(tmp_path, "version: 1\ntasks:\n- {name: a, command: [true]}\n")
    t, u = SlurmTransformer(cluster=FAKE_CLUSTER), unit(spec, "task/a")
    ahead = context(spec, u, tmp_path / "state", token="first")
    t.prepare(u, ahead)
    _fake_sbatch(monkeypatch)
    now = context(spec, u, tmp_path / "state", token="second")
    t.submit(u, now)
    assert "--comment=second" in (now.workdir / "job.1.sbatch").read_text()


def test_a_script_that_cannot_be_written_ahead_fails_at_submit(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [true], attributes: {account: 'a"b'}}
        """)
    t, u = SlurmTransformer(cluster=FAKE_CLUSTER), unit(spec, "task/a")
    ctx = context(spec, u, tmp_path / "state")
    t.prepare(u, ctx)  # says nothing: the submission reports it, as without prepare
    with pytest.raises(SubmitError, match="contains a quote"):
        t.submit(u, ctx)


# -- pure helpers ------------------------------------------------------------------------------
@pytest.mark.parametrize(("seconds", "expected"), [
    (1, "1"), (60, "1"), (61, "2"), (3600, "60"), (86399, "1-00:00:00"),
    (90000, "1-01:00:00"), (3 * 86400 + 120, "3-00:02:00")])
def test_time_is_whole_minutes_rounded_up(seconds: float, expected: str) -> None:
    assert _slurm_time(seconds) == expected


def test_choose_picks_the_first_alternative_the_partition_can_satisfy(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        resources:
          big: {type: node, count: 9}
          small: {type: node, count: 2, with: [{type: core, count: 8}]}
        tasks:
        - {name: a, command: [true], resources: big|small}
        """)
    req, why = SlurmTransformer(cluster=FAKE_CLUSTER).choose(unit(spec, "task/a"))
    assert req is not None and req.name == "small"
    assert "alternative 2 of 2" in why
    req, why = SlurmTransformer(cluster=ClusterInfo((), None)).choose(unit(spec, "task/a"))
    assert req is not None and req.name == "big" and "no alternative fits" in why


def test_check_is_skipped_without_sinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo anywhere
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [true], resources: {type: core, count: 1000}}
        """)
    assert SlurmTransformer().check(spec) == []


def test_check_reports_a_step_larger_than_its_group(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        groups:
        - name: g
          resources: {type: core, count: 2}
          tasks:
          - {name: a, command: [true], resources: {type: core, count: 4}}
        """)
    problems = SlurmTransformer(cluster=FAKE_CLUSTER).check(spec)
    assert [p.message for p in problems] == [
        "task 'a' asks for inline [1 slot(s) x 4 core(s)], which cannot run here: more than "
        "its group's allocation (inline [1 slot(s) x 2 core(s)])"]


_WIDE = "{type: slot, count: %d, with: [{type: core, count: 1}]}"
_GPUS = "{type: slot, count: 1, with: [{type: core, count: 1}, {type: gpu, count: %d}]}"


@pytest.mark.parametrize(("resources", "partition", "reason"), [
    # Without nodes, slots may spread over the partition: its total is the limit.
    (_WIDE % 80, None, "80 cores asked, partition 'debug' has 64"),
    (_WIDE % 64, None, None),
    (_WIDE % 65, "gpu", "65 cores asked, partition 'gpu' has 64"),
    ("{type: node, count: 5}", None, "5 nodes asked, partition 'debug' has 4"),
    ("{type: node, count: 4, with: [{type: core, count: 16}]}", None, None),
    ("{type: node, count: 3}", "gpu", "3 nodes asked, partition 'gpu' has 2"),
    ("{type: node, count: 2, with: [{type: slot, count: 4, with: [{type: core, count: 16}]}]}",
     None, "64 cores per node asked, the largest node has 16"),
    ("{type: core, count: 17}", None, "17 cores per task asked, the largest node has 16"),
    (_GPUS % 1, None, "1 gpus per task asked, no node has that many"),
    (_GPUS % 4, "gpu", None),
    (_GPUS % 5, "gpu", "5 gpus per task asked, no node has that many"),
    ("{type: core, count: 1}", "nosuch", "partition 'nosuch' has no nodes"),
], ids=["cores-over-partition", "cores-fill-partition", "cores-over-other-partition",
        "nodes-over-partition", "nodes-fill-partition", "nodes-over-other-partition",
        "cores-per-node", "cores-per-task", "gpu-where-none", "gpus-fit", "gpus-over-node",
        "unknown-partition"])
def test_check_names_what_the_partition_is_short_of(tmp_path: Path, resources: str,
                                                    partition: str | None,
                                                    reason: str | None) -> None:
    attrs = f", attributes: {{partition: {partition}}}" if partition else ""
    spec = load_text(tmp_path, f"""
        version: 1
        tasks:
        - {{name: ok, command: [true]}}
        - {{name: big, command: [true], resources: {resources}{attrs}}}
        """)
    t = SlurmTransformer(cluster=GPU_CLUSTER)
    problems = t.check(spec)
    if reason is None:
        assert problems == []
        return
    label = t.choose(unit(spec, "task/big"))[0].label
    assert [(p.message, p.path, p.file) for p in problems] == [
        (f"task 'big' asks for {label}, which cannot run here: {reason}", ("tasks[1]",),
         str(spec.path))]
    assert problems[0].hint == "ask for fewer resources, or choose another partition"


@pytest.mark.parametrize(("first", "second"), [
    (_WIDE % 80, _WIDE % 64),
    ("{type: node, count: 5}", "{type: node, count: 4}"),
    (_GPUS % 1, "{type: core, count: 16}"),
], ids=["cores", "nodes", "gpus"])
def test_choose_skips_an_alternative_the_partition_is_short_of(tmp_path: Path, first: str,
                                                               second: str) -> None:
    spec = load_text(tmp_path, f"""
        version: 1
        resources:
          first: {first}
          second: {second}
        tasks:
        - {{name: a, command: [true], resources: first|second}}
        """)
    t = SlurmTransformer(cluster=FAKE_CLUSTER)
    req, why = t.choose(unit(spec, "task/a"))
    assert req is not None and req.name == "second", why
    assert why == "alternative 2 of 2: the first the partition can satisfy"
    assert t.check(spec) == []


def test_array_status_is_terminal_only_when_every_element_is() -> None:
    def rows(*states: tuple[str, int | None]) -> list[_Row]:
        return [_Row("9", f"9_{i}", s, "", c) for i, (s, c) in enumerate(states)]

    assert _combine(rows(("COMPLETED", 0), ("RUNNING", None))).state is JobState.RUNNING
    assert _combine(rows(("COMPLETED", 0), ("PENDING", None))).state is JobState.QUEUED
    failed = _combine(rows(("COMPLETED", 0), ("FAILED", 3), ("TIMEOUT", 143)))
    assert (failed.state, failed.exit_code) == (JobState.FAILED, 3)
    assert _combine(rows(("COMPLETED", 0), ("COMPLETED", 0))).state is JobState.COMPLETED
    assert _combine([]) is None


def test_where_and_since_when_an_array_ran() -> None:
    """Every element's nodes, once each (a failed node's note left out), and the earliest
    start; a pending element's expected start is no start."""
    rows = [_Row("9", "9_0", "COMPLETED", "", 0, "n1", 100.0),
            _Row("9", "9_1", "NODE_FAIL", "", 0, "n2, node down: n2", 90.0),
            _Row("9", "9_2", "COMPLETED", "", 0, "n1", 120.0),
            _Row("9", "9_3", "PENDING", "", None, "", 50.0)]
    st = _combine(rows)
    assert (st.state, st.where, st.started) == (JobState.QUEUED, "n1,n2", 90.0)
    done = _combine(rows[:3])
    assert (done.state, done.where, done.started) == (JobState.FAILED, "n1,n2", 90.0)
    assert _time("2026-12-03T13:25:35") == datetime(2026, 12, 3, 13, 25, 35).timestamp()
    assert _time("N/A") is None and _time("Unknown") is None
    assert _nodes("None assigned") == "" and _nodes(" c[1-2] ") == "c[1-2]"


def test_a_quote_in_a_directive_is_refused(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [true], attributes: {account: 'x"y'}}
        """)
    t = SlurmTransformer(cluster=FAKE_CLUSTER)
    with pytest.raises(SubmitError, match="contains a quote"):
        t.render(unit(spec, "task/a"), context(spec, unit(spec, "task/a"), tmp_path))


# -- on the real cluster -----------------------------------------------------------------------
def test_a_task_completes_with_its_output_in_place(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - name: hi
          command: [sh, -c, 'echo "hello $GREETING" > out.txt; echo done']
          attributes: {environment: {GREETING: "from slurm"}, duration: 45s}
        """)
    t, u = SlurmTransformer(FAST), unit(spec, "task/hi")
    ctx = context(spec, u, tmp_path / "state")
    st = run(t, u, ctx)
    assert (st.state, st.exit_code) == (JobState.COMPLETED, 0), st
    assert (tmp_path / "out.txt").read_text() == "hello from slurm\n"
    assert ctx.stdout.read_text() == "done\n"
    assert (ctx.workdir / "job.1.sbatch").is_file()
    # The 45 s watchdog of a job that ended first is gone with it (it is a session leader,
    # which Slurm's linuxproc tracking does not follow).
    watchdogs = [p for p in Path("/proc").glob("[0-9]*/cmdline")
                 if b"sleep 45 && scontrol" in _read(p)]
    assert watchdogs == []


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended while we looked
        return b""


def test_a_failing_task_is_failed_with_its_exit_code(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: bad, command: "exit 3"}
        """)
    t, u = SlurmTransformer(FAST), unit(spec, "task/bad")
    st = run(t, u, context(spec, u, tmp_path / "state"))
    assert (st.state, st.exit_code) == (JobState.FAILED, 3), st


def test_commands_are_quoted_correctly(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - name: list
          command: [bash, -c, "echo a; echo b"]
        - name: string
          command: |-
            echo "$HOME" "it's" 'a  $b' | tr -s ' ' > string.txt
        """)
    t = SlurmTransformer(FAST)
    for key in ("task/list", "task/string"):
        ctx = context(spec, unit(spec, key), tmp_path / "state")
        st = run(t, unit(spec, key), ctx)
        assert st.state is JobState.COMPLETED, (key, st, ctx.stderr.read_text())
    assert (tmp_path / "state/task/list/stdout.1").read_text() == "a\nb\n"
    assert (tmp_path / "string.txt").read_text() == f"{os.environ['HOME']} it's a $b\n"


def test_replicas_are_one_array_submission(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: rep, replicas: 3, command: [sh, -c, 'echo "replica $JOBSPEC_REPLICA"']}
        """)
    t, u = SlurmTransformer(FAST), unit(spec, "task/rep")
    ctx = context(spec, u, tmp_path / "state")
    before = len(slurm.submitted_job_ids())
    st = run(t, u, ctx)
    assert (st.state, st.exit_code) == (JobState.COMPLETED, 0), st
    assert len(slurm.submitted_job_ids()) == before + 1
    for r in range(3):
        assert (ctx.workdir / f"stdout.1.{r}").read_text() == f"replica {r}\n"


GROUP_SPEC = """
    version: 1
    resources:
      four: {type: slot, count: 4, with: [{type: core, count: 1}]}
      one: {type: core, count: 1}
    groups:
    - name: outer
      resources: four
      tasks:
      - name: prep
        local: true
        command: "echo prepared > prep.txt"
      - name: left
        resources: one
        command: [sh, -c, "date +%s.%N; sleep 2; date +%s.%N"]
      - name: right
        resources: one
        command: [sh, -c, "date +%s.%N; sleep 2; date +%s.%N"]
      - name: join
        resources: one
        depends_on: [left, right]
        command: [sh, -c, "cat prep.txt; exit 5"]
      - name: never
        resources: one
        depends_on: [join]
        command: [sh, -c, "echo never"]
      - group: inner
    - name: inner
      resources: one
      tasks:
      - {name: deep, command: [sh, -c, 'echo "deep $JOBSPEC_REPLICA"'], replicas: 2}
    """


def test_a_group_runs_its_children_in_one_allocation(slurm: SlurmCluster, tmp_path: Path
                                                     ) -> None:
    spec = load_text(tmp_path, GROUP_SPEC)
    t, g = SlurmTransformer(FAST), unit(spec, "group/outer")
    ctx = context(spec, g, tmp_path / "state")
    before = len(slurm.submitted_job_ids())
    st = run(t, g, ctx)
    assert (st.state, st.exit_code) == (JobState.FAILED, 5), st
    assert len(slurm.submitted_job_ids()) == before + 1

    def exit_code(name: str) -> str | None:
        path = ctx.children[f"task/{name}"] / "exit.1"
        return path.read_text() if path.exists() else None

    assert {n: exit_code(n) for n in ("prep", "left", "right", "join", "deep", "never")} == {
        "prep": "0\n", "left": "0\n", "right": "0\n", "join": "5\n", "deep": "0\n",
        "never": None}
    kids = ctx.children
    assert (kids["task/join"] / "stdout.1").read_text() == "prepared\n"
    assert [(kids["task/deep"] / f"stdout.1.{r}").read_text() for r in (0, 1)] == [
        "deep 0\n", "deep 1\n"]
    # left and right are parallel steps: each started before the other ended.
    (l0, l1), (r0, r1) = ([float(x) for x in (kids[f"task/{n}"] / "stdout.1").read_text().split()]
                          for n in ("left", "right"))
    assert l0 < r1 and r0 < l1
    assert "never not run" in ctx.stderr.read_text()


def test_duration_shorter_than_the_job_is_a_timeout(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: slow, command: [sleep, "600"], attributes: {duration: 2s}}
        """)
    t, u = SlurmTransformer(FAST), unit(spec, "task/slow")
    # --time=1 (whole minutes) alone would end it 60-90 s from now; the job lowers its own
    # limit after 2 s and slurmctld's next time-limit pass (every 30 s) ends it.
    st = run(t, u, context(spec, u, tmp_path / "state"), timeout=60)
    assert st.state is JobState.TIMEOUT, st


def test_cancel_leaves_nothing_in_the_queue(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: long, command: [sleep, "600"], replicas: 2}
        - {name: later, command: [sleep, "600"]}
        """)
    t = SlurmTransformer(FAST)
    first = t.submit(unit(spec, "task/long"), context(spec, unit(spec, "task/long"), tmp_path))
    second = t.submit(unit(spec, "task/later"), context(spec, unit(spec, "task/later"), tmp_path,
                                                         after=[first]))
    wait(t, first, states=frozenset({JobState.RUNNING}))
    t.cancel([first, second])
    assert wait(t, first).state is JobState.CANCELED
    assert wait(t, second).state is JobState.CANCELED
    slurm.wait_idle(timeout=20)


def test_find_recognises_a_job_by_its_token(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [sleep, "600"]}
        """)
    t, u = SlurmTransformer(FAST), unit(spec, "task/a")
    ctx = context(spec, u, tmp_path)
    job_id = t.submit(u, ctx)
    assert t.find(u, ctx) == job_id
    assert t.find(u, context(spec, u, tmp_path)) is None  # another attempt's token


def test_find_reads_the_id_the_job_wrote_when_it_started(slurm: SlurmCluster,
                                                          tmp_path: Path) -> None:
    """After MinJobAge slurmctld no longer knows a finished job by its comment; the job's
    own note in its folder still says which job the attempt became."""
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [touch, ran]}
        """)
    t, u = SlurmTransformer(FAST), unit(spec, "task/a")
    ctx = context(spec, u, tmp_path)
    ctx.workdir.mkdir(parents=True)
    script = ctx.workdir / "job.1.sbatch"
    script.write_text(t.render(u, ctx))
    # The command line's --comment wins over the script's: squeue cannot match the token.
    out = subprocess.run(["sbatch", "--parsable", "--comment=forgotten", str(script)],
                         capture_output=True, text=True, check=True)
    job_id = out.stdout.strip()
    assert wait(t, job_id).state is JobState.COMPLETED
    assert (ctx.workdir / "job.1.started").read_text() == f"{job_id} {ctx.token}\n"
    assert t.find(u, ctx) == job_id
    assert t.find(u, context(spec, u, tmp_path)) is None  # same attempt, another token


def test_find_refuses_to_guess_when_squeue_cannot_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """None would mean "never submitted", and the attempt would be submitted a second time."""
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [touch, ran]}
        """)
    t, u = SlurmTransformer(FAST, cluster=FAKE_CLUSTER), unit(spec, "task/a")
    ctx = context(spec, u, tmp_path)
    (tmp_path / "empty.conf").write_text("")  # squeue fails at once (a missing file: 60 s)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "empty.conf"))
    with pytest.raises(SubmitError, match="cannot tell whether attempt 1") as err:
        t.find(u, ctx)
    assert err.value.transient
    # A job that started said so itself: that needs no squeue.
    ctx.workdir.mkdir(parents=True)
    (ctx.workdir / "job.1.started").write_text(f"7 {ctx.token}\n")
    assert t.find(u, ctx) == "7"


def test_dependent_of_a_failed_job_is_canceled(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: parent, command: "exit 1"}
        - {name: child, command: [touch, ran], depends_on: [parent]}
        """)
    t = SlurmTransformer(FAST)
    parent = t.submit(unit(spec, "task/parent"),
                      context(spec, unit(spec, "task/parent"), tmp_path / "state"))
    child = t.submit(unit(spec, "task/child"),
                     context(spec, unit(spec, "task/child"), tmp_path / "state", after=[parent]))
    assert wait(t, parent).state is JobState.FAILED
    st = wait(t, child, timeout=30)
    assert st.state is JobState.CANCELED and "DependencyNeverSatisfied" in st.info, st
    assert not (tmp_path / "ran").exists()


def test_status_of_an_unknown_job_is_lost(slurm: SlurmCluster) -> None:
    st = SlurmTransformer(FAST).status(["987654"])["987654"]
    assert st.state is JobState.LOST


def test_check_reports_more_cores_than_any_node(slurm: SlurmCluster, tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: fits, command: [true]}
        - {name: huge, command: [true], resources: {type: core, count: 1000}}
        """)
    problems = SlurmTransformer().check(spec)
    assert len(problems) == 1 and "task 'huge'" in problems[0].message
    assert "1000 cores per task asked, the largest node has 16" in problems[0].message


def test_submit_error_names_the_task_and_sbatch_stderr(slurm: SlurmCluster, tmp_path: Path
                                                       ) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: nowhere, command: [true], attributes: {partition: nosuch}}
        """)
    t, u = SlurmTransformer(FAST), unit(spec, "task/nowhere")
    with pytest.raises(SubmitError, match=r"task 'nowhere'.*invalid partition") as exc:
        t.submit(u, context(spec, u, tmp_path))
    assert not exc.value.transient


def test_finished_jobs_are_found_in_the_jobcomp_file_when_squeue_fails(
        slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: bad, command: "exit 7"}
        """)
    t, u = SlurmTransformer(FAST), unit(spec, "task/bad")
    job_id = t.submit(u, context(spec, u, tmp_path / "state"))
    assert wait(t, job_id).state is JobState.FAILED
    # A squeue that fails as it does when slurmctld is down: jobs it would have listed must
    # come from the jobcomp file, and unknown ones must not be declared lost.
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "squeue").write_text("#!/bin/sh\necho 'squeue: error: Unable to contact slurm "
                                  "controller (connect failure)' >&2\nexit 1\n")
    (shims / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    st = SlurmTransformer(FAST).status([job_id, "987654"])
    assert (st[job_id].state, st[job_id].exit_code) == (JobState.FAILED, 7), st
    assert st["987654"].state is JobState.QUEUED and "Unable to contact" in st["987654"].info
