"""The unit runner: how long a local task holds its slot; what it does with a submission
whose job id was never recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dodo_jobspec.plan import build
from dodo_jobspec.records.state import JobRecord, StateDir
from dodo_jobspec.tasks.gate import SlotGate
from dodo_jobspec.tasks.unit import RunOptions, UnitRunner
from dodo_jobspec.transformers.base import TransformerOptions
from dodo_jobspec.transformers.local import LocalTransformer
from dodo_jobspec.transformers.slurm import ClusterInfo, SlurmTransformer
from tests.helpers import job_record, jobspec_do, load_text


def test_a_slot_is_held_while_the_process_runs_not_while_its_records_are_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run gives doit more threads than slots so that one task's bookkeeping overlaps the
    next task's process: that only works if the slot is free before the records are written."""
    monkeypatch.chdir(tmp_path)
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "echo ran > a.txt"}
        """)
    gate = SlotGate(1)
    transformer = LocalTransformer(TransformerOptions(jobs=1))
    runner = UnitRunner(spec, StateDir(tmp_path / "state", spec), transformer, RunOptions(),
                        lambda *event: None, gate=gate, machine_cores=os.cpu_count() or 1)
    during_process: list[int] = []
    during_records: list[int] = []
    wait, record = transformer.wait, runner._record

    def watched_wait(job_id: str):  # type: ignore[no-untyped-def]
        during_process.append(gate.free)
        return wait(job_id)

    def watched_record(*args, **kwargs):  # type: ignore[no-untyped-def]
        during_records.append(gate.free)
        return record(*args, **kwargs)

    monkeypatch.setattr(transformer, "wait", watched_wait)
    monkeypatch.setattr(runner, "waiter", watched_wait)
    monkeypatch.setattr(runner, "_record", watched_record)
    (pu,) = build(spec, submits_groups=False)
    assert runner.run(pu).ok
    assert (tmp_path / "a.txt").read_text() == "ran\n"
    assert during_process == [0], "the process ran without holding its slot"
    assert during_records == [1], "the slot was still held while the records were written"


def test_an_attempt_that_may_have_reached_slurm_is_not_submitted_again_blindly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between sbatch and recording the id: if squeue cannot say whether the job
    exists, the task fails this time instead of being submitted a second time."""
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [touch, ran]}
        """)
    transformer = SlurmTransformer(cluster=ClusterInfo.parse("n1|4|(null)|debug*\n"))
    runner = UnitRunner(spec, StateDir(tmp_path / "state", spec), transformer,
                        RunOptions(resume=True), lambda *event: None)
    (pu,) = build(spec, submits_groups=True)
    st = runner.state.unit(pu.node)
    st.ensure()
    left = JobRecord(attempt=1, token="jsd-left-behind", state="submitting",
                     transformer="slurm", signature=runner.signature(pu), digest=pu.node.digest)
    st.write_job(left)
    submitted: list[str] = []
    monkeypatch.setattr(transformer, "submit", lambda unit, ctx: submitted.append(unit.name))
    (tmp_path / "empty.conf").write_text("")  # squeue fails at once (a missing file: 60 s)
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "empty.conf"))
    outcome = runner.run(pu)
    assert not outcome.ok and "cannot tell whether attempt 1" in outcome.message
    assert submitted == []
    again = StateDir(tmp_path / "state", spec).unit(pu.node)  # as the next run reads it
    assert again.read_job() == left  # still open: the next run asks again


def test_an_attempt_starts_when_it_gets_a_slot_not_when_it_queues_for_one(
        tmp_path: Path) -> None:
    """With -j 2, doit hands a third task to a thread at once; its record's start (and so
    its duration in `status`) is when its process started, after a slot came free."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\ntasks:\n" + "".join(
        f"- {{name: t{i}, command: 'sleep 0.5'}}\n" for i in range(3)))
    r = jobspec_do(spec, "-j", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jobs = sorted((JobRecord(**job_record(tmp_path / ".jobspec-do" / "spec" / "tasks" /
                                          f"t{i}")) for i in range(3)),
                  key=lambda j: j.started or 0)
    assert all(j.started and j.finished for j in jobs)
    assert jobs[2].started >= min(jobs[0].finished, jobs[1].finished)  # type: ignore[type-var]


def test_a_job_left_running_by_a_killed_run_is_said_to_run_not_to_have_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain re-run after a kill -9 found the Slurm job still running and called the task
    failed. It says the job still runs and that --resume re-attaches; the summary does not
    count it as a failure."""
    import io

    from dodo_jobspec.engine.console import Console
    from dodo_jobspec.transformers.base import JobState, JobStatus

    spec = load_text(tmp_path, "version: 1\ntasks: [{name: a, command: [sleep, '60']}]\n")
    transformer = SlurmTransformer(cluster=ClusterInfo.parse("n1|4|(null)|debug*\n"))
    state = StateDir(tmp_path / "state", spec)
    runner = UnitRunner(spec, state, transformer, RunOptions(), lambda *event: None)
    (pu,) = build(spec, submits_groups=True)
    st = state.unit(pu.node)
    st.ensure()
    st.write_job(JobRecord(attempt=1, token="jsd-left", job_id="4711",
                           state="running", transformer="slurm",
                           signature=runner.signature(pu), digest=pu.node.digest))
    monkeypatch.setattr(transformer, "status",
                        lambda ids: {i: JobStatus(JobState.RUNNING) for i in ids})
    outcome = runner.run(pu)
    assert not outcome.ok
    out = io.StringIO()
    console = Console(state, 1, stream=out, live=False)
    console.failure("a", outcome.message, st)
    console.summary(False)
    text = out.getvalue()
    assert "failed" not in text.replace("0 failed", ""), text
    assert "running   a: job 4711 from an earlier run (killed?) is running; `jobspec-do " \
           "--resume SPEC` re-attaches to it and waits" in text, text
    assert "not done: 0 ran, 0 up to date, 0 failed, 1 still running from an earlier run " \
           "in " in text, text
