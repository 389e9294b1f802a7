"""The resolved model follows the spec's rules: inheritance, defaults, names, groups, deps."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec.spec.model import Group, Task
from dodo_jobspec.spec.resolve import parse_duration
from tests.helpers import load_text, problems

GROUPED = """
    version: 1
    attributes:
      environment: {LEVEL: global, KEEP: g}
    resources:
      big: {type: node, count: 2, with: [{type: slot, count: 2, with: [{type: core, count: 4}]}]}
      small: {type: core, count: 1}
    requires:
      io.archspec: {cpu.target: amd64}
    groups:
    - name: outer
      resources: big
      attributes:
        duration: 1h
        environment: {LEVEL: outer, OUTER: "1"}
      requires:
        io.archspec: {cpu.vendor: intel}
      tasks:
      - name: inherits
        command: [env]
      - name: overrides
        command: "echo $LEVEL"
        resources: small
        attributes:
          duration: 90s
          environment: {LEVEL: task, N: 3, FLAG: true}
        requires:
          io.archspec: {cpu.target: arm64}
      - group: inner
    - name: inner
      tasks:
      - {name: deep, command: [true]}
"""


def test_task_inherits_group_resources_and_may_override(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GROUPED)
    inherits, overrides, deep = (spec.nodes[f"task/{n}"] for n in ("inherits", "overrides",
                                                                    "deep"))
    assert [r.name for r in inherits.resources] == ["big"]
    assert [r.name for r in overrides.resources] == ["small"]
    assert [r.name for r in deep.resources] == ["big"]  # through the nested group


def test_attributes_inherit_with_environment_merged_key_by_key(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GROUPED)
    inherits = spec.nodes["task/inherits"].attributes
    overrides = spec.nodes["task/overrides"].attributes
    assert dict(inherits.environment) == {"LEVEL": "outer", "KEEP": "g", "OUTER": "1"}
    assert dict(overrides.environment) == {"LEVEL": "task", "KEEP": "g", "OUTER": "1", "N": "3",
                                           "FLAG": "true"}
    assert inherits.duration == 3600 and overrides.duration == 90


def test_requires_merge_global_group_task(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GROUPED)
    inherits = spec.nodes["task/inherits"].requires.mapping["io.archspec"]
    overrides = spec.nodes["task/overrides"].requires.mapping["io.archspec"]
    assert dict(inherits) == {"cpu.target": "amd64", "cpu.vendor": "intel"}
    assert dict(overrides) == {"cpu.target": "arm64", "cpu.vendor": "intel"}


def test_nested_group_placement_and_parents(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GROUPED)
    outer, inner = spec.nodes["group/outer"], spec.nodes["group/inner"]
    assert isinstance(outer, Group) and isinstance(inner, Group)
    assert spec.top == (outer,)
    assert [c.name for c in outer.children] == ["inherits", "overrides", "inner"]
    assert inner.parent is outer and spec.nodes["task/deep"].top is outer


def test_counts_flatten_resource_tree(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GROUPED)
    big = spec.nodes["task/inherits"].resources[0].counts
    assert (big.nodes, big.slots, big.cores_per_slot, big.cores) == (2, 4, 4, 16)
    small = spec.nodes["task/overrides"].resources[0].counts
    assert (small.nodes, small.slots, small.cores_per_slot) == (0, 1, 1)


def test_no_slot_means_one_slot_per_node(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        resources:
          r: {type: node, count: 8, with: [{type: gpu, count: 2}, {type: cores, count: 4}]}
        tasks: [{command: [true], resources: r}]
        """)
    c = spec.tasks[0].resources[0].counts
    assert (c.nodes, c.slots, c.cores_per_slot, c.gpus_per_slot) == (8, 8, 4, 2)


