"""Every kind of bad input gets a clear error: file, line, spec path, what is wrong, the fix."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from dodo_jobspec.spec.validate import is_valid, load_schema
from tests.helpers import ONE_CORE, load_text, problems, write

# (spec, line, path, message fragment, hint fragment)
CASES = {
    "typo-in-attribute": ("""
        version: 1
        tasks:
        - name: build
          command: [make]
          attributes:
            envirionment: {CC: gcc}
        """, 6, "tasks[0].attributes.envirionment", "unknown attribute", "'environment'"),
    "typo-in-resource-ref": ("""
        version: 1
        resources:
          spack-resources: {type: node, count: 1}
        tasks:
        - command: [spack, install, zlib]
          resources: spack-resourcs
        """, 6, "tasks[0].resources", "unknown resource 'spack-resourcs'",
        "'spack-resources'"),
    "typo-in-depends-on": ("""
        version: 1
        tasks:
        - name: build
          command: make
        - name: run
          command: ./run
          depends_on: [biuld]
        """, 7, "tasks[1].depends_on[0]", "unknown task or group 'biuld'", "'build'"),
    "unknown-task-key": ("""
        version: 1
        tasks:
        - name: a
          comand: [true]
        """, 4, "tasks[0].comand", "unknown key 'comand'", "'command'"),
    "attribute-key-too-high": ("""
        version: 1
        tasks:
        - name: a
          command: [true]
          duration: 5m
        """, 5, "tasks[0].duration", "unknown key 'duration'", "under 'attributes:'"),
    "command-indented-under-resources": ("""
        version: 1
        tasks:
        - name: a
          resources:
            type: node
            count: 1
            command: [true]
        """, 7, "tasks[0].resources.command", "unknown key 'command'", "indented under"),
    "wrong-type-count": ("""
        version: 1
        resources:
          r: {type: node, count: two}
        tasks:
        - {command: [true], resources: r}
        """, 3, "resources.r.count", "expected a whole number", None),
    "depends-on-not-a-list": ("""
        version: 1
        tasks:
        - {name: a, command: [true]}
        - {name: b, command: [true], depends_on: a}
        """, 4, "tasks[1].depends_on", "expected a list", "depends_on: [a]"),
    "bad-duration": ("""
        version: 1
        tasks:
        - command: [true]
          attributes: {duration: soon}
        """, 4, "tasks[0].attributes.duration", "not a duration", None),
    "missing-command": ("""
        version: 1
        tasks:
        - name: lonely
        """, 3, "tasks[0]", "has no command", "command:"),
    "duplicate-task-names": ("""
        version: 1
        tasks:
        - {name: a, command: [true]}
        - {name: a, command: [false]}
        """, 4, "tasks[1].name", "duplicate task name 'a'", None),
    "unknown-group": ("""
        version: 1
        groups:
        - {name: train, tasks: [{command: [true]}]}
        tasks:
        - group: trian
        """, 5, "tasks[0].group", "unknown group 'trian'", "'train'"),
    "group-used-twice": ("""
        version: 1
        groups:
        - {name: g, tasks: [{command: [true]}]}
        tasks:
        - group: g
        - group: g
        """, 6, "tasks[1].group", "group 'g' is used twice", None),
    "cycle": ("""
        version: 1
        tasks:
        - {name: a, command: [true], depends_on: [c]}
        - {name: b, command: [true], depends_on: [a]}
        - {name: c, command: [true], depends_on: [b]}
        """, 3, "tasks[0]", "dependency cycle: a -> c -> b -> a", None),
    "self-dependency": ("""
        version: 1
        tasks:
        - {name: a, command: [true], depends_on: [a]}
        """, 3, "tasks[0].depends_on[0]", "depends on itself", None),
    "group-contains-itself": ("""
        version: 1
        groups:
        - name: outer
          tasks: [{group: inner}]
        - name: inner
          tasks: [{group: outer}]
        """, None, None, "contains itself", None),
    "version-2": ("""
        version: 3
        tasks: [{command: [true]}]
        """, 1, "version", "not allowed here", "version 1"),
    "unknown-step": ("""
        version: 1
        tasks:
        - command: [true]
          steps: [{name: stgae, path: x}]
        """, 4, "tasks[0].steps[0].name", "not allowed here", "'stage'"),
    "stage-without-path": ("""
        version: 1
        tasks:
        - command: [true]
          steps: [{name: stage}]
        """, 4, "tasks[0].steps[0]", "needs a path", None),
    "resource-without-type": ("""
        version: 1
        resources:
          r: {count: 2}
        tasks: [{command: [true], resources: r}]
        """, 3, "resources.r", "missing required key 'type'", "node, slot"),
    "with-as-mapping": ("""
        version: 1
        resources:
          r:
            type: node
            with: {type: core, count: 2}
        tasks: [{command: [true], resources: r}]
        """, 5, "resources.r.with", "expected a list", "'- '"),
    "group-ref-with-command": ("""
        version: 1
        groups: [{name: g, tasks: [{command: [true]}]}]
        tasks:
        - group: g
          command: [echo]
        """, 5, "tasks[0].command", "cannot also set command", "only depends_on"),
    "unknown-requires-group": ("""
        version: 1
        requires:
          spack-software: [{name: spack, field: type, match: package}]
        tasks:
        - {command: [true], requires: spack-sofware}
        """, 5, "tasks[0].requires", "unknown requires group 'spack-sofware'",
        "'spack-software'"),
    "ambiguous-dependency": ("""
        version: 1
        groups:
        - name: train
          tasks: [{name: train, command: [true]}]
        - name: other
          tasks:
          - {name: x, command: [true], depends_on: [train]}
        """, 7, "depends_on[0]", "names both a task and a group", "rename"),
    "depends-on-own-group": ("""
        version: 1
        groups:
        - name: g
          tasks:
          - {name: x, command: [true], depends_on: [g]}
        """, 5, "depends_on[0]", "its own group 'g'", None),
    # Abbreviations that difflib scores too low: the prefix match must still name the key.
    "attribute-abbreviated": ("""
        version: 1
        tasks:
        - name: build
          command: [make]
          attributes:
            env: {A: "1"}
        """, 6, "tasks[0].attributes.env", "unknown attribute 'env'",
        "did you mean 'environment'?"),
    "group-attribute-abbreviated": ("""
        version: 1
        groups:
        - name: g
          attributes: {dur: 5m}
          tasks: [{name: t, command: [true]}]
        """, 4, "groups[0].attributes.dur", "unknown attribute 'dur'",
        "did you mean 'duration'?"),
    "top-level-key-abbreviated": ("""
        version: 1
        attr: {duration: 5m}
        tasks: [{command: [true]}]
        """, 2, "attr", "unknown key 'attr'", "did you mean 'attributes'?"),
    "task-key-abbreviated": ("""
        version: 1
        tasks:
        - {name: a, command: [true]}
        - name: b
          command: [true]
          dep: [a]
        """, 6, "tasks[1].dep", "unknown key 'dep'", "did you mean 'depends_on'?"),
    "not-a-mapping": ("""
        - version: 1
        """, 1, "", "is a list, but a spec must be a mapping", None),
    "yaml-syntax-misindented-with": ("""
        version: 1
        resources:
          r:
            type: node
            with:
            - count: 1
              type: slot
               with: []
        tasks: [{command: [true], resources: r}]
        """, 8, "", "YAML syntax error", "indent"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_error_names_line_path_and_fix(tmp_path: Path, name: str) -> None:
    text, line, path, message, hint = CASES[name]
    found = problems(tmp_path, text)
    match = [p for p in found if message in p.message]
    assert match, f"no problem mentions {message!r}: {[p.render() for p in found]}"
    p = match[0]
    assert p.file and p.file.endswith("spec.yaml")
    if line is not None:
        assert p.line == line, p.render()
    if path:
        assert path in p.render(), p.render()
    if hint:
        assert p.hint and hint in p.hint, p.render()


def test_all_problems_reported_in_one_run(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        version: 1
        resources:
          spack-resources: {type: node, count: 1}
        tasks:
        - name: build
          command: [make]
          attributes: {envirionment: {A: "1"}}
        - name: run
          command: ./run
          depends_on: [biuld]
          resources: spack-resourcs
        """)
    messages = " | ".join(p.message for p in found)
    assert "envirionment" in messages and "biuld" in messages and "spack-resourcs" in messages


