"""Prove that the test services of ``tests/services.py`` are real and usable.

These run against a real Slurm cluster and real sshd servers (see ``scripts/``).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest

import tests.services
from tests.services import (
    FINAL_JOB_STATES,
    SLURM_SCRIPT,
    SlurmCluster,
    SSHNodes,
    need_service,
)


def _paramiko() -> ModuleType:
    """Import paramiko, or skip (fail under CI=true) when it is not installed."""
    try:
        import paramiko
    except ImportError:
        need_service("paramiko is not installed (pip install paramiko)")
    return paramiko


# --------------------------------------------------------------------------- Slurm


def test_slurm_batch_job_runs_and_is_counted(slurm: SlurmCluster, tmp_path: Path) -> None:
    """A plain ``sbatch`` (inheriting SLURM_CONF from os.environ) runs on the real cluster."""
    before = slurm.submitted_job_ids()
    out_file = tmp_path / "hi.txt"
    proc = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-o",
            str(tmp_path / "slurm-%j.out"),
            "--wrap",
            f"echo hi > {shlex.quote(str(out_file))}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    job_id = int(proc.stdout.strip())

    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "-t", "all", "-j", str(job_id), "-h", "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        if state in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}:
            break
        time.sleep(0.1)
    assert state == "COMPLETED", f"job {job_id} ended as {state!r}\n{slurm.log_tail()}"
    assert out_file.read_text() == "hi\n"

    after = slurm.submitted_job_ids()
    assert after == [*before, job_id], "exactly one submission should reach slurmctld"
    assert slurm.queue() == []


def test_slurm_cancel_all_and_wait_idle(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Running and pending jobs are visible in the queue and go away on cancel_all()."""
    running = int(
        slurm.run("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 300").stdout
    )
    held = int(
        slurm.run("sbatch", "--parsable", "--hold", "-o", "/dev/null", "--wrap", "true").stdout
    )
    assert slurm.wait_job(running, timeout=30, states={"RUNNING"}) == "RUNNING"
    assert slurm.job_state(held) == "PENDING"
    assert set(slurm.queue()) == {str(running), str(held)}

    slurm.cancel_all()
    slurm.wait_idle(timeout=60)
    assert slurm.queue() == []
    assert slurm.job_state(running) == "CANCELLED"
    assert slurm.job_state(held) == "CANCELLED"
    assert slurm.job_state(999_999) is None


def test_slurm_job_left_running_is_cleaned_by_fixture(slurm_cluster: SlurmCluster) -> None:
    """A job a test leaves behind is cancelled by the ``slurm`` fixture's teardown, which
    waits for the queue to empty: the fixture's own generator is driven here, so nothing
    else (such as the next test's setup) can have done it instead."""
    fixture = tests.services.slurm.__wrapped__(slurm_cluster)
    cluster = next(fixture)  # setup
    job = 0
    try:
        job = int(cluster.run("sbatch", "--parsable", "-o", "/dev/null", "--wrap",
                              "sleep 300").stdout)
        assert cluster.wait_job(job, timeout=30, states={"RUNNING"}) == "RUNNING"
        with pytest.raises(StopIteration):
            next(fixture)  # teardown
        assert slurm_cluster.queue() == [], "the fixture's teardown left jobs in the queue"
        assert slurm_cluster.job_state(job) == "CANCELLED"
    finally:
        if job and slurm_cluster.job_state(job) not in FINAL_JOB_STATES:
            slurm_cluster.run("scancel", str(job), check=False)


def test_slurm_status_script(slurm_cluster: SlurmCluster) -> None:
    """``scripts/slurm-cluster.sh status`` reports the running cluster and its idle node."""
    proc = subprocess.run(
        ["bash", str(SLURM_SCRIPT), "status", str(slurm_cluster.dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "idle" in proc.stdout


# --------------------------------------------------------------------------- SSH


def test_ssh_each_host_reports_its_own_address(ssh_nodes: SSHNodes) -> None:
    """Both nodes accept our key under RejectPolicy and are reached at their own address."""
    paramiko = _paramiko()
    assert len(ssh_nodes.hosts) == 2
    for host in ssh_nodes.hosts:
        client = paramiko.SSHClient()
        client.load_host_keys(str(ssh_nodes.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                host,
                port=ssh_nodes.port,
                username=ssh_nodes.user,
                key_filename=str(ssh_nodes.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
            _, stdout, _ = client.exec_command("echo $SSH_CONNECTION; exit 3", timeout=30)
            fields = stdout.read().decode().split()
            status = stdout.channel.recv_exit_status()
        finally:
            client.close()
        assert status == 3
        assert fields[2:] == [host, str(ssh_nodes.port)], fields


def test_ssh_host_missing_from_known_hosts_is_refused(ssh_nodes: SSHNodes, tmp_path: Path) -> None:
    """paramiko with RejectPolicy refuses a node whose key is not in known_hosts."""
    paramiko = _paramiko()
    first, second = ssh_nodes.hosts
    partial = tmp_path / "known_hosts"
    lines = ssh_nodes.known_hosts.read_text().splitlines()
    partial.write_text("".join(f"{line}\n" for line in lines if f"[{second}]" not in line))
    assert f"[{first}]:{ssh_nodes.port}" in partial.read_text()

    client = paramiko.SSHClient()
    client.load_host_keys(str(partial))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
            client.connect(
                second,
                port=ssh_nodes.port,
                username=ssh_nodes.user,
                key_filename=str(ssh_nodes.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
    finally:
        client.close()


def test_ssh_openssh_client_and_exit_code(ssh_nodes: SSHNodes) -> None:
    """The OpenSSH client works with the generated key and known_hosts (strict checking)."""
    proc = subprocess.run(
        [*ssh_nodes.ssh_args(ssh_nodes.hosts[1]), "hostname >/dev/null; exit 42"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 42, proc.stderr


def test_ssh_node_down_and_back(ssh_nodes: SSHNodes) -> None:
    """stop_host() makes a node unreachable; start_host() brings it back, same host key."""
    _paramiko()
    host = ssh_nodes.hosts[1]
    ssh_nodes.stop_host(host)
    try:
        with pytest.raises(OSError):  # NoValidConnectionsError is an OSError
            ssh_nodes.connect(host, timeout=5).close()
        # The other node is unaffected.
        ssh_nodes.connect(ssh_nodes.hosts[0]).close()
    finally:
        ssh_nodes.start_host(host)
    client = ssh_nodes.connect(host)
    try:
        _, stdout, _ = client.exec_command("echo back", timeout=30)
        assert stdout.read().decode().strip() == "back"
    finally:
        client.close()


# --------------------------------------------------------------------------- policy


def test_need_service_skips_outside_ci_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing service skips a test locally but fails it when CI=true."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no daemon"):
        need_service("no daemon")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        need_service("no daemon")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no daemon"):
        need_service("no daemon")