def test_inline_resources_and_alternatives_are_kept(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        resources:
          gpu: {type: node, count: 1, with: [{type: gpu, count: 1}]}
          cpu: {type: node, count: 1}
        tasks:
        - {name: alt, command: [true], resources: gpu|cpu}
        - {name: inline, command: [true], resources: {type: core, count: 3}}
        """)
    assert [r.name for r in spec.nodes["task/alt"].resources] == ["gpu", "cpu"]
    inline = spec.nodes["task/inline"].resources
    assert inline[0].name is None and inline[0].counts.cores == 3


def test_standalone_task_without_resources_needs_a_default(tmp_path: Path) -> None:
    text = """
        version: 1
        resources: {r: {type: node, count: 1}}
        tasks: [{name: bare, command: [true]}]
        """
    found = problems(tmp_path, text, default=None)
    assert "has no resources" in found[0].message and "local transformer" in found[0].hint
    spec = load_text(tmp_path, text)  # with the local transformer's default
    assert spec.tasks[0].resources[0].name == "default"


def test_group_without_resources_is_the_sum_of_its_tasks(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        resources: {one: {type: node, count: 1}, two: {type: node, count: 2}}
        groups:
        - name: g
          tasks: [{command: [a], resources: one}, {command: [b], resources: two}]
        """, default=None)
    assert spec.nodes["group/g"].resources[0].counts.nodes == 3


def test_default_names_are_deterministic_and_avoid_collisions(tmp_path: Path) -> None:
    text = """
        version: 1
        tasks:
        - command: [a]
        - {name: task-0, command: [b]}
        groups:
        - tasks: [{command: [c]}]
        """
    names = [sorted(load_text(tmp_path, text).nodes) for _ in range(2)]
    assert names[0] == names[1]
    assert names[0] == ["group/group-0", "task/group-0-task-0", "task/task-0", "task/task-0-2"]


def test_depends_on_resolves_tasks_and_groups_at_any_level(tmp_path: Path) -> None:
    spec = load_text(tmp_path, GROUPED + """
    tasks:
    - {name: after-deep, command: [true], depends_on: [deep]}
    - {name: after-outer, command: [true], depends_on: [outer]}
""")
    assert spec.nodes["task/after-deep"].depends_on == (spec.nodes["task/deep"],)
    assert spec.nodes["task/after-outer"].depends_on == (spec.nodes["group/outer"],)
    order = list(spec.nodes)
    assert order.index("task/deep") < order.index("task/after-deep")
    assert order.index("group/outer") < order.index("task/after-outer")


def test_a_group_and_a_task_may_share_a_name(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        groups:
        - name: train
          tasks: [{name: train, command: [true]}]
        tasks:
        - {name: test, command: [true], depends_on: [train]}
        """)
    assert spec.nodes["task/test"].depends_on == (spec.nodes["group/train"],)


def test_local_tasks_are_barriers_in_order(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        groups:
        - name: svc
          tasks:
          - {name: start, local: true, command: [up]}
          - {name: a, command: [a]}
          - {name: b, command: [b]}
          - {name: stop, local: true, command: [down]}
          - {name: after, command: [c]}
        """)
    after = {n: [d.name for d in spec.nodes[f"task/{n}"].after]
             for n in ("start", "a", "b", "stop", "after")}
    assert after == {"start": [], "a": ["start"], "b": ["start"], "stop": ["start", "a", "b"],
                     "after": ["stop"]}


def test_groups_nest_to_any_depth(tmp_path: Path) -> None:
    depth = 200
    lines = ["version: 1", "resources: {r: {type: node, count: 1}}", "groups:"]
    for i in range(depth):
        lines.append(f"- name: g{i}")
        lines.append("  resources: r" if i == 0 else "")
        inner = f"{{group: g{i + 1}}}" if i + 1 < depth else "{command: [true], name: leaf}"
        lines.append(f"  tasks: [{inner}]")
    spec = load_text(tmp_path, "\n".join(lines))
    leaf = spec.nodes["task/leaf"]
    assert leaf.depth == depth and leaf.top is spec.nodes["group/g0"]
    assert leaf.resources[0].name == "r"


def test_ten_thousand_tasks(tmp_path: Path) -> None:
    lines = ["version: 1", "tasks:"]
    for i in range(10_000):
        lines += [f"- name: t{i}", f"  command: echo {i}"]
        if i:
            lines.append(f"  depends_on: [t{i - 1}]")
    spec = load_text(tmp_path, "\n".join(lines))
    assert len(spec.tasks) == 10_000
    assert list(spec.nodes)[:2] == ["task/t0", "task/t1"]  # a 10,000-deep chain, no recursion


