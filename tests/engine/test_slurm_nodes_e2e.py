"""The engine on a real 2-node Slurm cluster whose nodes each have their own /tmp.

Every node (``n1``, ``n2``) is a network namespace with its own address, hostname, ``/tmp``,
slurmd and sshd (``scripts/slurm-nodes.sh``). Spec folders live in the cluster's shared folder;
anything under a node's ``/tmp`` is on that node only, so a task that reads a staged file there
proves that the file reached the node it runs on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import counts, jobspec_do, write
from tests.services import SlurmNodes

_SLOT = "with: [{type: slot, count: 1, with: [{type: core, count: %d}]}]"
TWO_NODES = "{type: node, count: 2, %s}" % (_SLOT % 1)
# A whole node (each advertises 4 CPUs): two such steps or array elements never share one.
WHOLE_NODE = "{type: node, count: 1, %s}" % (_SLOT % 4)


@pytest.fixture
def folder(slurm_nodes: SlurmNodes, request: pytest.FixtureRequest) -> Path:
    """A fresh folder for the test's spec that every node sees at the same path."""
    path = slurm_nodes.shared / request.node.name.replace("[", "-").replace("]", "")
    path.mkdir()
    return path


def _run(spec: Path, cluster: SlurmNodes, *args: str, timeout: float = 180
         ) -> subprocess.CompletedProcess[str]:
    return jobspec_do(spec, "-t", "slurm", *args, cwd=spec.parent, timeout=timeout,
                      env={"SLURM_CONF": str(cluster.conf)})


def _status(spec: Path, cluster: SlurmNodes) -> dict[str, dict[str, object]]:
    out = jobspec_do("status", spec, "--json", cwd=spec.parent,
                     env={"SLURM_CONF": str(cluster.conf)}).stdout
    return {u["name"]: u for u in json.loads(out)["units"]}


STAGED = f"""
    version: 1
    resources:
      two: {TWO_NODES}
    tasks:
    - name: read
      resources: two
      steps: [{{name: stage, path: inputs}}]
      command: "echo x >> count.read.$(hostname); cat {{remote}}/inputs/*.txt > read.$(hostname)"
    """


def _ssh_config(folder: Path, cluster: SlurmNodes, remote: str) -> None:
    (folder / "jobspec-do.yaml").write_text(json.dumps({
        "stager": "ssh",
        "nodes": [cluster.addresses[n] for n in cluster.nodes],
        "ssh": {"user": "root", "key_file": str(cluster.key_file),
                "known_hosts": str(cluster.known_hosts), "remote_root": remote}}))


def test_ssh_stage_reaches_each_node_local_tmp_and_a_two_node_task_reads_it(
        slurm_nodes: SlurmNodes, folder: Path) -> None:
    remote = f"/tmp/{folder.name}"
    (folder / "inputs").mkdir()
    (folder / "inputs" / "a.txt").write_text("alpha\n")
    (folder / "inputs" / "b.txt").write_text("beta\n")
    spec = write(folder, STAGED.replace("{remote}", remote))
    _ssh_config(folder, slurm_nodes, remote)
    r = _run(spec, slurm_nodes)
    assert r.returncode == 0, r.stderr
    # Each node read the files from its own /tmp; this machine's /tmp never had them.
    assert not Path(remote).exists()
    for node in slurm_nodes.nodes:
        assert (slurm_nodes.node_tmp(node) / folder.name / "inputs" / "a.txt").is_file()
        assert (folder / f"read.{node}").read_text() == "alpha\nbeta\n"
    assert counts(folder) == {f"read.{n}": 1 for n in slurm_nodes.nodes}
    receipt = folder / ".jobspec-do/spec/tasks/read/step0.json"
    first = receipt.read_text()
    assert all(f"{slurm_nodes.addresses[n]}: 2 sent" in first for n in slurm_nodes.nodes), first
    jobs = len(slurm_nodes.submitted_job_ids())
    again = _run(spec, slurm_nodes)
    assert again.returncode == 0 and "0 ran" in again.stderr, again.stderr
    assert receipt.read_text() == first  # nothing sent
    assert len(slurm_nodes.submitted_job_ids()) == jobs  # nothing run
    assert counts(folder) == {f"read.{n}": 1 for n in slurm_nodes.nodes}


GROUP = f"""
    version: 1
    resources:
      pair: {{type: node, count: 2, {_SLOT % 4}}}
      node: {{type: slot, count: 1, with: [{{type: core, count: 4}}]}}
      both: {TWO_NODES}
    groups:
    - name: pair
      resources: pair
      tasks:
      - name: left
        resources: node
        command: "hostname > left.host; echo left > /tmp/{{tag}}.mark; sleep 2"
      - name: right
        resources: node
        command: "hostname > right.host; echo right > /tmp/{{tag}}.mark; sleep 2"
      - name: both
        resources: both
        depends_on: [left, right]
        command: "cat /tmp/{{tag}}.mark > both.$(hostname)"
    """


