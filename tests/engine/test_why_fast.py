"""`plan` and `run --dry-run` answer two states without doit (nothing ever ran; the no-op
manifest matches) and describe units with fewer objects. Each shortcut is pinned here against
the code it stands in for, and every change that must re-run a task still shows as would-run.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import pytest

from dodo_jobspec import noop
from dodo_jobspec.engine import why
from dodo_jobspec.engine.loader import task_dicts
from dodo_jobspec.engine.run import Prepared, RunRequest, prepare
from dodo_jobspec.tasks.steps import StageConfig, StepRunner
from dodo_jobspec.tasks.unit import RunOptions, UnitRunner
from tests.helpers import jobspec_do, write

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

PIPELINE = """
    version: 1
    name: pipe
    tasks:
    - name: fetch
      command: "echo fetch >> count.fetch && cp in.txt data.txt"
      inputs: [in.txt]
      outputs: [data.txt]
    - name: build
      depends_on: [fetch]
      command: "echo build >> count.build && cat data.txt > built.txt"
      inputs: [data.txt]
      outputs: [built.txt]
    - name: test
      depends_on: [build]
      command: "echo test >> count.test"
    - name: docs
      command: "echo docs >> count.docs"
    """

# Steps, replicas, a nested group with a local barrier, a task named like a group.
SHAPES = """
    version: 1
    name: shapes
    resources:
      two: {type: node, count: 1, with: [{type: slot, count: 1, with: [{type: core, count: 2}]}]}
    groups:
    - name: outer
      resources: two
      tasks:
      - {name: up, local: true, command: "true"}
      - {name: work, command: "true", replicas: 3}
      - group: inner
    - name: inner
      tasks:
      - name: staged
        steps:
        - {name: write, path: job.sh, content: "#!/bin/sh\\ntrue\\n", executable: true}
        command: [./job.sh]
    tasks:
    - {name: first, command: "echo 1 > first.txt", outputs: [first.txt]}
    - {name: inner, command: "true", depends_on: [first]}
    - {name: after, depends_on: [outer, first], command: "true", replicas: 2}
    """


def _prep(spec: Path, transformer: str = "local") -> Prepared:
    return prepare(RunRequest(spec=spec, transformer=transformer))


def _key(prep: Prepared) -> tuple[object, ...]:
    return noop.key(prep.spec.path, prep.transformer.name, None)


def _doit_verdicts(prep: Prepared) -> list[why.Verdict]:
    return why._analyse_doit(prep)


def _plan(prep: Prepared, capsys: pytest.CaptureFixture[str], **kw: object) -> str:
    why.print_plan(prep, **kw)  # type: ignore[arg-type]
    return capsys.readouterr().out


# -- the shortcuts stand in for exactly what they replace -----------------------------------

@pytest.mark.parametrize("transformer", ["local", "slurm", "flux"])
@pytest.mark.parametrize("example", ["shapes", "groups.yaml", "replicas.yaml"])
def test_task_names_are_those_of_the_task_dicts(tmp_path: Path, transformer: str,
                                                example: str) -> None:
    if example == "shapes":
        spec = write(tmp_path, SHAPES)
    else:
        spec = tmp_path / example
        shutil.copy(EXAMPLES / example, spec)
    prep = _prep(spec, transformer)
    runner = UnitRunner(prep.spec, prep.state, prep.transformer, RunOptions(), lambda *a: None)
    steps = StepRunner(prep.state, StageConfig(), lambda *a: None)
    dicts = task_dicts(prep.plan, runner, steps, prep.state,
                       local_replicas=not prep.transformer.submits_groups)
    assert why.task_names(prep) == [(d["name"], d["meta"]["unit"]) for d in dicts]
    if example != "groups.yaml" and transformer == "local":
        assert len(dicts) > len(prep.plan)  # steps and replicas are their own doit tasks


@pytest.mark.parametrize("transformer", ["local", "slurm", "flux"])
def test_plan_context_is_the_runners_context(tmp_path: Path, transformer: str) -> None:
    prep = _prep(write(tmp_path, SHAPES), transformer)
    runner = UnitRunner(prep.spec, prep.state, prep.transformer, RunOptions(), lambda *a: None)
    folders: dict[str, Path] = {}
    checked = 0
    for pu in prep.plan:
        if pu.whole_group:
            continue
        st = prep.state.unit(pu.node)
        for attempt in (1, 7):
            mine = why.plan_context(prep.spec, pu, st, attempt, folders)
            assert mine == runner._context(pu, st, attempt, "<token>", None, create=False)
            checked += 1
    assert checked
    assert not (tmp_path / ".jobspec-do").exists()


def test_never_ran_without_doit_equals_doits_answer(tmp_path: Path) -> None:
    prep = _prep(write(tmp_path, SHAPES))
    fast = why.analyse(prep, _key(prep))
    assert fast == _doit_verdicts(prep)
    assert all(v.runs and v.reasons == ("it never ran",) for v in fast)


def test_up_to_date_from_the_manifest_equals_doits_answer(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    (tmp_path / "in.txt").write_text("one\n")
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    prep = _prep(spec)
    assert noop.check(prep.state.root, _key(prep)) == len(prep.plan)  # the fast path applies
    fast = why.analyse(prep, _key(prep))
    assert fast == _doit_verdicts(prep)
    assert not any(v.runs for v in fast) and all(v.reasons == () for v in fast)
    # The whole plan reads the same either way (without a key, doit answers).
    assert _plan(prep, capsys, noop_key=_key(prep)) == _plan(prep, capsys)
    assert _plan(prep, capsys, noop_key=_key(prep), as_json=True) == _plan(prep, capsys,
                                                                           as_json=True)


def _run_then(tmp_path: Path, change: str) -> tuple[Path, str]:
    (tmp_path / "in.txt").write_text("one\n")
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    if change == "edited task":
        spec.write_text(spec.read_text().replace("echo docs >>", "echo DOCS >>"))
    elif change == "changed input":
        (tmp_path / "in.txt").write_text("two, longer\n")
    elif change == "missing output":
        (tmp_path / "built.txt").unlink()
    elif change == "missing record":
        (tmp_path / ".jobspec-do" / "spec" / "tasks" / "build" / "done.json").unlink()
    return spec, change


EXPECTED = {
    "edited task": {"task/docs": "its definition changed"},
    "changed input": {"task/fetch": "changed: in.txt", "task/build": "upstream will run: fetch",
                      "task/test": "upstream will run: build"},
    "missing output": {"task/build": "an output or its completion record is missing: built.txt",
                       "task/test": "upstream will run: build"},
    "missing record": {"task/build": "an output or its completion record is missing: its "
                                     "completion record",
                       "task/test": "upstream task build has not completed"},
}


@pytest.mark.parametrize("change", list(EXPECTED))
def test_every_change_still_shows_as_would_run(tmp_path: Path, change: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec, _ = _run_then(tmp_path, change)
    prep = _prep(spec)
    assert noop.check(prep.state.root, _key(prep)) is None  # the manifest no longer applies
    verdicts = why.analyse(prep, _key(prep))
    assert verdicts == _doit_verdicts(prep)
    runs = {v.name: "; ".join(v.reasons) for v in verdicts if v.runs}
    assert runs.keys() == EXPECTED[change].keys()
    for name, reason in EXPECTED[change].items():
        assert reason in runs[name], (name, runs[name])
    # Through the command line: plan and --dry-run say the same.
    plan = jobspec_do("plan", spec, cwd=tmp_path)
    dry = jobspec_do(spec, "-n", cwd=tmp_path)
    assert plan.returncode == 0 and dry.returncode == 0, plan.stderr + dry.stderr
    said = {line.split(": ", 1)[0]: line for line in dry.stdout.splitlines()}
    for name, reason in EXPECTED[change].items():
        assert f"[RUN ] {name}" in plan.stdout and reason in said[f"would run {name}"]
    assert f"{len(EXPECTED[change])} of 4 would run" in dry.stdout
    assert f"{len(EXPECTED[change])} of 4 units would run" in plan.stdout
    assert (tmp_path / "count.docs").read_text() == "docs\n"  # nothing ran


def test_up_to_date_through_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("one\n")
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    plan = jobspec_do("plan", spec, cwd=tmp_path)
    assert plan.stdout.count("  why: up to date") == 4 and "0 of 4 units would run" in plan.stdout
    assert "stdout.2" in plan.stdout  # the next attempt, read from the records
    assert jobspec_do(spec, "-n", cwd=tmp_path).stdout == "0 of 4 would run; 4 up to date\n"
    # --force never takes the manifest's word (run does not either), and the dry run shows
    # the forced unit as run would run it.
    forced = jobspec_do(spec, "-n", "--force", "docs", cwd=tmp_path)
    assert forced.returncode == 0 and forced.stdout == (
        "would run task/docs: forced (--force)\n1 of 4 would run; 3 up to date\n")


def test_a_config_file_change_defeats_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("one\n")
    spec = write(tmp_path, PIPELINE)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    (tmp_path / "jobspec-do.yaml").write_text("jobs: 1\n")
    prep = _prep(spec)
    from dodo_jobspec import config

    key = noop.key(spec, prep.transformer.name, config.find(spec))
    assert noop.check(prep.state.root, key) is None
    # doit answers, and nothing the config file says here changes a task: all up to date.
    assert not any(v.runs for v in why.analyse(prep, key))


# -- the attempt numbers, read without the csv module ----------------------------------------

def test_last_attempts_match_the_records_after_real_runs(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: ok, command: "true"}
        - {name: flaky, command: "test -e again"}
        - {name: never, command: "true", depends_on: [flaky]}
        """)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 1
    (tmp_path / "again").write_text("")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    prep = _prep(spec)
    got = why.last_attempts(prep)
    want = {pu.key: prep.state.unit(pu.node).last_attempt() for pu in prep.plan}
    assert got == want and want == {"task/ok": 1, "task/flaky": 2, "task/never": 1}


