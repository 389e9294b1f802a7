"""`plan` and `run --dry-run` say why a task will run in the spec's terms: upstream units by
name (never jobspec-do's own records under the state folder), the spec's files relative to its
folder, each name once, and what the task's last attempt did (failed, never ran) rather than
"its definition changed (or it never completed)".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec.engine import why
from dodo_jobspec.engine.run import Prepared, RunRequest, prepare
from dodo_jobspec.records.state import UnitState
from tests.helpers import jobspec_do, write


def _prep(spec: Path) -> Prepared:
    return prepare(RunRequest(spec=spec, transformer="local"))


def _why(spec: Path) -> dict[str, str]:
    """Each doit task that would run (replicas and steps included) -> its reasons, from
    `analyse`; `run --dry-run` and `plan` must say the same for each unit (its own row)."""
    out = {v.name: "; ".join(v.reasons) for v in why.analyse(_prep(spec)) if v.runs}
    dry = jobspec_do(spec, "-n", cwd=spec.parent)
    plan = jobspec_do("plan", spec, cwd=spec.parent)
    assert dry.returncode == 0 and plan.returncode == 0, dry.stderr + plan.stderr
    units = {name: reasons for name, reasons in out.items() if ":" not in name}
    said = dict(line.removeprefix("would run ").split(": ", 1)
                for line in dry.stdout.splitlines()[:-1])
    assert said == units, (said, units)  # one line per unit, as analyse says
    rows = plan.stdout.split("\n[")
    for row in rows[1:]:
        if row.startswith("RUN ] "):
            unit = row[len("RUN ] "):].split()[0]
            told = row.split("\n  why: ", 1)[1].split("\n", 1)[0]
            assert told == out[unit], (unit, told, out[unit])  # plan says what -n says
    return out


def _internal_free(reasons: dict[str, str], tmp_path: Path) -> None:
    text = "\n".join(reasons.values())
    for leak in (".jobspec-do", "done.json", "done.r", "Dependent file", str(tmp_path)):
        assert leak not in text, (leak, text)


# -- 1. an upstream unit that never completed is named ----------------------------------------

def test_a_failed_upstream_task_is_named_not_its_record(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "exit 3"}
        - {name: b, command: "true", depends_on: [a]}
        - {name: c, command: "true", depends_on: [b], replicas: 2}
        """)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 1
    said = _why(spec)
    assert "upstream task a has not completed" in said["task/b"]
    assert "upstream task b has not completed" in said["task/c:r0"]
    _internal_free(said, tmp_path)