def test_group_on_two_nodes_spreads_its_srun_steps_and_keeps_their_order(
        slurm_nodes: SlurmNodes, folder: Path) -> None:
    spec = write(folder, GROUP.replace("{tag}", folder.name))
    jobs = len(slurm_nodes.submitted_job_ids())
    r = _run(spec, slurm_nodes)
    assert r.returncode == 0, r.stderr
    assert len(slurm_nodes.submitted_job_ids()) == jobs + 1  # the group is one allocation
    # left and right each held a whole node at once, so they ran on different nodes ...
    hosts = {(folder / f"{side}.host").read_text().strip() for side in ("left", "right")}
    assert hosts == set(slurm_nodes.nodes)
    # ... and `both` ran after them on both nodes, each reading what its node's step left.
    marks = {n: (folder / f"both.{n}").read_text().strip() for n in slurm_nodes.nodes}
    assert sorted(marks.values()) == ["left", "right"]
    left_host = (folder / "left.host").read_text().strip()
    assert marks[left_host] == "left"


REPLICAS = f"""
    version: 1
    resources:
      node: {WHOLE_NODE}
    tasks:
    - name: sample
      resources: node
      replicas: 4
      command: "hostname > host.$JOBSPEC_REPLICA; sleep 1"
    """


def test_replicas_are_one_array_spread_over_the_nodes(slurm_nodes: SlurmNodes,
                                                      folder: Path) -> None:
    spec = write(folder, REPLICAS)
    jobs = len(slurm_nodes.submitted_job_ids())
    r = _run(spec, slurm_nodes)
    assert r.returncode == 0, r.stderr
    assert len(slurm_nodes.submitted_job_ids()) == jobs + 1  # one array submission
    hosts = [(folder / f"host.{i}").read_text().strip() for i in range(4)]
    assert set(hosts) == set(slurm_nodes.nodes), hosts


NODE_FAIL = f"""
    version: 1
    resources:
      one: {WHOLE_NODE}
    tasks:
    - name: first
      resources: one
      command: "echo x >> count.first"
    - name: long
      resources: one
      depends_on: [first]
      command: >-
        echo x >> count.long; hostname > long.host;
        [ -e resumed ] || sleep 600; echo ok > long.txt
      outputs: [long.txt]
    """


def test_a_killed_node_fails_its_task_as_node_fail_and_resume_finishes_elsewhere(
        slurm_nodes: SlurmNodes, folder: Path) -> None:
    spec = write(folder, NODE_FAIL)
    run = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-t", "slurm"],
                           cwd=folder, env={**slurm_nodes.env}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (folder / "long.host").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        victim = (folder / "long.host").read_text().strip()
        slurm_nodes.kill_node(victim)
        _, err = run.communicate(timeout=120)  # the node is declared down after ~20-30 s
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 1, err
    long = _status(spec, slurm_nodes)["long"]
    assert long["state"] == "failed", long
    assert "NODE_FAIL" in json.dumps(long) and f"node down: {victim}" in json.dumps(long), long
    shown = jobspec_do("status", spec, cwd=folder, env={"SLURM_CONF": str(slurm_nodes.conf)})
    row = next(line.split() for line in shown.stdout.splitlines() if line.startswith("long "))
    assert row[1:3] == ["failed", "1"] and len(row) == 5, shown.stdout  # no exit code
    assert f"NODE_FAIL (NodeDown) on {victim}, node down: {victim}" in shown.stdout, shown.stdout
    (folder / "resumed").touch()
    r = _run(spec, slurm_nodes, "--resume")
    assert r.returncode == 0, r.stderr
    survivor = (folder / "long.host").read_text().strip()
    assert survivor != victim and survivor in slurm_nodes.nodes
    assert (folder / "long.txt").read_text() == "ok\n"
    # first ran once; long once on the dead node and once on resume: Slurm did not requeue it.
    assert counts(folder) == {"first": 1, "long": 2}
    assert "requeue" not in (slurm_nodes.log_dir / "slurmctld.log").read_text()
    slurm_nodes.revive_node(victim)


