"""From a resolved spec to units: what `run`, `plan` and `validate` refuse before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec.errors import SpecError
from dodo_jobspec.plan import build
from tests.helpers import jobspec_do, load_text, write

SHARED_OUTPUT = """
    version: 1
    tasks:
    - name: a
      command: "echo a > x.txt"
      outputs: [x.txt]
    - name: b
      command: "echo b > x.txt"
      outputs: [y.txt, x.txt]
    """


def test_two_makers_of_one_file_are_refused_with_line_and_path(tmp_path: Path) -> None:
    spec = load_text(tmp_path, SHARED_OUTPUT)
    with pytest.raises(SpecError) as err:
        build(spec, submits_groups=False)
    (problem,) = err.value.problems
    assert problem.render().startswith(f"{tmp_path / 'spec.yaml'}:8:20: tasks[1].outputs[1]: "
                                       "output 'x.txt' is also an output of task 'a'")
    assert "has one maker" in (problem.hint or "")


def test_one_file_spelled_two_ways_is_still_one_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    spec = load_text(tmp_path, f"""
        version: 1
        tasks:
        - {{name: a, command: "true", outputs: [out.txt]}}
        - {{name: b, command: "true", outputs: [./out.txt]}}
        - {{name: c, command: "true", outputs: [../out.txt], attributes: {{cwd: sub}}}}
        - {{name: d, command: "true", outputs: [sub/../out.txt]}}
        - {{name: e, command: "true", outputs: [{tmp_path}/out.txt]}}
        - {{name: f, command: "true", outputs: [sub/out.txt]}}
        """)
    with pytest.raises(SpecError) as err:
        build(spec, submits_groups=False)
    assert [p.message for p in err.value.problems] == [
        f"output '{o}' is also an output of task 'a'"
        for o in ("./out.txt", "../out.txt", "sub/../out.txt", f"{tmp_path}/out.txt")]


def test_a_missing_input_names_its_line_and_index(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - name: c
          command: "true"
          inputs: [here.txt, nothere.csv]
        """)
    (tmp_path / "here.txt").write_text("")
    with pytest.raises(SpecError) as err:
        build(spec, submits_groups=False)
    (problem,) = err.value.problems
    assert (problem.line, problem.column) == (5, 22)
    assert "tasks[0].inputs[1]: input 'nothere.csv' of task 'c' does not exist" in \
        problem.render()


@pytest.mark.parametrize("command", ["validate", "run", "plan"])
def test_every_command_refuses_what_run_would_refuse(tmp_path: Path, command: str) -> None:
    spec = write(tmp_path, SHARED_OUTPUT)
    args = [spec] if command == "run" else [command, spec]
    r = jobspec_do(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "spec.yaml:8:20: tasks[1].outputs[1]: output 'x.txt' is also an output" in r.stderr
    assert not (tmp_path / "x.txt").exists()  # nothing ran


def test_a_glob_lists_the_folders_it_reads(tmp_path: Path) -> None:
    (tmp_path / "data" / "deep" / ".hidden").mkdir(parents=True)
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: flat, command: "true", inputs: ["data/*.csv"]}
        - {name: deep, command: "true", inputs: ["data/**/*.csv"]}
        - {name: later, command: "true", inputs: ["made/later/*.csv"]}
        """)
    scanned = {pu.node.name: pu.scanned for pu in build(spec, submits_groups=False)}
    data = tmp_path / "data"
    assert scanned["flat"] == (data,)
    assert scanned["deep"] == (data, data / "deep")  # hidden folders are not globbed
    assert scanned["later"] == (tmp_path,)  # the nearest folder that exists lists it


def test_the_maker_of_an_input_comes_first_without_depends_on(tmp_path: Path) -> None:
    """doit already ordered them by file; the plan now says so too, and --no-wait (which
    walks the plan) no longer submits the consumer before its input's maker."""
    text = """
        version: 1
        tasks:
        - {name: consumer, command: "cat x.txt > y.txt", inputs: [x.txt], outputs: [y.txt]}
        - {name: other, command: "true"}
        - {name: producer, command: "echo hi > x.txt", outputs: [x.txt]}
        """
    spec = load_text(tmp_path, text)
    for groups in (False, True):
        plan = build(spec, submits_groups=groups)
        names = [pu.node.name for pu in plan]
        assert names == ["producer", "consumer", "other"]  # the maker moved up, no further
        assert [d.name for d in plan[1].deps] == ["producer"]
    out = jobspec_do("plan", write(tmp_path, text), cwd=tmp_path)
    assert "[RUN ] task/consumer  (after task/producer)" in out.stdout
    assert out.stdout.index("task/producer") < out.stdout.index("task/consumer")


def test_makers_of_files_in_an_input_folder_or_matching_a_glob_come_first(
        tmp_path: Path) -> None:
    """Only exact paths linked a maker to its reader: a folder input whose files another
    task makes was refused as missing, and a glob that would match them ran too early."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: b, command: "cat gen/*.csv > b.out", inputs: ["gen/*.csv"]}
        - {name: c, command: "ls outd > c.out", inputs: [outd]}
        - {name: d, command: "true", inputs: ["other/*.csv"]}
        - name: a
          command: "mkdir -p gen outd && echo 1 > gen/a.csv && echo 2 > outd/x.txt"
          outputs: [gen/a.csv, outd/x.txt]
        """)
    plan = build(load_text(tmp_path, spec.read_text()), submits_groups=False)
    deps = {pu.node.name: [d.name for d in pu.deps] for pu in plan}
    assert deps == {"a": [], "b": ["a"], "c": ["a"], "d": []}
    assert [pu.node.name for pu in plan].index("a") == 0
    r = jobspec_do(spec, "-j", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.out").read_text() == "1\n"
    assert (tmp_path / "c.out").read_text() == "x.txt\n"


def test_a_chain_linked_only_by_files_plans_at_any_depth(tmp_path: Path) -> None:
    """Listed last-first, each task reading the file of the one before: the plan puts them
    in order without recursion (3,000 deep is past Python's limit of 1,000)."""
    n = 3000
    lines = ["version: 1", "tasks:"]
    for i in reversed(range(n)):
        reads = f", inputs: [f{i - 1}.txt]" if i else ""
        lines.append(f"- {{name: t{i}, command: 'true', outputs: [f{i}.txt]{reads}}}")
    spec = write(tmp_path, "\n".join(lines) + "\n")
    plan = build(load_text(tmp_path, spec.read_text()), submits_groups=False)
    assert [pu.node.name for pu in plan] == [f"t{i}" for i in range(n)]
