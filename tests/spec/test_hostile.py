"""Specs written to hurt: alias bombs, loops, huge counts, odd shapes, control characters.
Each gets a problem with its line, never a traceback, a hang or a machine's memory."""

from __future__ import annotations

from pathlib import Path

from dodo_jobspec.cli.app import main
from dodo_jobspec.spec import aliases
from tests.helpers import load_text, problems, write


def _bomb(levels: int) -> str:
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    lines += ["tasks:", "- name: t", '  command: "true"', f"  attributes: {{env: *a{levels - 1}}}"]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_any_schema_work(tmp_path: Path) -> None:
    found = problems(tmp_path, _bomb(9))  # 9^9 leaves from ~500 bytes
    assert len(found) == 1
    p = found[0]
    # The line of the anchor the alias copies (the composed alias node is the anchored one).
    assert "YAML aliases expand this spec" in p.message and p.line == 10
    assert p.path == ("tasks", 0, "attributes", "env")


def test_a_modest_use_of_aliases_is_fine(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        resources:
          one: {type: core, count: 1}
        tasks:
        - name: a
          command: "true"
          attributes: {environment: &env {A: "1", B: "2"}}
        - name: b
          command: "true"
          attributes: {environment: *env}
    """)
    assert spec.find("b")[0].attributes.environment["B"] == "2"


def test_the_expansion_bound_counts_copies_not_what_is_written(tmp_path: Path) -> None:
    text = _bomb(4)  # 9^4 = 6,561 leaves: under the bound (the unknown keys aside)
    assert not any("YAML aliases" in p.message for p in problems(tmp_path, text))
    old = aliases.MAX_EXTRA
    try:
        aliases.MAX_EXTRA = 1000
        assert "YAML aliases expand" in problems(tmp_path, text)[0].message
    finally:
        aliases.MAX_EXTRA = old


def test_a_value_containing_itself_is_refused_at_load(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        version: 1
        attributes: &r {self: *r}
        tasks: [{name: a, command: "true"}]
    """)
    assert "contains itself" in found[0].message
    assert found[0].line == 2 and found[0].path == ("attributes", "self")


def test_replicas_are_bounded_with_a_clear_message(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        version: 1
        tasks:
        - name: a
          command: "true"
          replicas: 100000000
    """)
    assert found[0].path == ("tasks", 0, "replicas") and found[0].line == 5
    assert "too large" in found[0].message and "split the work" in (found[0].hint or "")


def test_a_flat_requires_mapping_on_a_resource_is_read(tmp_path: Path) -> None:
    spec_file = write(tmp_path, """
        version: 1
        resources:
          r: {type: core, count: 1, requires: {field: x}}
        tasks:
        - name: a
          command: "true"
          resources: r
    """)
    assert main(["validate", str(spec_file)]) == 0
    assert main(["plan", str(spec_file)]) == 0


def test_a_control_character_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b'version: 1\ntasks:\n- name: a\n  command: "tr\x01ue"\n')
    from dodo_jobspec import SpecError, load

    try:
        load(path)
    except SpecError as exc:
        p = exc.problems[0]
    else:
        raise AssertionError("loaded")
    assert (p.line, p.column) == (4, 15) and "U+0001" in p.message