def test_abbreviated_names_render_file_line_column_path_and_full_name(tmp_path: Path) -> None:
    """A name that is a prefix of a known one is a typo, found only by the prefix rule."""
    spec = write(tmp_path, """
        version: 1
        attr: {duration: 5m}
        tasks:
        - name: build
          command: [make]
          dep: []
          attributes: {env: {A: "1"}, account: proj}
        """)
    from dodo_jobspec import SpecError, load

    with pytest.raises(SpecError) as info:
        load(spec, default_resources=ONE_CORE)
    assert [p.render() for p in info.value.problems] == [
        f"{spec}:2:1: attr: unknown key 'attr'\n    hint: did you mean 'attributes'?",
        f"{spec}:6:3: tasks[0].dep: unknown key 'dep'\n    hint: did you mean 'depends_on'?",
        f"{spec}:7:16: tasks[0].attributes.env: unknown attribute 'env'\n"
        "    hint: did you mean 'environment'?"]


def test_scheduler_flags_in_attributes_are_not_typos(tmp_path: Path) -> None:
    """Attributes that are near no known name pass through to the scheduler untouched."""
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [true], attributes: {account: proj, qos: high, exclusive: true}}
        """)
    assert spec.nodes["task/a"].attributes.extra == {
        "account": "proj", "qos": "high", "exclusive": True}


def test_schema_and_semantic_problems_together(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: [true], replicas: 0}
        - {name: b, command: [true], depends_on: [zzz]}
        """)
    messages = " | ".join(p.message for p in found)
    assert "too small" in messages and "unknown task or group 'zzz'" in messages