def test_sbcast_stages_inside_the_job_to_its_nodes_and_only_what_changed(
        slurm_nodes: SlurmNodes, folder: Path) -> None:
    remote = f"/tmp/{folder.name}"
    (folder / "inputs").mkdir()
    (folder / "inputs" / "a.txt").write_text("alpha\n")
    (folder / "inputs" / "b.txt").write_text("beta\n")
    spec = write(folder, STAGED.replace("{remote}", remote))
    (folder / "jobspec-do.yaml").write_text(json.dumps({"stager": "sbcast",
                                                        "ssh": {"remote_root": remote}}))
    record = folder / ".jobspec-do/spec/tasks/read/step0.sent"

    def summaries() -> list[str]:
        return [line for line in record.read_text().splitlines() if line.startswith("#")]

    r = _run(spec, slurm_nodes)
    assert r.returncode == 0, r.stderr
    assert not Path(remote).exists()  # only the job's nodes got the files, not this machine
    for node in slurm_nodes.nodes:
        assert (slurm_nodes.node_tmp(node) / folder.name / "inputs" / "b.txt").is_file()
        assert (folder / f"read.{node}").read_text() == "alpha\nbeta\n"
    assert summaries() == ["# n[1-2]: 2 sent, 0 unchanged"]
    jobs = len(slurm_nodes.submitted_job_ids())
    again = _run(spec, slurm_nodes)
    assert again.returncode == 0 and "0 ran" in again.stderr, again.stderr
    assert len(slurm_nodes.submitted_job_ids()) == jobs and len(summaries()) == 1
    # The task runs again (forced), its files are already on both nodes: nothing is sent.
    forced = _run(spec, slurm_nodes, "--force", "read")
    assert forced.returncode == 0, forced.stderr
    assert summaries()[-1] == "# n[1-2]: 0 sent, 2 unchanged"
    # One file changed: the step and the task run again, and only that file is sent.
    (folder / "inputs" / "b.txt").write_text("beta 2\n")
    changed = _run(spec, slurm_nodes)
    assert changed.returncode == 0, changed.stderr
    assert summaries()[-1] == "# n[1-2]: 1 sent, 1 unchanged"
    assert f"sent {remote}/inputs/b.txt" in record.read_text().splitlines()[-2:]
    for node in slurm_nodes.nodes:
        assert (folder / f"read.{node}").read_text() == "alpha\nbeta 2\n"


STAGED_GROUP = f"""
    version: 1
    resources:
      two: {TWO_NODES}
    groups:
    - name: pair
      resources: two
      tasks:
      - name: read
        resources: two
        steps: [{{name: stage, path: inputs}}]
        command: "cat {{remote}}/inputs/*.txt > read.$(hostname)"
      - name: other
        resources: two
        depends_on: [read]
        steps: [{{name: stage, path: more}}]
        command: "cat {{remote}}/more/*.txt > other.$(hostname)"
    """


def test_sbcast_stages_a_group_jobs_tasks_in_the_groups_prologue(
        slurm_nodes: SlurmNodes, folder: Path) -> None:
    """Before, the group's job had no prologue: its tasks found nothing on the nodes."""
    remote = f"/tmp/{folder.name}"
    for sub, text in (("inputs", "alpha\n"), ("more", "beta\n")):
        (folder / sub).mkdir()
        (folder / sub / "a.txt").write_text(text)
    spec = write(folder, STAGED_GROUP.replace("{remote}", remote))
    (folder / "jobspec-do.yaml").write_text(json.dumps({"stager": "sbcast",
                                                        "ssh": {"remote_root": remote}}))
    tasks = folder / ".jobspec-do/spec/tasks"
    jobs = len(slurm_nodes.submitted_job_ids())
    r = _run(spec, slurm_nodes)
    assert r.returncode == 0, r.stderr
    assert len(slurm_nodes.submitted_job_ids()) == jobs + 1  # the group is one allocation
    assert not Path(remote).exists()  # only the job's nodes got the files
    for node in slurm_nodes.nodes:
        assert (folder / f"read.{node}").read_text() == "alpha\n"
        assert (folder / f"other.{node}").read_text() == "beta\n"
    for task in ("read", "other"):  # each task's step records what its script sent
        sent = (tasks / task / "step0.sent").read_text().splitlines()
        assert sent[-1] == "# n[1-2]: 1 sent, 0 unchanged", sent
    again = _run(spec, slurm_nodes)
    assert again.returncode == 0 and "0 ran" in again.stderr, again.stderr
    assert len(slurm_nodes.submitted_job_ids()) == jobs + 1
    # One task's file changed: the group runs again; only that file is sent.
    (folder / "more" / "a.txt").write_text("beta 2\n")
    changed = _run(spec, slurm_nodes)
    assert changed.returncode == 0, changed.stderr
    assert (tasks / "other" / "step0.sent").read_text().splitlines()[-1] == \
        "# n[1-2]: 1 sent, 0 unchanged"
    assert (tasks / "read" / "step0.sent").read_text().splitlines()[-1] == \
        "# n[1-2]: 0 sent, 1 unchanged"
    for node in slurm_nodes.nodes:
        assert (folder / f"other.{node}").read_text() == "beta 2\n"
