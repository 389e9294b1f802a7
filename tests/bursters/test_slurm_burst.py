"""Slurm -> Flux bursting on real systems: the test Slurm cluster kept full by a blocker job,
and a 2-node Flux instance as the target. Executions are counted from the tasks' own lines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.bursters.fluxes import FluxInstance, flux_path
from tests.helpers import history_text, job_record, write


def spec(folder: Path) -> Path:
    return write(folder, f"""
        version: 1
        name: b
        resources:
          one: {{type: core, count: 1}}
        tasks:
        - name: first
          resources: one
          attributes: {{burstable: true}}
          command: "echo first ${{FLUX_URI:-slurm}} >> {folder}/ran.txt"
        - name: second
          resources: one
          depends_on: [first]
          attributes: {{burstable: true}}
          command: "echo second ${{FLUX_URI:-slurm}} >> {folder}/ran.txt"
        """)


def config(folder: Path, target: FluxInstance, after: str = "2s") -> None:
    (folder / "jobspec-do.yaml").write_text(
        f"burst:\n- {{plugin: flux, name: fx, uri: '{target.uri}', after: {after}}}\n")


def jsd(env: dict[str, str], *args: str | Path, timeout: float = 180
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def ran(folder: Path) -> list[tuple[str, str]]:
    try:
        lines = (folder / "ran.txt").read_text().splitlines()
    except FileNotFoundError:
        return []
    return sorted((ln.split()[0], ln.split()[1].rsplit("/", 1)[0]) for ln in lines)


def history(folder: Path, name: str) -> list[str]:
    text = history_text(folder / ".jobspec-do" / "spec" / "tasks" / name)
    return [ln.split(",")[2] for ln in text.splitlines()[1:]]


def block(slurm) -> str:  # type: ignore[no-untyped-def]
    """Fill the cluster's node with a job that sleeps until cancelled."""
    out = slurm.run("sbatch", "--parsable", "--exclusive", "-N1", "--output=/dev/null",
                    "--wrap", "sleep 3600")
    job_id = out.stdout.strip().split(";")[0]
    slurm.wait_job(job_id, states={"RUNNING"})
    return job_id


def env_for(slurm) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {**slurm.env, "PATH": flux_path()}
    env.pop("FLUX_URI", None)
    return env


def test_slurm_primary_full_moves_burstable_tasks_to_flux(tmp_path: Path, slurm,
                                                          flux_target: FluxInstance) -> None:
    block(slurm)
    path = spec(tmp_path)
    config(tmp_path, flux_target)
    out = jsd(env_for(slurm), path, "-t", "slurm")
    assert out.returncode == 0, out.stdout + out.stderr
    home = flux_target.uri.rsplit("/", 1)[0]
    assert ran(tmp_path) == [("first", home), ("second", home)]
    for name in ("first", "second"):
        assert history(tmp_path, name)[:5] == ["submitting", "queued", "moving", "moved",
                                               "queued"]
        record = job_record(tmp_path / ".jobspec-do/spec/tasks" / name)
        primary_id = record["extra"]["burst"]["from"]
        # Slurm took it back before it was given a node.
        assert slurm.job_state(primary_id) == "CANCELLED"
        nodes = slurm.run("squeue", "-t", "all", "-h", "-j", primary_id, "-o", "%N").stdout
        assert nodes.strip() == ""


def test_no_wait_ticks_on_slurm_move_and_follow(tmp_path: Path, slurm,
                                                flux_target: FluxInstance) -> None:
    block(slurm)
    path = spec(tmp_path)
    config(tmp_path, flux_target)
    env = env_for(slurm)
    for _tick in range(90):
        out = jsd(env, path, "-t", "slurm", "--no-wait")
        assert out.returncode == 0, out.stdout + out.stderr
        if "complete: all" in out.stdout + out.stderr:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"not complete after 90 ticks: {out.stdout}{out.stderr}")
    home = flux_target.uri.rsplit("/", 1)[0]
    assert ran(tmp_path) == [("first", home), ("second", home)]
    status = json.loads(jsd(env, "status", path, "--json").stdout)
    assert {u["name"]: u["burst"]["target"] for u in status["units"]} == {"first": "fx",
                                                                           "second": "fx"}


def test_a_request_slurm_can_never_satisfy_goes_straight_to_flux(tmp_path: Path, slurm,
                                                                 flux_target: FluxInstance
                                                                 ) -> None:
    path = write(tmp_path, f"""
        version: 1
        name: b
        resources:
          two-nodes: {{type: node, count: 2}}
        tasks:
        - name: wide
          resources: two-nodes
          attributes: {{burstable: true}}
          command: "echo wide ${{FLUX_URI:-slurm}} >> {tmp_path}/ran.txt"
        - name: narrow-but-wide
          resources: two-nodes
          command: "echo never >> {tmp_path}/ran.txt"
        """)
    config(tmp_path, flux_target, after="1h")
    env = env_for(slurm)
    refused = jsd(env, path, "-t", "slurm")
    # Not burstable: still refused before anything runs, naming the task.
    assert refused.returncode != 0 and "narrow-but-wide" in refused.stderr
    assert "'wide'" not in refused.stderr
    path.write_text(path.read_text().split("- name: narrow-but-wide")[0])
    before = slurm.submitted_job_ids()
    out = jsd(env, path, "-t", "slurm")
    assert out.returncode == 0, out.stdout + out.stderr
    home = flux_target.uri.rsplit("/", 1)[0]
    assert ran(tmp_path) == [("wide", home), ("wide", home)]
    assert slurm.submitted_job_ids() == before  # Slurm was never asked
    assert history(tmp_path, "wide") == ["submitting", "burst", "queued", "completed"]
