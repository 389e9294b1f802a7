"""Prove that ``scripts/slurm-nodes.sh`` makes real, separate nodes and leaves nothing behind.

The session's 2-node cluster (``slurm_nodes``) is checked for separation; a 3-node cluster of
its own (another /24, port and name prefix, so it can run beside the session's) for start and
stop, and a start that fails half-way for its cleanup.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import (
    SCRIPT_START_TIMEOUT,
    SCRIPT_STOP_TIMEOUT,
    SLURM_NODES_SCRIPT,
    SlurmNodes,
    _preflight,
    _run_script,
)

#: The script tests' own cluster: not the session cluster's 10.231.77 / 6827 / jsdn.
OWN = {"SLURM_NODES_SUBNET": "10.231.78", "SLURM_NODES_PORT": "6837", "SLURM_NODES_TAG": "jsdt"}
OWN_LOCK = "/tmp/jsd-slurm-nodes-script.turn.lock"


def test_each_node_has_its_own_address_hostname_and_tmp(slurm_nodes: SlurmNodes) -> None:
    for node, address in slurm_nodes.addresses.items():
        r = slurm_nodes.on_node(node, "hostname; hostname -I; echo here > /tmp/only-here; "
                                      "ls /tmp")
        assert r.returncode == 0, r.stderr
        name, addresses, *listing = r.stdout.split()
        assert (name, addresses) == (node, address)
        assert "only-here" in listing
        assert (slurm_nodes.node_tmp(node) / "only-here").read_text() == "here\n"
    assert not Path("/tmp/only-here").exists()
    # The cluster's folder is shared: a node sees this machine's copy of it.
    r = slurm_nodes.on_node(slurm_nodes.nodes[-1], f"cat {slurm_nodes.conf}")
    assert r.stdout == slurm_nodes.conf.read_text()


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def _left_behind(cluster: Path, tag: str) -> list[str]:
    """Namespaces, links and processes of a stopped cluster that are still there."""
    left = [f"netns {n}" for n in _netns() if n.startswith(f"{tag}-")]
    left += [f"link {n}" for n in _links() if n.startswith(f"{tag}-")]
    for pid_file in (cluster / "run").glob("*.pid"):
        pid = pid_file.read_text().strip()
        if pid and Path(f"/proc/{pid}").exists() and "Z" not in _stat(pid):
            left.append(f"process {pid} ({pid_file.name})")
    # A node's mounts live in its mount namespace: one still held by any process shows up
    # in that process's mountinfo.
    for mountinfo in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            if str(cluster / "nodes") in mountinfo.read_text():
                left.append(f"mount in {mountinfo}")
        except OSError:
            continue
    return left


def _stat(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@pytest.fixture
def own_dir() -> Iterator[Path]:
    """A folder for the script's own cluster, taking turns with other checkouts' sessions."""
    _preflight(SLURM_NODES_SCRIPT)
    with open(OWN_LOCK, "w") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        path = Path(tempfile.mkdtemp(prefix="jsd-nodes-script-", dir="/tmp"))
        try:
            yield path
        finally:
            _script("stop", path)
            subprocess.run(["rm", "-rf", str(path)], check=False)


def _script(action: str, folder: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    saved = dict(os.environ)
    os.environ.update({**OWN, **(env or {})})
    try:
        timeout = SCRIPT_START_TIMEOUT if action == "start" else SCRIPT_STOP_TIMEOUT
        return _run_script([SLURM_NODES_SCRIPT, action, folder, *args], timeout)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_three_nodes_run_one_job_across_all_and_stop_leaves_nothing(own_dir: Path) -> None:
    started = _script("start", own_dir, "3")
    assert started.returncode == 0, started.stdout
    env = {**os.environ, "SLURM_CONF": str(own_dir / "slurm.conf")}
    out = own_dir / "hosts"
    job = subprocess.run(["sbatch", "--parsable", "--wait", "-N3", "-o", str(out), "--wrap",
                          "srun hostname"], env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert job.returncode == 0, job.stderr
    assert sorted(out.read_text().split()) == ["n1", "n2", "n3"]
    assert {"jsdt-n1", "jsdt-n2", "jsdt-n3"} <= _netns()
    stopped = _script("stop", own_dir)
    assert stopped.returncode == 0, stopped.stdout
    assert _left_behind(own_dir, "jsdt") == []


def test_a_start_that_fails_half_way_removes_what_it_made(own_dir: Path) -> None:
    # A shared path that does not exist: node n1's mount fails after the bridge, the first
    # namespace, its link, munged and slurmctld were made.
    missing = f"/tmp/{own_dir.name}-missing"
    started = _script("start", own_dir, "2", env={"SLURM_NODES_SHARED": missing})
    assert started.returncode == 1
    assert "node n1's namespaces were not set up" in started.stdout
    assert "stopping what was started" in started.stdout
    assert _left_behind(own_dir, "jsdt") == []
    assert (own_dir / "run" / "made").read_text() == ""
