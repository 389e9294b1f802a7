"""The engine on a real Slurm cluster: examples, failures, resume after kill -9, cancel, and
cron-style non-blocking runs. Submissions are counted from slurmctld's own log."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import counts, jobspec_do, set_record, write
from tests.services import SlurmCluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["hello.yaml", "build-run.yaml", "replicas.yaml",
                                  "fan-out-in.yaml", "groups.yaml"])
def test_example_completes_on_slurm(tmp_path: Path, slurm: SlurmCluster, name: str) -> None:
    shutil.copy(EXAMPLES / name, tmp_path / name)
    before = len(slurm.submitted_job_ids())
    r = jobspec_do(tmp_path / name, "-t", "slurm", cwd=tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr
    again = jobspec_do(tmp_path / name, "-t", "slurm", cwd=tmp_path)
    assert again.returncode == 0 and "0 ran" in again.stderr
    submitted = len(slurm.submitted_job_ids()) - before
    units = {"hello.yaml": 2, "build-run.yaml": 3, "replicas.yaml": 2, "fan-out-in.yaml": 4,
             "groups.yaml": 2}[name]
    assert submitted == units  # replicas: one array; a group: one batch job


def test_timeout_example_on_slurm(tmp_path: Path, slurm: SlurmCluster) -> None:
    shutil.copy(EXAMPLES / "timeout.yaml", tmp_path / "timeout.yaml")
    r = jobspec_do(tmp_path / "timeout.yaml", "-t", "slurm", cwd=tmp_path, timeout=240)
    assert r.returncode == 1
    status = json.loads(jobspec_do("status", tmp_path / "timeout.yaml", "--json",
                                   cwd=tmp_path).stdout)
    assert status["units"][0]["state"] == "timeout"


FAILING = """
    version: 1
    tasks:
    - {name: first, command: "echo x >> count.first"}
    - {name: broken, depends_on: [first], command: "echo x >> count.broken; exit 4"}
    - {name: last, depends_on: [broken], command: "echo x >> count.last"}
    - {name: other, command: "echo x >> count.other"}
    """


@pytest.mark.parametrize("mode", ["wait", "no-wait"])
def test_failure_stops_dependents_then_resume(tmp_path: Path, slurm: SlurmCluster,
                                              mode: str) -> None:
    spec = write(tmp_path, FAILING)
    if mode == "wait":
        r = jobspec_do(spec, "-t", "slurm", "-k", cwd=tmp_path)
    else:
        r = _drive(spec, tmp_path)
    assert r.returncode == 1, r.stderr
    assert "broken" in r.stderr
    assert counts(tmp_path) == {"broken": 1, "first": 1, "other": 1}
    assert not slurm.queue()  # the dependent was cancelled, not left pending forever
    spec.write_text(spec.read_text().replace("; exit 4", ""))
    args = ["--resume"] if mode == "wait" else []
    r = jobspec_do(spec, "-t", "slurm", *args, cwd=tmp_path) if mode == "wait" else \
        _drive(spec, tmp_path)
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path) == {"broken": 2, "first": 1, "last": 1, "other": 1}


def _drive(spec: Path, cwd: Path, limit: float = 120,
           extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Call `--no-wait` like cron would, until the spec is complete or has failed."""
    deadline = time.monotonic() + limit
    while True:
        r = jobspec_do(spec, "-t", "slurm", "--no-wait", *extra, cwd=cwd)
        status = json.loads(jobspec_do("status", spec, "--json", cwd=cwd).stdout)
        if r.returncode != 0 or status["complete"] or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def test_kill_9_while_queued_then_resume_reattaches(tmp_path: Path,
                                                    slurm: SlurmCluster) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: slow-a, command: "sleep 6; echo x >> count.a"}
        - {name: slow-b, command: "sleep 6; echo x >> count.b"}
        - {name: after, depends_on: [slow-a, slow-b], command: "echo x >> count.after"}
        """)
    before = len(slurm.submitted_job_ids())
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-t", "slurm"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(slurm.submitted_job_ids()) - before < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(slurm.submitted_job_ids()) - before == 2 and slurm.queue()
    refused = jobspec_do(spec, "-t", "slurm", cwd=tmp_path)
    assert refused.returncode == 1 and "--resume" in refused.stderr  # never resubmits
    r = jobspec_do(spec, "-t", "slurm", "--resume", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "attached" in r.stderr
    assert len(slurm.submitted_job_ids()) - before == 3  # the two re-attached + `after`
    assert counts(tmp_path) == {"a": 1, "after": 1, "b": 1}


@pytest.mark.parametrize("mode", ["--resume", "--no-wait"])
def test_a_job_whose_id_was_never_recorded_is_found_not_resubmitted(
        tmp_path: Path, slurm: SlurmCluster, mode: str) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "echo x >> count.a"}
        """)
    assert jobspec_do(spec, "-t", "slurm", cwd=tmp_path).returncode == 0
    before = len(slurm.submitted_job_ids())
    # As if killed between sbatch and recording the id:
    set_record(tmp_path / ".jobspec-do/spec/tasks/a", job_id=None, state="submitting",
               exit_code=None, finished=None)
    (tmp_path / ".jobspec-do/spec/tasks/a/done.json").unlink()
    r = jobspec_do(spec, "-t", "slurm", mode, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(slurm.submitted_job_ids()) == before  # found, not submitted again
    assert counts(tmp_path) == {"a": 1}
    status = json.loads(jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)
    assert status["complete"]


def test_cancel_leaves_nothing_in_the_queue(tmp_path: Path, slurm: SlurmCluster) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: long, command: "sleep 60"}
        - {name: later, depends_on: [long], command: "true"}
        """)
    r = jobspec_do(spec, "-t", "slurm", "--no-wait", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(slurm.queue()) == 2  # `later` waits on afterok inside Slurm
    r = jobspec_do("cancel", spec, "-t", "slurm", cwd=tmp_path)
    assert r.returncode == 0 and "canceled long" in r.stdout
    slurm.wait_idle(30)
    assert not slurm.queue()


CRON = """
    version: 1
    tasks:
    - {name: a, command: "sleep 1; echo x >> count.a"}
    - {name: b, command: "sleep 1; echo x >> count.b", depends_on: [a]}
    - {name: c, command: "sleep 1; echo x >> count.c", depends_on: [b]}
    - {name: d, command: "echo x >> count.d", depends_on: [a]}
    - {name: e, command: "echo x >> count.e", depends_on: [c, d]}
    """


def test_cron_drives_a_spec_to_completion_through_kills_and_overlaps(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    spec = write(tmp_path, CRON)
    before = len(slurm.submitted_job_ids())
    deadline = time.monotonic() + 150
    i = 0
    while time.monotonic() < deadline:
        i += 1
        cmd = [sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-t", "slurm", "--cron"]
        if i % 3 == 1:  # killed during an invocation, at a different moment each time
            p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            time.sleep(0.15 * (i % 5))
            p.kill()
            p.wait()
        elif i % 3 == 2:  # two overlapping invocations
            p1 = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
            p2 = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
            for p in (p1, p2):
                p.communicate(timeout=60)
                assert p.returncode == 0  # a held lock is a quiet success under --cron
        else:
            r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        status = json.loads(jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)
        if status["complete"]:
            break
        time.sleep(0.3)
    assert status["complete"], status
    assert counts(tmp_path) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}
    assert len(slurm.submitted_job_ids()) - before == 5  # not one job submitted twice
    quiet = subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-t", "slurm",
                            "--cron"], cwd=tmp_path, capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_edited_task_with_a_queued_job_is_cancelled_and_resubmitted(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: hold, command: "sleep 5"}
        - {name: edited, depends_on: [hold], command: "echo one >> count.edited"}
        """)
    assert jobspec_do(spec, "-t", "slurm", "--no-wait", cwd=tmp_path).returncode == 0
    spec.write_text(spec.read_text().replace("echo one", "echo two"))
    r = jobspec_do(spec, "-t", "slurm", "--no-wait", cwd=tmp_path)
    assert r.returncode == 0 and "cancelled: the task changed" in r.stderr
    r = _drive(spec, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "count.edited").read_text() == "two\n"


def test_a_child_reading_a_siblings_output_starts_after_it(tmp_path: Path,
                                                           slurm: SlurmCluster) -> None:
    """No depends_on: the group script orders its steps by the files they share."""
    from tests.engine.test_flux_e2e import READS_A_SIBLING

    spec = write(tmp_path, READS_A_SIBLING)
    r = jobspec_do(spec, "-t", "slurm", cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "read.txt").read_text() == "made\n"