def test_binary_file(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50)
    from dodo_jobspec import SpecError, load

    with pytest.raises(SpecError, match="binary file"):
        load(tmp_path / "spec.yaml")


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_bytes(b"version: 1\ntasks:\n- command: [caf\xe9]\n")
    from dodo_jobspec import SpecError, load

    with pytest.raises(SpecError) as info:
        load(tmp_path / "spec.yaml")
    assert info.value.problems[0].line == 3 and "UTF-8" in info.value.problems[0].message


_EMPTY = ("the file is empty", "a spec needs at least `version: 1` and some `tasks:`")


@pytest.mark.parametrize(("content", "expected"), [
    ("", _EMPTY),
    ("   \n\n", _EMPTY),
    # YAML reads a file of comments as no document at all (None), not as an empty file.
    ("# only a comment\n", ("the file holds only comments, no spec", _EMPTY[1])),
    ("just words\n", ("the document is a string, but a spec must be a mapping",
                      "start the file with `version: 1` at the left margin")),
    ("- version: 1\n", ("the document is a list, but a spec must be a mapping",
                        "start the file with `version: 1` at the left margin")),
], ids=["empty", "blank-lines", "only-a-comment", "a-string", "a-list"])
def test_empty_file(tmp_path: Path, content: str, expected: tuple[str, str]) -> None:
    found = _load_problems(tmp_path, content)
    assert [(p.message, p.hint, p.line) for p in found] == [(*expected, 1)], \
        [p.render() for p in found]
    assert found[0].file and found[0].file.endswith("spec.yaml")


def _load_problems(tmp_path: Path, content: str) -> list:
    from dodo_jobspec import SpecError, load

    (tmp_path / "spec.yaml").write_text(content)
    with pytest.raises(SpecError) as info:
        load(tmp_path / "spec.yaml")
    return info.value.problems


def test_truncated_file(tmp_path: Path) -> None:
    found = _load_problems(tmp_path, 'version: 1\ntasks:\n- name: a\n  command: [x, "y')
    assert found[0].line == 4 and "YAML syntax error" in found[0].message


def test_missing_file(tmp_path: Path) -> None:
    from dodo_jobspec import SpecError, load

    with pytest.raises(SpecError, match="file not found"):
        load(tmp_path / "nope.yaml")


def test_five_megabyte_file_of_garbage_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("x" * (5 * 1024 * 1024))
    found = _load_problems(tmp_path, (tmp_path / "spec.yaml").read_text())
    assert "must be a mapping" in found[0].message


def test_five_megabyte_valid_spec_loads(tmp_path: Path) -> None:
    long = "echo " + "a" * 500
    lines = ["version: 1", "tasks:"]
    while sum(len(x) for x in lines) < 5 * 1024 * 1024:
        i = len(lines)
        lines += [f"- name: t{i}", f"  command: {long}"]
    from dodo_jobspec import load

    spec = load(write(tmp_path, "\n".join(lines) + "\n"), default_resources=None or
                __import__("tests.helpers", fromlist=["ONE_CORE"]).ONE_CORE)
    assert len(spec.tasks) > 9000


def _parsed_spec_files() -> list[Path]:
    root = Path(__file__).resolve().parents[2]
    out = []
    for path in sorted((root / "tests" / "specs").rglob("*.yaml")) + sorted(
            (root / "examples").glob("*.yaml")):
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue  # a file with a YAML syntax error has no data to compare
        out.append(path)
    return out