def test_digest_changes_only_with_the_definition(tmp_path: Path) -> None:
    base = """
        version: 1
        tasks:
        - {name: a, command: [echo, one]}
        - {name: b, command: [echo, two], depends_on: [a]}
        """
    first = load_text(tmp_path, base)
    again = load_text(tmp_path, base)
    edited = load_text(tmp_path, base.replace("[echo, one]", "[echo, ONE]"))
    assert first.nodes["task/a"].digest == again.nodes["task/a"].digest
    assert first.nodes["task/a"].digest != edited.nodes["task/a"].digest
    assert first.nodes["task/b"].digest == edited.nodes["task/b"].digest  # upstream-only edit


def test_string_and_list_commands(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: s, command: "echo a | wc -c"}
        - {name: l, command: [echo, 42]}
        """)
    assert spec.nodes["task/s"].command == "echo a | wc -c"
    assert spec.nodes["task/l"].command == ("echo", "42")


def test_named_requires_groups_with_alternatives(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        requires:
          spack-software: [{name: spack, field: type, match: package, value: openssl}]
          module-software: [{name: module, field: type, match: module}]
        tasks: [{command: [true], requires: spack-software|module-software}]
        """)
    groups = spec.tasks[0].requires.groups
    assert [name for name, _ in groups] == ["spack-software", "module-software"]
    assert groups[0][1][0]["value"] == "openssl"


@pytest.mark.parametrize(("text", "seconds"), [
    (300, 300.0), (1.5, 1.5), ("300s", 300.0), ("5m", 300.0), ("1.5h", 5400.0),
    ("2d", 172800.0), ("250ms", 0.25), ("42", 42.0)])
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds  # type: ignore[arg-type]


def test_parse_duration_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_public_api_load(tmp_path: Path) -> None:
    import dodo_jobspec

    (tmp_path / "s.yaml").write_text("version: 1\ntasks: [{command: [true], resources: "
                                     "{type: core, count: 1}}]\n")
    spec = dodo_jobspec.load(tmp_path / "s.yaml")
    assert isinstance(spec.tasks[0], Task) and spec.name == "s"


def test_a_zero_duration_is_refused_at_any_level(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        version: 1
        attributes: {duration: 0s}
        tasks:
        - {name: a, command: "true", attributes: {duration: 0}}
        - {name: b, command: "true", attributes: {duration: 1ms}}
        - {name: c, command: "true", attributes: {duration: .inf}}
        """)
    assert [(p.line, ".".join(map(str, p.path))) for p in found] == [
        (2, "attributes.duration"), (4, "tasks.0.attributes.duration"),
        (6, "tasks.2.attributes.duration")]
    assert [p.message for p in found] == ["a duration of 0 leaves the task no time to run"] * 2 \
        + ["a duration must be a finite time"]
    assert all("remove `duration`" in (p.hint or "") for p in found)


def test_environment_names_a_shell_cannot_take_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, """
        version: 1
        tasks:
        - name: a
          command: "true"
          attributes:
            environment: {"X=Y": "2", "": one, GOOD_1: ok, _also: ok, 9lives: no}
        """)
    assert [p.message for p in found] == [
        "'X=Y' is not an environment variable name", "'' is not an environment variable name",
        "'9lives' is not an environment variable name"]
    assert {p.line for p in found} == {6}


def test_environment_values_keep_the_text_they_were_written_with(tmp_path: Path) -> None:
    """YAML reads 010 as 8, 1.10 as 1.1, yes as true and 12:30 as 750; a variable is text."""
    spec = load_text(tmp_path, """
        version: 1
        attributes:
          environment: {TOP: 1.10}
        resources:
          r: {type: core, count: 1, attributes: {environment: {RES: 2.50}}}
        tasks:
        - name: a
          command: "true"
          attributes:
            environment: {O: 010, F: 1.50, B: yes, S: 12:30, Q: "12:30", N: 7, E: 1e3}
        - {name: b, command: "true", resources: r}
        - name: c
          command: "true"
          resources: {type: core, count: 1, attributes: {environment: {INLINE: 3.0}}}
        """)
    task = spec.nodes["task/a"]
    assert dict(task.attributes.environment) == {
        "TOP": "1.10", "O": "010", "F": "1.50", "B": "yes", "S": "12:30", "Q": "12:30",
        "N": "7", "E": "1e3"}
    assert spec.nodes["task/b"].attributes.environment["RES"] == "2.50"
    assert spec.nodes["task/c"].attributes.environment["INLINE"] == "3.0"
