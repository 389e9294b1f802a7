"""The jobspec 0.0.x format: translated into version 1, then resolved like any other spec."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dodo_jobspec.errors import Problem, SpecError, format_path
from dodo_jobspec.spec.legacy import is_legacy, translate
from dodo_jobspec.spec.model import Resource, Spec, Task
from dodo_jobspec.spec.resolve import resolve
from dodo_jobspec.spec.source import parse_document, read_document
from tests.helpers import REFERENCE

LEGACY = REFERENCE / "corpus" / "legacy-0.0.11"
ONE_CORE = Resource("core", 1)

HW = {"hardware": {"hardware.gpu.available": "no"}, "io.archspec": {"cpu.target": "amd64"}}

# file -> resource name, and per task: (name, command, steps, depends_on, watch)
EXPECTED: dict[str, tuple[str, list[tuple[str, tuple[str, ...], list[tuple[str, str, bool]],
                                           list[str], bool]]]] = {
    "examples__flux__jobspec.yaml": ("fractal-descriptive", [
        # Not executable: run by the script's own #! interpreter (bash; /bin/sh may be dash).
        ("install", ("/bin/bash", "install.sh"), [("write", "install.sh", False)], [], False),
        ("job", ("/bin/bash", "job.sh"), [("write", "job.sh", False)], ["install"], False),
    ]),
    "hello-world-batch.yaml": ("hello-world", [
        ("batch", ("./batch.sh",), [("write", "batch.sh", True)], [], False),
    ]),
    # The task's command names job.sh, so the submit of job.sh runs that command.
    "hello-world-jobspec.yaml": ("hello-world", [
        ("job", ("/bin/bash", "job.sh"), [("write", "job.sh", True)], [], False),
    ]),
    "hello-world-wait-jobspec.yaml": ("hello-world", [
        ("job", ("/bin/bash", "job.sh"), [("write", "job.sh", True)], [], False),
    ]),
}


def _load(path: Path) -> Spec:
    return resolve(read_document(path), default_resources=ONE_CORE)


def _spec(tmp_path: Path, text: str) -> Spec:
    path = tmp_path / "legacy.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return _load(path)


def _problems(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        _spec(tmp_path, text)
    return info.value.problems


def test_every_legacy_corpus_file_is_pinned() -> None:
    assert {p.name for p in LEGACY.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_legacy_corpus_file(name: str) -> None:
    resource, tasks = EXPECTED[name]
    spec = _load(LEGACY / name)
    assert [t.name for t in spec.tasks] == [t[0] for t in tasks]
    for task, (tname, command, steps, deps, watch) in zip(spec.tasks, tasks, strict=True):
        assert task.name == tname
        assert task.command == command
        assert [(s.name, s.path, s.executable) for s in task.steps] == steps
        assert all(s.content and s.content.startswith("#!/bin/bash") for s in task.steps)
        assert [d.name for d in task.depends_on] == deps
        assert task.attributes.watch is watch
        assert [r.name for r in task.resources] == [resource]
        counts = task.resources[0].counts
        assert (counts.nodes, counts.slots, counts.cores_per_slot) == (4, 4, 4)
        req = {k: dict(v) for k, v in task.requires.mapping.items()}
        assert {k: req[k] for k in HW} == HW
    if name == "examples__flux__jobspec.yaml":
        assert dict(spec.tasks[0].requires.mapping["software"]) == {"go": "1.20"}


def test_translate_keeps_path_and_text() -> None:
    doc = read_document(LEGACY / "hello-world-jobspec.yaml")
    assert is_legacy(doc.data)
    new = translate(doc)
    assert (new.path, new.text) == (doc.path, doc.text)
    assert new.data["version"] == 1 and "task" not in new.data
    assert not is_legacy(new.data)
    assert new.data["tasks"][0]["steps"][0]["path"] == "job.sh"  # relative: staging directory


def test_wait_watch_stage_and_batch(tmp_path: Path) -> None:
    spec = _spec(tmp_path, """
        version: 1
        resources:
        - type: slot
          label: work
          with:
          - {type: core, count: 2}
        task:
          transform:
          - {step: write, filename: install.sh, executable: true}
          - {step: stage, filename: install.sh}
          - {step: submit, filename: install.sh, wait: true}
          - {step: write, filename: job.sh}
          - {step: stage, filename: data}
          - {step: submit, filename: job.sh, watch: true}
          - {step: write, filename: batch.sh, executable: true}
          - {step: batch, filename: batch.sh, watch: true, wait: true}
          - {step: submit, filename: job.sh}
          scripts:
          - {name: install.sh, content: "#!/bin/sh\\necho install\\n"}
          - {name: job.sh, content: "echo job\\n"}
          - {name: batch.sh, content: "#!/bin/bash\\necho batch\\n"}
          count: {per_slot: 1}
    """)
    by = {t.name: t for t in spec.tasks}
    assert list(by) == ["install", "job", "batch", "job-2"]
    assert by["install"].command == ("./install.sh",)
    assert [(s.name, s.path) for s in by["install"].steps] == [("write", "install.sh"),
                                                               ("stage", "install.sh")]
    assert by["job"].command == ("/bin/sh", "job.sh")
    assert [(s.name, s.path) for s in by["job"].steps] == [("write", "job.sh"),
                                                           ("stage", "data")]
    assert by["job"].attributes.watch and by["batch"].attributes.watch
    assert not by["install"].attributes.watch
    assert [d.name for d in by["job"].depends_on] == ["install"]
    assert [d.name for d in by["batch"].depends_on] == ["install"]
    assert [d.name for d in by["job-2"].depends_on] == ["install", "batch"]
    # A later submit of an earlier file carries that file's write step with it.
    assert [(s.name, s.path) for s in by["job-2"].steps] == [("write", "job.sh")]
    assert by["install"].resources[0].name == "work"


def test_a_command_naming_no_file_runs_in_every_submit(tmp_path: Path) -> None:
    spec = _spec(tmp_path, """
        version: 1
        task:
          command: [hostname]
          transform:
          - {step: write, filename: a.sh}
          - {step: submit, filename: a.sh}
          - {step: submit, filename: a.sh}
          scripts: [{name: a.sh, content: "true"}]
    """)
    assert [t.command for t in spec.tasks] == [("hostname",), ("hostname",)]
    assert [r.name for r in spec.tasks[0].resources] == ["default"]  # no resources: default


def test_trailing_steps_and_no_transform(tmp_path: Path) -> None:
    spec = _spec(tmp_path, """
        version: 1
        task:
          transform:
          - {step: write, filename: notes.txt}
          scripts: [{name: notes.txt, content: "x"}]
    """)
    (only,) = spec.tasks
    assert isinstance(only, Task) and only.command is None
    assert [(s.name, s.path) for s in only.steps] == [("write", "notes.txt")]
    spec = _spec(tmp_path, """
        version: 1
        task:
          command: [echo, hi]
          scripts: []
    """)
    assert [t.command for t in spec.tasks] == [("echo", "hi")]


def test_auth_is_refused_by_name_with_the_supported_steps(tmp_path: Path) -> None:
    (p,) = _problems(tmp_path, """
        version: 1
        task:
          transform:
          - {step: write, filename: job.sh}
          - step: auth
          - {step: submit, filename: job.sh}
          scripts: [{name: job.sh, content: "true"}]
    """)
    assert p.message == "unsupported transform step 'auth'"
    assert format_path(p.path) == "task.transform[1].step"
    assert p.line == 5 and p.file and p.file.endswith("legacy.yaml")
    assert p.hint and "supported steps: write, stage, submit, batch" in p.hint


def test_other_unknown_steps_and_keys(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """
        version: 1
        task:
          transform:
          - {step: sumbit, filename: job.sh}
          - {step: copy, filename: job.sh}
          - {step: write, filename: job.sh, mode: 755}
          - {step: write, filename: nope.sh}
          scripts: [{name: job.sh, content: "true"}]
          count: {per_slot: 1, total: 4}
    """)
    by = {format_path(p.path): p for p in problems}
    assert by["task.transform[0].step"].hint.startswith("did you mean 'submit'?")
    assert "unsupported transform step 'copy'" in by["task.transform[1].step"].message
    assert "unknown key 'mode'" in by["task.transform[2].mode"].message
    assert "no script named 'nope.sh'" in by["task.transform[3].filename"].message
    assert "`count.total` is not supported" in by["task.count.total"].message


@pytest.mark.parametrize(("filename", "why"), [
    ("../job.sh", "escapes the staging directory"),
    ("sub/../../job.sh", "escapes the staging directory"),
    ("/etc/job.sh", "is absolute"),
])
def test_paths_outside_the_staging_directory_are_refused(tmp_path: Path, filename: str,
                                                         why: str) -> None:
    for kind in ("write", "stage"):
        problems = _problems(tmp_path, f"""
            version: 1
            task:
              transform:
              - {{step: {kind}, filename: "{filename}"}}
              - {{step: submit, filename: job.sh}}
              scripts: [{{name: "{filename}", content: "true"}}]
        """)
        (p,) = [p for p in problems if format_path(p.path) == "task.transform[0].filename"]
        assert why in p.message and filename in p.message


def test_a_symlink_out_of_the_staging_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "out").symlink_to(outside)
    path = spec_dir / "legacy.yaml"
    path.write_text(textwrap.dedent("""
        version: 1
        task:
          transform:
          - {step: stage, filename: out/data.txt}
          - {step: submit, filename: job.sh}
    """).lstrip())
    with pytest.raises(SpecError) as info:
        _load(path)
    (p,) = info.value.problems
    assert format_path(p.path) == "task.transform[0].filename"
    assert "a symlink leads outside" in p.message


def test_resource_problems_name_legacy_paths(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """
        version: 1
        resources:
        - type: node
          count: {min: 1, max: 4}
        task:
          slot: missing
          command: [true]
    """)
    assert [format_path(p.path) for p in problems] == ["resources[0].count"]
    problems = _problems(tmp_path, """
        version: 1
        resources:
        - type: node
          with: [{type: slot, label: a, with: [{type: core}]}]
        task:
          slot: b
          command: [true]
          resources: {hardware: {deep: {too: deep}}}
    """)
    assert {format_path(p.path) for p in problems} == {"task.slot",
                                                       "task.resources.hardware.deep"}


def test_version_2_hierarchy_is_still_refused() -> None:
    doc = parse_document(b"version: 2\nentrypoint: x\ngroups: []\n", "h.yaml")
    with pytest.raises(SpecError, match="Flux hierarchy config"):
        resolve(doc, default_resources=ONE_CORE)