@pytest.mark.parametrize("path", _parsed_spec_files(), ids=lambda p: p.name)
def test_fast_validator_agrees_with_jsonschema(path: Path) -> None:
    """The compiled fast path must accept exactly what jsonschema accepts."""
    data = yaml.safe_load(path.read_text())
    for strict in (False, True):
        full = jsonschema.Draft202012Validator(load_schema(strict)).is_valid(data)
        assert is_valid(data, strict) == full, (path, strict)


def test_schema_is_valid_json_schema() -> None:
    for strict in (False, True):
        jsonschema.Draft202012Validator.check_schema(load_schema(strict))
    assert json.dumps(load_schema())  # serialisable for `jobspec-do schema`


@pytest.mark.parametrize("quote", ['"', "'"])
def test_an_unclosed_quote_is_reported_where_it_opens(tmp_path: Path, quote: str) -> None:
    """PyYAML notices at the end of the file; the fix is where the quote opened."""
    found = _load_problems(tmp_path, f"version: 1\ntasks:\n- name: a\n  command: {quote}echo hi\n"
                                     "- name: b\n  command: [true]\n")
    assert [(p.line, p.column) for p in found] == [(4, 12)]
    assert "a quoted string that starts here is never closed" in found[0].message
    assert found[0].hint == "close the quote on the same line, or escape a quote inside it"


def test_an_empty_list_item_is_not_called_a_key(tmp_path: Path) -> None:
    found = _load_problems(tmp_path, "version: 1\ntasks:\n- name: a\n  command: [echo, ~]\n")
    found = [p for p in found if "resources" not in (p.hint or "")]  # none given here
    assert [(p.line, p.hint) for p in found] == [
        (4, "a list item with no value (a lone `-`, or `~`); remove it or give it one")]


def test_a_date_where_text_belongs_says_to_quote_it(tmp_path: Path) -> None:
    found = _load_problems(tmp_path, "version: 1\ntasks:\n- name: a\n  command: [x]\n"
                                     "  attributes:\n    environment: {D: 2024-01-01}\n")
    found = [p for p in found if "resources" not in (p.hint or "")]  # none given here
    assert [(p.line, p.hint) for p in found] == [(6, 'quote it to keep it as text: "2024-01-01"')]
    assert "got a date (2024-01-01" in found[0].message


def test_every_cycle_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    """`'d' depends on itself` used to hide the cycle a -> c -> b -> a of the same file, and
    one cycle any other."""
    found = problems(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "true", depends_on: [c]}
        - {name: b, command: "true", depends_on: [a]}
        - {name: c, command: "true", depends_on: [b]}
        - {name: d, command: "true", depends_on: [d]}
        - {name: e, command: "true", depends_on: [f]}
        - {name: f, command: "true", depends_on: [e]}
        """)
    messages = [p.message for p in found]
    assert messages == ["dependency cycle: a -> c -> b -> a (each waits for the next)",
                        "'d' depends on itself",
                        "dependency cycle: e -> f -> e (each waits for the next)"], messages


@pytest.mark.parametrize("line", ["  resources: on", "  name: yes"])
def test_a_yaml_boolean_gets_a_hint_to_quote_it(tmp_path: Path, line: str) -> None:
    found = problems(tmp_path, f"""
        version: 1
        tasks:
        - command: "true"
        {line}
        """)
    assert len(found) == 1, found
    assert found[0].message.endswith("got true") and found[0].line == 4
    assert found[0].hint is not None and "quote it" in found[0].hint
    assert "YAML reads unquoted yes, no, on, off, true and false as booleans" in found[0].hint


def test_strict_on_a_legacy_file_points_at_its_own_task_line(tmp_path: Path) -> None:
    """It named paths of the translation (tasks[0].steps[0]...) at line 2:1."""
    from dodo_jobspec import SpecError, load

    spec = write(tmp_path, """
        version: 1
        resources: [{type: core, count: 1}]
        task:
          command: ["/bin/sh", "job.sh"]
          transform:
          - {step: write, filename: job.sh}
          scripts:
          - {name: job.sh, content: "echo hi"}
        """)
    with pytest.raises(SpecError) as raised:
        load(spec, default_resources=ONE_CORE, strict=True)
    (problem,) = raised.value.problems
    assert (problem.line, problem.column, problem.path) == (3, 1, ("task",))
    assert "older 0.0.x jobspec" in problem.message and "drop --strict" in (problem.hint or "")