def test_the_manifests_attempts_are_the_records_after_real_runs(tmp_path: Path) -> None:
    """The attempts a complete run leaves in the no-op manifest (what `plan` prints from when
    everything is up to date) equal each unit's history: after a failure and a resume,
    with replicas, groups and units the last run did not touch."""
    spec = write(tmp_path, SHAPES.replace('command: "true", replicas: 3',
                                          'command: "test -e again", replicas: 3'))
    assert jobspec_do(spec, cwd=tmp_path).returncode == 1
    (tmp_path / "again").write_text("")
    # The second run re-runs one task; the others keep the previous manifest's attempts.
    for extra, work in (((), 2), (("--force", "work"), 3)):
        assert jobspec_do(spec, "-k", *extra, cwd=tmp_path).returncode == 0
        prep = _prep(spec)
        matched = noop.match(prep.state.root, _key(prep))
        assert matched is not None
        want = {pu.key: prep.state.unit(pu.node).last_attempt() for pu in prep.plan}
        assert matched[1] == want and want["task/work"] == work and want["task/first"] == 1


def test_plan_from_the_manifest_prints_what_reading_the_records_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, SHAPES)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    prep = _prep(spec)
    fast = _plan(prep, capsys, noop_key=_key(prep))
    noop.forget(prep.state.root)
    assert fast == _plan(_prep(spec), capsys, noop_key=_key(prep)) and "stdout.2" in fast