def test_a_group_upstream_is_named_as_a_group(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        groups:
        - name: g
          tasks:
          - {name: inside, command: "exit 1"}
        tasks:
        - {name: after, command: "true", depends_on: [g]}
        """)
    assert jobspec_do(spec, "-k", cwd=tmp_path).returncode == 1
    said = _why(spec)
    assert said["group/g"] == "it never ran; upstream task inside has not completed"
    assert said["task/after"] == "it never ran; upstream group g has not completed"
    _internal_free(said, tmp_path)


# -- 2. records read as tasks, files relative to the spec's folder ----------------------------

CHAIN = """
    version: 1
    tasks:
    - {name: a, command: "cat data/in.txt > a.txt", inputs: [data/in.txt], outputs: [a.txt]}
    - {name: b, command: "cat a.txt > b.txt", inputs: [a.txt], depends_on: [a],
       outputs: [b.txt]}
    - {name: c, command: "true", depends_on: [b]}
    """


def _chain(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("one\n")
    spec = write(tmp_path, CHAIN)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    return spec


def test_a_changed_input_is_shown_relative_to_the_spec(tmp_path: Path) -> None:
    spec = _chain(tmp_path)
    (tmp_path / "data" / "in.txt").write_text("two, longer\n")
    said = _why(spec)
    assert said == {"task/a": "changed: data/in.txt", "task/b": "upstream will run: a",
                    "task/c": "upstream will run: b"}


def test_an_upstream_that_ran_again_is_named(tmp_path: Path) -> None:
    spec = _chain(tmp_path)
    # What a run killed right after a re-ran (before b started) leaves: a's completion
    # record is new, a itself up to date, b not yet run.
    done = tmp_path / ".jobspec-do" / "spec" / "tasks" / "a" / "done.json"
    done.write_text(done.read_text() + " ")
    said = _why(spec)
    assert said == {"task/b": "upstream task a ran again", "task/c": "upstream will run: b"}
    (tmp_path / "a.txt").unlink()
    said = _why(spec)
    assert said["task/a"] == "an output or its completion record is missing: a.txt"
    assert said["task/b"] == "an input is missing: a.txt; upstream will run: a"


def test_a_file_outside_the_spec_folder_keeps_its_path(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("one\n")
    (tmp_path / "w").mkdir()
    spec = write(tmp_path / "w", f"""
        version: 1
        tasks:
        - {{name: a, command: "true", inputs: [{tmp_path}/outside.txt]}}
        """)
    assert jobspec_do(spec, cwd=spec.parent).returncode == 0
    (tmp_path / "outside.txt").write_text("two, longer\n")
    assert _why(spec) == {"task/a": f"changed: {tmp_path}/outside.txt"}


# -- 3. each name once, long lists cut ----------------------------------------------------------

def test_replicas_and_steps_are_not_repeated_upstream(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("one\n")
    spec = write(tmp_path, """
        version: 1
        tasks:
        - name: s
          inputs: [in.txt]
          replicas: 3
          steps:
          - {name: write, path: job.sh, content: "#!/bin/sh\\ntrue\\n", executable: true}
          command: [./job.sh]
        - {name: d, command: "true", depends_on: [s]}
        """)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    (tmp_path / "in.txt").write_text("two, longer\n")
    said = _why(spec)
    assert not any("s, s" in r for r in said.values()), said  # was "upstream will run: s, s"
    assert said["task/s:step0-write"] == "changed: in.txt"
    assert said["task/s:r0"] == "changed: in.txt; step write will run"
    assert said["task/s"] == "changed: in.txt; step write will run"  # its parts' reasons, once
    assert said["task/d"] == "upstream will run: s"


def test_a_long_upstream_list_is_cut(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("one\n")
    tasks = "".join(f'- {{name: t{i}, command: "true", inputs: [in.txt]}}\n' for i in range(20))
    spec = write(tmp_path, "version: 1\ntasks:\n" + tasks + "- {name: all, command: \"true\", "
                 "depends_on: [" + ", ".join(f"t{i}" for i in range(20)) + "]}\n")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    (tmp_path / "in.txt").write_text("two, longer\n")
    assert _why(spec)["task/all"] == "upstream will run: t0, t1, t2, t3, t4 and 15 more"


def test_listing() -> None:
    assert why.listing([]) == ""
    assert why.listing(["s", "s", "t", "s"]) == "s, t"
    assert why.listing([str(i) for i in range(8)], limit=3) == "0, 1, 2 and 5 more"


# -- 4. what the last attempt did ------------------------------------------------------------

def test_failed_never_ran_and_changed_are_told_apart(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: ok, command: "true"}
        - {name: flaky, command: "test -e again || exit 3"}
        - {name: after, command: "true", depends_on: [flaky]}
        - {name: many, command: "test -e again", replicas: 2}
        """)
    assert jobspec_do(spec, "-k", cwd=tmp_path).returncode == 1
    said = _why(spec)
    assert said["task/flaky"] == "it failed last time (attempt 1, exit 3)"
    assert said["task/after"] == "it never ran; upstream task flaky has not completed"
    assert said["task/many:r0"] == "it failed last time (attempt 1, exit 1)"
    assert said["task/many"] == "replicas 0, 1 failed last time (attempt 1, exit 1)"
    assert "task/ok" not in said
    assert jobspec_do(spec, "-k", cwd=tmp_path).returncode == 1
    assert _why(spec)["task/flaky"] == "it failed last time (attempt 2, exit 3)"
    (tmp_path / "again").write_text("")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    spec.write_text(spec.read_text().replace('command: "true"}', 'command: ":"}', 1))
    assert _why(spec) == {"task/ok": "its definition changed"}
    assert "(or it never completed)" not in jobspec_do(spec, "-n", cwd=tmp_path).stdout


def test_only_tasks_that_will_run_cost_a_read(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One job record looked up per task whose definition check failed; none for the
    rest."""
    spec = _chain(tmp_path)
    read: list[str] = []
    real = UnitState.read_job

    def counted(self: UnitState, replica: int | None = None) -> object:
        read.append(self.key)
        return real(self, replica)

    monkeypatch.setattr(UnitState, "read_job", counted)
    assert not any(v.runs for v in why.analyse(_prep(spec))) and read == []
    spec.write_text(spec.read_text().replace("cat data/in.txt >", "cat  data/in.txt >"))
    runs = {v.name: v.reasons for v in why.analyse(_prep(spec)) if v.runs}
    assert runs == {"task/a": ("its definition changed",), "task/b": ("upstream will run: a",),
                    "task/c": ("upstream will run: b",)}
    assert read == ["tasks/a"]


def test_a_plan_header_lists_ten_upstream_units_and_counts_the_rest(tmp_path: Path) -> None:
    lines = ["version: 1", "tasks:"] + [f"- {{name: t{i}, command: 'true'}}" for i in range(30)]
    upstream = ", ".join(f"t{i}" for i in range(30))
    lines.append(f"- {{name: gather, command: 'true', depends_on: [{upstream}]}}")
    spec = tmp_path / "spec.yaml"
    spec.write_text("\n".join(lines) + "\n")
    out = jobspec_do("plan", spec, cwd=tmp_path).stdout
    header = next(line for line in out.splitlines() if "task/gather" in line)
    assert header.endswith("(after " + ", ".join(f"task/t{i}" for i in range(10))
                           + " and 20 more)"), header


def test_a_dry_run_names_and_counts_units_not_doits_replica_tasks(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - name: s
          replicas: 3
          command: 'if [ "$JOBSPEC_REPLICA" = 1 ]; then exit 4; fi'
        - {name: other, command: "true"}
        """)
    assert jobspec_do(spec, "-k", cwd=tmp_path).returncode == 1
    dry = jobspec_do(spec, "-n", cwd=tmp_path)
    assert dry.stdout.splitlines() == [
        "would run task/s: replica 1 failed last time (attempt 1, exit 4)",
        "1 of 2 would run; 1 up to date"], dry.stdout
