"""stage and write steps run as their own doit tasks, incrementally, before their task."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import counts, jobspec_do, write
from tests.services import SSHNodes

STAGED = """
    version: 1
    tasks:
    - name: use
      steps: [{name: stage, path: inputs}]
      command: "cat inputs/a.txt >> count.use"
    """


def _config(tmp_path: Path, nodes: SSHNodes) -> None:
    (tmp_path / "jobspec-do.yaml").write_text(json.dumps({
        "stager": "ssh",
        "nodes": list(nodes.hosts),
        "ssh": {"port": nodes.port, "user": nodes.user, "key_file": str(nodes.key_file),
                "known_hosts": str(nodes.known_hosts),
                "remote_root": str(tmp_path / "remote" / "{host}")},
    }))


def _receipt(tmp_path: Path) -> str:
    return json.loads((tmp_path / ".jobspec-do/spec/tasks/use/step0.json").read_text())["detail"]


def test_stage_step_sends_to_every_node_only_when_content_changed(
        tmp_path: Path, ssh_nodes: SSHNodes) -> None:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.txt").write_text("one\n")
    (tmp_path / "inputs" / "b.txt").write_text("bee\n")
    spec = write(tmp_path, STAGED)
    _config(tmp_path, ssh_nodes)
    r = jobspec_do(spec, "-v", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for host in ssh_nodes.hosts:
        assert (tmp_path / "remote" / host / "inputs" / "a.txt").read_text() == "one\n"
        assert (tmp_path / "remote" / host / "inputs" / "b.txt").read_text() == "bee\n"
    first = _receipt(tmp_path)
    r = jobspec_do(spec, cwd=tmp_path)  # unchanged: the stage task is up to date, no ssh at all
    assert r.returncode == 0 and "0 ran" in r.stderr
    assert _receipt(tmp_path) == first
    (tmp_path / "inputs" / "a.txt").write_text("two\n")
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    detail = _receipt(tmp_path)
    assert detail != first and "1 sent" in detail and "1 unchanged" in detail, detail
    for host in ssh_nodes.hosts:
        assert (tmp_path / "remote" / host / "inputs" / "a.txt").read_text() == "two\n"
    assert counts(tmp_path) == {"use": 2}  # the task re-ran after its stage step


def test_unreachable_node_fails_the_stage_step_and_its_task(
        tmp_path: Path, ssh_nodes: SSHNodes) -> None:
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.txt").write_text("x\n")
    spec = write(tmp_path, STAGED)
    _config(tmp_path, ssh_nodes)
    cfg = json.loads((tmp_path / "jobspec-do.yaml").read_text())
    cfg["nodes"] = [ssh_nodes.hosts[0], "127.0.0.9"]
    cfg["ssh"]["retries"] = 1
    (tmp_path / "jobspec-do.yaml").write_text(json.dumps(cfg))
    r = jobspec_do(spec, cwd=tmp_path, timeout=120)
    assert r.returncode == 1
    assert "127.0.0.9" in r.stderr and counts(tmp_path) == {}


def test_write_steps_write_scripts_before_the_task(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - name: run
          steps:
          - name: write
            path: job.sh
            executable: true
            content: "#!/bin/sh\\necho hi > out.txt\\n"
          command: [./job.sh]
        """)
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert (tmp_path / "job.sh").stat().st_mode & 0o111


def test_legacy_corpus_file_runs_locally(tmp_path: Path) -> None:
    from tests.helpers import REFERENCE

    src = REFERENCE / "corpus" / "legacy-0.0.11" / "hello-world-wait-jobspec.yaml"
    (tmp_path / "legacy.yaml").write_text(src.read_text())
    r = jobspec_do(tmp_path / "legacy.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = next((tmp_path / ".jobspec-do" / "legacy").rglob("stdout.1")).read_text()
    assert out.startswith("hello world from ")


def test_a_transformer_refuses_a_step_it_does_not_support(tmp_path: Path) -> None:
    import pytest

    from dodo_jobspec import plugins
    from dodo_jobspec.engine.run import RunRequest, prepare
    from dodo_jobspec.errors import UnsatisfiableError
    from dodo_jobspec.transformers.local import LocalTransformer

    class NoStaging(LocalTransformer):
        name = "no-staging"
        supported_steps = frozenset({"write"})

    plugins.register(plugins.TRANSFORMERS, "no-staging", NoStaging)
    spec = write(tmp_path, STAGED)
    with pytest.raises(UnsatisfiableError) as info:
        prepare(RunRequest(spec=spec, transformer="no-staging"))
    text = str(info.value)
    assert "cannot run a 'stage' step" in text and "supported steps: write" in text
    assert "tasks[0].steps[0]" in text and "nothing was submitted" in text
    assert not (tmp_path / ".jobspec-do").exists()


def test_a_write_steps_file_is_its_output_missing_or_changed_it_is_written_again(
        tmp_path: Path) -> None:
    """Deleting job.sh left the step up to date, and the task then ran without it."""
    from tests.helpers import jobspec_do, write

    spec = write(tmp_path, """
        version: 1
        resources: [{type: core, count: 1}]
        task:
          command: ["/bin/sh", "job.sh"]
          transform:
          - {step: write, filename: job.sh}
          - {step: submit, filename: job.sh}
          scripts:
          - {name: job.sh, content: "echo hi >> count.x"}
        """, "legacy.yaml")
    job = tmp_path / "job.sh"
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    job.unlink()
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert job.read_text() == "echo hi >> count.x"
    job.write_text("echo edited by hand")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert job.read_text() == "echo hi >> count.x"
    r = jobspec_do(spec, cwd=tmp_path)  # and now all is up to date
    assert "0 ran" in r.stderr or r.stderr.strip().endswith("up to date"), r.stderr