def test_a_clean_folder_reads_no_records(tmp_path: Path) -> None:
    prep = _prep(write(tmp_path, SHAPES))
    assert set(why.last_attempts(prep).values()) == {0}
    assert not (tmp_path / ".jobspec-do").exists()


# -- the output, unchanged -------------------------------------------------------------------

def test_plan_text_and_json_of_a_clean_folder(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(EXAMPLES / "groups.yaml", tmp_path)
    prep = _prep(tmp_path / "groups.yaml")
    text = _plan(prep, capsys)
    lines = text.splitlines()
    assert lines[0] == f"plan for {prep.spec.path} on local:"
    assert lines[-1] == f"{len(prep.plan)} of {len(prep.plan)} units would run"
    assert "\n[RUN ] task/train  (after task/service-up)\n  why: it never ran\n" in text
    assert f"  stdout: {prep.state.root}/tasks/train/stdout.1" in text
    data = json.loads(_plan(prep, capsys, as_json=True))
    assert [u["unit"] for u in data["units"]] == [pu.key for pu in prep.plan]
    train = next(u for u in data["units"] if u["unit"] == "task/train")
    assert train["after"] == ["task/service-up"] and train["reasons"] == ["it never ran"]
    assert train["resources"].startswith("one [") and "stdout.1" in train["detail"]


def test_plan_leaves_garbage_collection_as_it_was(tmp_path: Path) -> None:
    from dodo_jobspec import cli

    spec = write(tmp_path, PIPELINE.replace("      inputs: [in.txt]\n", ""))
    assert gc.isenabled()
    assert cli.main(["plan", str(spec)]) == 0
    assert cli.main(["run", "-n", str(spec)]) == 0
    assert gc.isenabled()
    gc.disable()
    try:
        cli.main(["plan", str(spec)])
        assert not gc.isenabled()
    finally:
        gc.enable()
