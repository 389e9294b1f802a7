"""The order a group script starts its children in: depends_on, and files one reads that
another writes (shared by the Slurm and Flux group scripts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec.spec.model import Group
from dodo_jobspec.transformers.base import SubmitError
from dodo_jobspec.transformers.order import launch_order
from tests.helpers import load_text


def order(tmp_path: Path, text: str, group: str = "g") -> list[tuple[str, list[str]]]:
    spec = load_text(tmp_path, text)
    g = spec.nodes[f"group/{group}"]
    assert isinstance(g, Group)
    return [(c.name, [d.name for d in deps]) for c, deps in launch_order(g, tmp_path)]


def test_a_reader_starts_after_the_sibling_that_writes_its_input(tmp_path: Path) -> None:
    assert order(tmp_path, """
        version: 1
        groups:
        - name: g
          tasks:
          - {name: exact, command: "cat out/a.txt", inputs: [out/a.txt]}
          - {name: folder, command: "ls out", inputs: [out]}
          - {name: glob, command: "cat out/*.txt", inputs: ["out/*.txt"]}
          - {name: alone, command: "true", inputs: [spec.yaml]}
          - {name: maker, command: "mkdir -p out; echo a > out/a.txt", outputs: [out/a.txt]}
        tasks: [{group: g}]
        """) == [("alone", []), ("maker", []), ("exact", ["maker"]), ("folder", ["maker"]),
                 ("glob", ["maker"])]


def test_paths_are_relative_to_each_tasks_cwd_and_reach_into_nested_groups(
        tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert order(tmp_path, """
        version: 1
        groups:
        - name: g
          tasks:
          - {group: inner}
          - {name: writer, command: "echo x > sub/x", outputs: [sub/x]}
          - {name: other-cwd, command: "cat y", inputs: [y], attributes: {cwd: sub}}
          - {name: y-maker, command: "echo > sub/y", outputs: [sub/y]}
        - name: inner
          tasks:
          - {name: deep, command: "cat x", inputs: [x], attributes: {cwd: sub}}
        tasks: [{group: g}]
        """) == [("writer", []), ("y-maker", []), ("inner", ["writer"]),
                 ("other-cwd", ["y-maker"])]  # what needs no new wait goes first


def test_depends_on_still_orders_and_a_cycle_through_files_is_refused(tmp_path: Path) -> None:
    assert order(tmp_path, """
        version: 1
        groups:
        - name: g
          tasks:
          - {name: b, depends_on: [a], command: "true"}
          - {name: a, command: "true"}
        tasks: [{group: g}]
        """) == [("a", []), ("b", ["a"])]
    with pytest.raises(SubmitError, match="wait for each other"):
        (tmp_path / "cycle").mkdir()
        order(tmp_path / "cycle", """
            version: 1
            groups:
            - name: g
              tasks:
              - {name: a, command: "cp b a", inputs: [b], outputs: [a]}
              - {name: b, command: "cp a b", inputs: [a], outputs: [b]}
            tasks: [{group: g}]
            """)
