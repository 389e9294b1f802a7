"""Stage steps of tasks inside a group that Slurm or Flux runs as one job: they run before the
group's job is submitted (a before-the-job stager), incrementally, recorded in the task's own
folder; an in-job stager's scripts go into the group job's prologue (tests/engine/
test_slurm_nodes_e2e.py); what cannot be done is refused before anything runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.helpers import counts, jobspec_do, write
from tests.services import FluxInstance, SlurmCluster, SSHNodes

# `first` runs before the group, so a refusal made once the run is under way would leave it run.
GROUP = """
    version: 1
    resources:
      one: {type: core, count: 1}
    tasks:
    - {name: first, resources: one, command: "echo x >> count.first"}
    groups:
    - name: outer
      resources: one
      depends_on: [first]
      tasks:
      - name: use
        resources: one
        steps: [{name: stage, path: inputs}]
        command: "echo x >> count.use; cat %s > got.txt"
    """


def _inputs(folder: Path, text: str = "one\n") -> None:
    (folder / "inputs").mkdir(exist_ok=True)
    (folder / "inputs" / "a.txt").write_text(text)


def _receipt(folder: Path) -> str:
    path = folder / ".jobspec-do/spec/tasks/use/step0.json"
    return str(json.loads(path.read_text())["detail"])


def test_an_in_job_stager_the_transformer_cannot_run_is_refused_before_anything_runs(
        tmp_path: Path) -> None:
    """Locally a group's tasks are units of their own: before, `first` ran and then `use`
    failed to submit."""
    _inputs(tmp_path)
    spec = write(tmp_path, GROUP % "inputs/a.txt")
    (tmp_path / "jobspec-do.yaml").write_text(json.dumps({"stager": "sbcast",
                                                          "ssh": {"remote_root": "/tmp/x"}}))
    r = jobspec_do(spec, "-t", "local", cwd=tmp_path)
    assert r.returncode == 2  # as any request the transformer cannot meet
    assert "Traceback" not in r.stderr
    assert f"{spec}:13:" in r.stderr, r.stderr  # the stage step's line
    assert "groups[0].tasks[0].steps[0]" in r.stderr
    assert "task 'use'" in r.stderr and "stages inside the job (sbcast stager)" in r.stderr
    assert "-t slurm" in r.stderr and "nothing was submitted" in r.stderr
    assert counts(tmp_path) == {}


def _ssh_config(folder: Path, nodes: SSHNodes) -> None:
    (folder / "jobspec-do.yaml").write_text(json.dumps({
        "stager": "ssh",
        "nodes": list(nodes.hosts),
        "ssh": {"port": nodes.port, "user": nodes.user, "key_file": str(nodes.key_file),
                "known_hosts": str(nodes.known_hosts),
                "remote_root": str(folder / "remote" / "{host}")},
    }))


def test_slurm_group_child_stages_before_the_group_job_and_only_when_changed(
        tmp_path: Path, slurm: SlurmCluster, ssh_nodes: SSHNodes) -> None:
    _inputs(tmp_path)
    read = " ".join(f"remote/{h}/inputs/a.txt" for h in ssh_nodes.hosts)
    spec = write(tmp_path, GROUP % read)
    _ssh_config(tmp_path, ssh_nodes)
    before = len(slurm.submitted_job_ids())
    r = jobspec_do(spec, "-t", "slurm", "-v", cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "use (stage inputs)" in r.stderr
    assert (tmp_path / "got.txt").read_text() == "one\n" * len(ssh_nodes.hosts)
    assert _receipt(tmp_path).count("1 sent") == len(ssh_nodes.hosts)
    assert len(slurm.submitted_job_ids()) - before == 2  # first, and the group as one job
    again = jobspec_do(spec, "-t", "slurm", cwd=tmp_path, timeout=180)
    assert again.returncode == 0 and "0 ran" in again.stderr, again.stderr
    assert len(slurm.submitted_job_ids()) - before == 2
    # The staged file changed: the step sends it again, and the group's job runs again.
    (tmp_path / "inputs" / "a.txt").write_text("two\n")
    changed = jobspec_do(spec, "-t", "slurm", cwd=tmp_path, timeout=180)
    assert changed.returncode == 0, changed.stderr
    assert (tmp_path / "got.txt").read_text() == "two\n" * len(ssh_nodes.hosts)
    assert counts(tmp_path) == {"first": 1, "use": 2}
    assert len(slurm.submitted_job_ids()) - before == 3


def test_flux_group_child_stages_with_flux_archive_before_the_group_job(
        tmp_path: Path, flux: FluxInstance) -> None:
    _inputs(tmp_path)
    # Every broker of the test instance shares this machine's filesystem: the archive is
    # extracted where the file already is, and the task reads it there.
    spec = write(tmp_path, GROUP % "inputs/a.txt")
    (tmp_path / "jobspec-do.yaml").write_text(json.dumps({"stager": "flux-archive"}))
    r = jobspec_do(spec, "-t", "flux", "-v", cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "got.txt").read_text() == "one\n"
    first = (tmp_path / ".jobspec-do/spec/tasks/use/step0.json").stat().st_mtime_ns
    assert "all ranks: 1 sent" in _receipt(tmp_path)
    again = jobspec_do(spec, "-t", "flux", cwd=tmp_path, timeout=180)
    assert again.returncode == 0 and "0 ran" in again.stderr, again.stderr
    (tmp_path / "inputs" / "a.txt").write_text("two\n")
    changed = jobspec_do(spec, "-t", "flux", cwd=tmp_path, timeout=180)
    assert changed.returncode == 0, changed.stderr
    assert (tmp_path / "got.txt").read_text() == "two\n"
    assert counts(tmp_path) == {"first": 1, "use": 2}
    assert (tmp_path / ".jobspec-do/spec/tasks/use/step0.json").stat().st_mtime_ns != first


def test_no_wait_ticks_stage_a_group_jobs_task_before_submitting_the_group(
        tmp_path: Path, flux: FluxInstance) -> None:
    """--no-wait (and --cron) ticks run steps themselves (engine/advance.py), not through
    doit: a group's tasks' steps too."""
    _inputs(tmp_path)
    spec = write(tmp_path, GROUP % "inputs/a.txt")
    (tmp_path / "jobspec-do.yaml").write_text(json.dumps({"stager": "flux-archive"}))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (tmp_path / "got.txt").exists():
        r = jobspec_do(spec, "-t", "flux", "--no-wait", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
    assert (tmp_path / "got.txt").read_text() == "one\n"
    assert "all ranks: 1 sent" in _receipt(tmp_path)


def test_flux_refuses_sbcast_for_a_group_child_before_submitting(
        tmp_path: Path, flux: FluxInstance) -> None:
    """Before, the group was submitted without the prologue Flux cannot run."""
    _inputs(tmp_path)
    spec = write(tmp_path, GROUP % "inputs/a.txt")
    (tmp_path / "jobspec-do.yaml").write_text(json.dumps({"stager": "sbcast",
                                                          "ssh": {"remote_root": "/tmp/x"}}))
    jobs = len(flux.jobs())
    r = jobspec_do(spec, "-t", "flux", cwd=tmp_path, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "groups[0].tasks[0].steps[0]" in r.stderr and "flux transformer" in r.stderr
    assert len(flux.jobs()) == jobs and counts(tmp_path) == {}
