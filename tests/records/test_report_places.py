"""Where and since when each attempt ran, as `jobspec-do report --json` tells it, on the real
schedulers: tasks inside a group job get their own node and start (recorded by the group's
script from where each ran), and an older attempt keeps both once a later one has replaced its
job record (its end line names them).

Each task appends ``HOST RANK START`` to ``where.<name>`` in its folder as it runs: the node
it really ran on (its host name; on Flux also the rank of the enclosing instance's broker, as
every broker of the test instance has the same host name) and the time its command began.
The records are read only through `report --json` and `status --json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dodo_jobspec.records.status import started_in, started_note
from dodo_jobspec.tasks.children import child_end
from dodo_jobspec.transformers.flux import FluxTransformer, _idset
from dodo_jobspec.transformers.slurm import SlurmTransformer
from tests.helpers import jobspec_do, write
from tests.services import FluxInstance, SlurmCluster, SlurmNodes

# The first attempt of a task with this in its command fails, the next succeeds.
FLAKY = "test -e {name}.ok || {{ touch {name}.ok; exit 1; }}"
SLURM_PROBE = 'echo "$(hostname -s) - $(date +%s.%N)" >> where.{name}'
# In a Flux job, the rank of the broker it runs under (its FLUX_URI's). A task of a group job
# runs in the group's own instance: the rank that counts is that of the broker its broker
# runs under, in the instance jobspec-do submits to (its parent-uri's).
FLUX_PROBE = 'echo "$(hostname) $(flux getattr rank) $(date +%s.%N)" >> where.{name}'
FLUX_CHILD_PROBE = ('echo "$(hostname) $(FLUX_URI=$(flux getattr parent-uri) flux getattr rank)'
                    ' $(date +%s.%N)" >> where.{name}')


def _command(probe: str, name: str, flaky: bool = False, then: str = "") -> str:
    parts = [probe.format(name=name), *([then] if then else []),
             *([FLAKY.format(name=name)] if flaky else [])]
    return json.dumps("; ".join(parts))


def _report(spec: Path, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    out = jobspec_do("report", spec, "--json", cwd=spec.parent, env=env)
    assert out.returncode == 0, out.stderr
    return {u["name"]: u for u in json.loads(out.stdout)["units"]}


def _status(spec: Path, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    out = jobspec_do("status", spec, "--json", cwd=spec.parent, env=env)
    return {u["name"]: u for u in json.loads(out.stdout)["units"]}


def _probes(folder: Path, name: str) -> list[tuple[str, str, float]]:
    """What task ``name`` wrote as each attempt ran: (host, rank, start)."""
    rows = [line.split() for line in (folder / f"where.{name}").read_text().splitlines()]
    return [(host, rank, float(start)) for host, rank, start in rows]


def _check_started(attempt: dict[str, Any], own_start: float, whole_seconds: bool) -> None:
    """The recorded start is the job's (or step's) start: at most a moment before the command
    itself began (its shell starting), never after it."""
    started = attempt["started"]
    assert started is not None, attempt
    slack = 1.0 if whole_seconds else 0.0  # Slurm's own StartTime is in whole seconds
    assert own_start - 3.0 <= started <= own_start + slack, (attempt, own_start)


# -- Slurm -------------------------------------------------------------------------------------
def _slurm_spec(folder: Path) -> Path:
    probe = SLURM_PROBE
    return write(folder, f"""
        version: 1
        groups:
        - name: pair
          tasks:
          - {{name: here, local: true, command: {_command(probe, "here")}}}
          - {{name: left, command: {_command(probe, "left", flaky=True)}}}
          - {{name: right, command: {_command(probe, "right")}}}
        tasks:
        - {{name: solo, command: {_command(probe, "solo", flaky=True)}}}
        """)


def test_slurm_tasks_in_a_group_job_and_older_attempts_say_where_and_when_they_ran(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    spec = _slurm_spec(tmp_path)
    first = jobspec_do(spec, "-t", "slurm", "-k", cwd=tmp_path, timeout=180)
    assert first.returncode == 1, first.stderr  # left (so pair) and solo failed once
    again = jobspec_do(spec, "-t", "slurm", cwd=tmp_path, timeout=180)
    assert again.returncode == 0, again.stderr
    units = _report(spec)
    for name, attempts in (("left", 2), ("right", 2), ("here", 2), ("solo", 2)):
        history = units[name]["history"]
        probes = _probes(tmp_path, name)
        assert len(history) == len(probes) == attempts, (name, history, probes)
        assert [a["state"] for a in history] == ["failed" if name in ("left", "solo")
                                                 else "completed", "completed"]
        for at, (host, _, start) in zip(history, probes, strict=True):
            assert at["nodes"] == host, (name, at)
            # A task of a group has its step's start to the millisecond; a job Slurm's.
            _check_started(at, start, whole_seconds=name == "solo")
            assert at["ended"] is not None and at["started"] <= at["ended"]
    assert [a["exit_code"] for a in units["left"]["history"]] == [1, 0]
    # A task of a group job waited from its group's submission until its step began.
    pair = units["pair"]["history"][-1]
    assert units["left"]["history"][-1]["submitted"] == pytest.approx(pair["submitted"], abs=0.5)
    status = _status(spec)
    node = _probes(tmp_path, "left")[-1][0]
    assert {n: status[n]["nodes"] for n in ("left", "right", "here", "solo", "pair")} == {
        n: node for n in ("left", "right", "here", "solo", "pair")}
    assert status["left"]["job_id"] == status["pair"]["job_id"]


# Each node of the 2-node cluster advertises 4 CPUs: a step asking for 4 has a node to itself.
_SLOT4 = "with: [{type: slot, count: 1, with: [{type: core, count: 4}]}]"
WHOLE_NODE = "{type: node, count: 1, " + _SLOT4 + "}"
TWO_NODES = "{type: node, count: 2, " + _SLOT4 + "}"


def test_tasks_of_one_group_job_on_two_slurm_nodes_each_name_their_own(
        slurm_nodes: SlurmNodes) -> None:
    """Two whole-node steps of one 2-node allocation run side by side, one per node, and a
    step over both nodes names both: each task's record says its own, not the group's."""
    folder = slurm_nodes.shared / "places"
    folder.mkdir()
    probe = SLURM_PROBE
    spec = write(folder, f"""
        version: 1
        resources:
          whole: {WHOLE_NODE}
          both: {TWO_NODES}
        groups:
        - name: spread
          resources: both
          tasks:
          - {{name: a, resources: whole, command: {_command(probe, "a", then="sleep 2")}}}
          - {{name: b, resources: whole, command: {_command(probe, "b", then="sleep 2")}}}
          - {{name: wide, resources: both, depends_on: [a, b],
              command: {_command("hostname -s >> where.wide.hosts", "wide")}}}
        """)
    env = {"SLURM_CONF": str(slurm_nodes.conf)}
    r = jobspec_do(spec, "-t", "slurm", cwd=folder, timeout=180, env=env)
    assert r.returncode == 0, r.stderr
    units = _report(spec, env)
    ran_on = {}
    for name in ("a", "b"):
        [at] = units[name]["history"]
        [(host, _, start)] = _probes(folder, name)
        assert at["nodes"] == host, (name, at)
        _check_started(at, start, whole_seconds=False)
        ran_on[name] = host
    assert sorted(ran_on.values()) == sorted(slurm_nodes.nodes)  # one on each node
    [wide] = units["wide"]["history"]
    hosts = sorted(set((folder / "where.wide.hosts").read_text().split()))
    assert hosts == sorted(slurm_nodes.nodes)
    expanded = slurm_nodes.run("scontrol", "show", "hostnames", wide["nodes"]).stdout.split()
    assert sorted(expanded) == hosts, wide
    [group] = units["spread"]["history"]
    assert sorted(slurm_nodes.run("scontrol", "show", "hostnames", group["nodes"]
                                  ).stdout.split()) == hosts


# -- Flux --------------------------------------------------------------------------------------
def test_flux_tasks_in_a_group_job_and_older_attempts_say_where_and_when_they_ran(
        tmp_path: Path, flux: FluxInstance) -> None:
    """A 2-node group job in the 4-broker instance: its two whole-node children run on its two
    brokers, each recorded with the rank it had in the instance jobspec-do submits to."""
    child = FLUX_CHILD_PROBE
    spec = write(tmp_path, f"""
        version: 1
        resources:
          two: {{type: node, count: 2}}
          one: {{type: node, count: 1}}
        groups:
        - name: fx-pair
          resources: two
          tasks:
          - {{name: fx-here, local: true, command: {_command(child, "fx-here")}}}
          - {{name: fx-left, resources: one,
              command: {_command(child, "fx-left", flaky=True, then="sleep 2")}}}
          - {{name: fx-right, resources: one,
              command: {_command(child, "fx-right", then="sleep 2")}}}
        tasks:
        - {{name: fx-solo, command: {_command(FLUX_PROBE, "fx-solo", flaky=True)}}}
        """)
    # Rank 0 held by another job: the group's instance's rank 0 is then not the instance's,
    # so a child's ranks are right only if they are told in the instance jobspec-do uses.
    flux.run("submit", "-N1", "-x", "--requires=rank:0", "sleep", "600")
    first = jobspec_do(spec, "-t", "flux", "-k", cwd=tmp_path, timeout=240)
    assert first.returncode == 1, first.stderr  # fx-left (so fx-pair) and fx-solo failed once
    again = jobspec_do(spec, "-t", "flux", cwd=tmp_path, timeout=240)
    assert again.returncode == 0, again.stderr
    units = _report(spec)
    for name in ("fx-left", "fx-right", "fx-here", "fx-solo"):
        history = units[name]["history"]
        probes = _probes(tmp_path, name)
        assert len(history) == len(probes) == 2, (name, history, probes)
        for at, (host, rank, start) in zip(history, probes, strict=True):
            assert at["nodes"] == f"{host} (rank {rank})", (name, at)
            _check_started(at, start, whole_seconds=False)
    # In each attempt of the group, its two whole-node children ran on its two brokers.
    for n in range(2):
        ranks = {int(_probes(tmp_path, c)[n][1]) for c in ("fx-left", "fx-right")}
        group = units["fx-pair"]["history"][n]["nodes"]
        assert len(ranks) == 2 and 0 not in ranks, (ranks, group)
        assert set(_idset(group.rpartition("(ranks ")[2].rstrip(")"))) == ranks, group
    assert [a["exit_code"] for a in units["fx-left"]["history"]] == [1, 0]
    assert [a["state"] for a in units["fx-solo"]["history"]] == ["failed", "completed"]


# -- the parts, without a scheduler ------------------------------------------------------------
def test_a_start_in_a_status_line_reads_back_to_the_millisecond() -> None:
    t = 1796313009.5126
    note = started_note(t)
    assert note == "started 2026-12-03T15:50:09.512Z"  # cut, never rounded up
    for info in (f"job 7 on n1; {note}; slurm COMPLETED", f"job 7; {note}", note):
        assert started_in(info) == pytest.approx(t, abs=1e-3)
    assert started_in("job 7 on n1; slurm COMPLETED") is None
    assert started_in("echo started 2026-12-03T15:50:09Z by hand; exit 1") is None


def test_a_flux_childs_ranks_are_told_in_the_enclosing_instance(tmp_path: Path) -> None:
    t = FluxTransformer()
    # rank k of the group's instance is the k-th rank of the group job
    assert t.child_place(["1796312977.76 vm 1"], "vm,vm (ranks 1,3)", True) == (
        "vm (rank 3)", 1796312977.76)
    assert t.child_place(["5.0 vm [0-1]", "4.0 vm 0"], "vm (ranks 2-3)", True) == (
        "vm (ranks 2-3)", 4.0)
    # a child of a nested group: its instance's ranks mean nothing out here
    assert t.child_place(["5.0 vm 1"], "vm (ranks 2-3)", False) == ("vm", 5.0)
    assert t.child_place(["0.0  "], "vm (ranks 2-3)", True) == ("", None)  # never ran


def test_a_child_that_never_ran_or_left_no_place_is_said_so(tmp_path: Path) -> None:
    t = SlurmTransformer()
    assert child_end(str(tmp_path), 1, t, "n1", True).state == "not run"
    (tmp_path / "exit.1").write_text("3\n")
    end = child_end(str(tmp_path), 1, t, "n1", True)  # an old script wrote no place.1
    assert (end.state, end.exit_code, end.nodes, end.run_start) == ("failed", 3, "", None)
    assert end.info("12", "g") == "job 12; in group g; exit 3"
    (tmp_path / "place.1").write_text(f"{end.ended - 2} n[1-2]\n")
    end = child_end(str(tmp_path), 1, t, "n[1-2]", True)
    assert end.info("12", "g") == f"job 12 on n[1-2]; {started_note(end.ended - 2)}; in " \
        "group g; exit 3"
