"""Flux -> Flux bursting on real instances: a 1-node primary kept full by a blocker job, and a
2-node target. Each task appends one line (its name and the instance it ran in) to a file,
so the tests count executions instead of trusting records."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.bursters.fluxes import FluxInstance
from tests.helpers import has_records, history_text, job_record, write

TASK = """
- name: {name}
  resources: {res}
  command: "echo {name} $FLUX_URI >> {ran}; echo out-of-{name}"
  attributes: {{burstable: {burstable}}}
"""


def spec(folder: Path, tasks: list[tuple[str, str, bool]]) -> Path:
    """A spec whose tasks each record one execution line in ran.txt."""
    body = "".join(TASK.format(name=n, res=r, burstable=str(b).lower(), ran=folder / "ran.txt")
                   for n, r, b in tasks)
    return write(folder, "version: 1\nname: b\nresources:\n"
                 "  one: {type: core, count: 1}\n  two-nodes: {type: node, count: 2}\n"
                 "tasks:" + body)


def config(folder: Path, target: FluxInstance, after: str = "1s") -> None:
    (folder / "jobspec-do.yaml").write_text(
        f"burst:\n- {{plugin: flux, name: second, uri: '{target.uri}', after: {after}}}\n")


def jsd(primary: FluxInstance, *args: str | Path, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", *map(str, args)],
                          env=primary.env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def start(primary: FluxInstance, *args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", *map(str, args)],
                            env=primary.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def executions(folder: Path) -> list[tuple[str, str]]:
    """(task, instance) per execution; each broker of an instance has its own URI, and all
    share the instance's folder, which stands for the instance."""
    try:
        lines = (folder / "ran.txt").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(ln.split()[0], ln.split()[1].rsplit("/", 1)[0]) for ln in lines]


def home(instance: FluxInstance) -> str:
    return instance.uri.rsplit("/", 1)[0]


def job(folder: Path, name: str) -> dict:
    return job_record(folder / ".jobspec-do" / "spec" / "tasks" / name)


def history(folder: Path, name: str) -> list[str]:
    lines = history_text(folder / ".jobspec-do" / "spec" / "tasks" / name)
    return [ln.split(",")[2] for ln in lines.splitlines()[1:]]


def test_a_burstable_task_moves_to_the_target_after_waiting(tmp_path: Path, full) -> None:
    primary, target = full
    path = spec(tmp_path, [("mover", "one", True)])
    config(tmp_path, target)
    out = jsd(primary, path, "-t", "flux")
    assert out.returncode == 0, out.stdout + out.stderr
    assert executions(tmp_path) == [("mover", home(target))]
    record = job(tmp_path, "mover")
    moved = record["extra"]["burst"]
    assert record["transformer"] == "burst:second" and moved["state"] == "moved"
    # The primary's job was taken back before it ever had resources.
    assert "alloc" not in primary.events(moved["from"])
    assert "exception" in primary.events(moved["from"])
    assert history(tmp_path, "mover") == ["submitting", "queued", "moving", "moved", "queued",
                                          "completed"]
    logs = jsd(primary, "logs", path, "mover")
    assert logs.returncode == 0 and "out-of-mover" in logs.stdout, logs.stdout + logs.stderr
    status = jsd(primary, "status", path, "--json")
    unit = json.loads(status.stdout)["units"][0]
    assert unit["state"] == "completed" and unit["job_id"] == record["job_id"]
    assert unit["burst"] == {"target": "second", "from": moved["from"], "state": "moved"}
    # Up to date now: a second run runs nothing, wherever the task ran.
    again = jsd(primary, path, "-t", "flux")
    assert again.returncode == 0 and len(executions(tmp_path)) == 1


def test_a_task_that_is_not_burstable_waits_for_the_primary(tmp_path: Path, full) -> None:
    primary, target = full
    path = spec(tmp_path, [("stayer", "one", False)])
    config(tmp_path, target)
    proc = start(primary, path, "-t", "flux")
    deadline = time.monotonic() + 30
    while "queued" not in history(tmp_path, "stayer"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(4)  # four times `after`: a burstable task would have moved by now
    assert history(tmp_path, "stayer") == ["submitting", "queued"]
    assert executions(tmp_path) == []
    primary.flux("cancel", primary.blocker)  # the primary has room: the task runs there
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert executions(tmp_path) == [("stayer", home(primary))]
    assert target.jobs_named("stayer") == []


def test_a_task_too_big_for_the_primary_goes_straight_to_the_target(tmp_path: Path,
                                                                    fluxes) -> None:
    primary, target = fluxes  # the primary is idle: size alone decides
    path = spec(tmp_path, [("large", "two-nodes", True)])
    config(tmp_path, target, after="1h")
    out = jsd(primary, path, "-t", "flux")
    assert out.returncode == 0, out.stdout + out.stderr
    assert executions(tmp_path) == [("large", home(target))] * 2  # two slots, one line each
    assert primary.jobs_named("large") == []  # never submitted to the primary
    assert history(tmp_path, "large") == ["submitting", "burst", "queued", "completed"]
    record = job(tmp_path, "large")
    assert "2 node(s), this has 1" in record["extra"]["burst"]["why"]
    # Where it ran: the target's two ranks, as its flux jobs said when polled (#22).
    assert record["transformer"] == "burst:second" and "(ranks 0-1)" in record["nodes"], record


def test_plan_says_where_a_task_may_burst(tmp_path: Path, fluxes) -> None:
    primary, target = fluxes
    path = spec(tmp_path, [("small", "one", True), ("large", "two-nodes", True),
                           ("fixed", "one", False)])
    config(tmp_path, target, after="30s")
    out = jsd(primary, "plan", path, "-t", "flux")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    small = text[text.index("task/small"):text.index("task/large")]
    assert "may burst to second when it has waited 30s in the flux queue" in small
    large = text[text.index("task/large"):text.index("task/fixed")]
    assert "bursts to second: the flux primary cannot take it" in large
    assert "flux submit" in large and f"FLUX_URI={target.uri}" in large
    fixed = text[text.index("task/fixed"):]
    assert "# may burst" not in fixed and "# bursts" not in fixed and "# stays" not in fixed


def test_kill_9_during_moves_never_runs_a_task_twice(tmp_path: Path, full) -> None:
    """Kill the run many times: at random moments, and right when a move is recorded as
    `moving` (the primary's job being taken back) or `moved` (before the target's job id is
    recorded); then resume it to the end: every task ran exactly once."""
    primary, target = full
    rng = random.Random(20)
    names = [f"t{i}" for i in range(3)]
    triggers = ["moving", "moved", "random"] * 2
    settled = {"moving": 0, "moved": 0}
    for round_, trigger in enumerate(triggers):
        folder = tmp_path / f"r{round_}"
        folder.mkdir()
        path = spec(folder, [(n, "one", True) for n in names])
        config(folder, target, after="1s")
        for _kill in range(2):
            proc = start(primary, path, "-t", "flux", "--resume")
            if trigger == "random":
                time.sleep(rng.uniform(0.8, 4.0))
            else:
                _until_last_line(folder, names, trigger, proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if trigger != "random":
                settled[trigger] += sum(history(folder, n)[-1:] == [trigger] for n in names
                                        if (folder / ".jobspec-do/spec/tasks" / n).exists())
        out = jsd(primary, path, "-t", "flux", "--resume")
        assert out.returncode == 0, out.stdout + out.stderr
        ran = sorted(n for n, _ in executions(folder))
        assert ran == names, (round_, trigger, executions(folder))
    # The kills did land inside moves, and the next run finished those moves.
    assert settled["moving"] > 0 and settled["moved"] > 0, settled


def _until_last_line(folder: Path, names: list[str], state: str,
                     proc: subprocess.Popen[str]) -> None:
    """Wait until some task's history ends with ``state`` (or give up after 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        for n in names:
            if history(folder, n)[-1:] == [state]:
                return
        time.sleep(0.005)


def test_no_wait_ticks_move_a_task_and_submit_its_dependent_after_it(tmp_path: Path,
                                                                     full) -> None:
    """--no-wait: one tick submits to the full primary, a later one (past `after`) moves the
    job; its dependent is not submitted with an afterok on a job that may move, but once the
    upstream is done, and then moves too."""
    primary, target = full
    path = write(tmp_path, f"""
        version: 1
        name: b
        resources:
          one: {{type: core, count: 1}}
        attributes: {{burstable: true}}
        tasks:
        - name: first
          resources: one
          command: "echo first $FLUX_URI >> {tmp_path}/ran.txt"
        - name: second
          resources: one
          depends_on: [first]
          command: "echo second $FLUX_URI >> {tmp_path}/ran.txt"
        """)
    config(tmp_path, target, after="2s")
    first = jsd(primary, path, "-t", "flux", "--no-wait")
    assert first.returncode == 0, first.stdout + first.stderr
    assert history(tmp_path, "first") == ["submitting", "queued"]
    assert not has_records(tmp_path / ".jobspec-do/spec/tasks/second")
    for _tick in range(60):
        out = jsd(primary, path, "-t", "flux", "--no-wait")
        assert out.returncode == 0, out.stdout + out.stderr
        if "complete: all" in out.stdout + out.stderr:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"not complete after 60 ticks: {out.stdout}{out.stderr}")
    assert sorted(executions(tmp_path)) == [("first", home(target)), ("second", home(target))]
    assert "moved" in history(tmp_path, "first") and "moved" in history(tmp_path, "second")
    assert job(tmp_path, "second")["transformer"] == "burst:second"


def test_flux_local_starts_on_demand_and_stops_when_no_job_needs_it(tmp_path: Path,
                                                                      full) -> None:
    primary, _target = full
    path = spec(tmp_path, [("mover", "one", True), ("fixed", "one", False)])
    (tmp_path / "jobspec-do.yaml").write_text(
        "burst:\n- {plugin: flux-local, name: here, size: 2, after: 1s}\n")
    plan = jsd(primary, "plan", path, "-t", "flux")
    assert "may burst to here when it has waited 1s" in plan.stdout, plan.stdout
    folder = tmp_path / ".jobspec-do" / "spec" / "bursters" / "here"
    assert not folder.exists()  # planning starts nothing
    proc = start(primary, path, "-t", "flux")
    # `fixed` waits for the full primary; `mover` moves to an instance started for it.
    deadline = time.monotonic() + 60
    while executions(tmp_path) == []:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    uri = (folder / "uri").read_text().strip()
    assert executions(tmp_path) == [("mover", uri.rsplit("/", 1)[0])]
    assert job(tmp_path, "mover")["transformer"] == "burst:here"
    primary.flux("cancel", primary.blocker)  # now `fixed` runs on the primary, and the run ends
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert sorted(executions(tmp_path))[0] == ("fixed", home(primary))
    # The run is over and no job of it is left there: the instance was shut down.
    assert not (folder / "uri").exists()
    socket = uri.removeprefix("local://")
    deadline = time.monotonic() + 30
    while Path(socket).exists():
        assert time.monotonic() < deadline, "the flux-local instance still runs"
        time.sleep(0.2)


def test_resume_follows_a_moved_job_without_the_config(tmp_path: Path, full) -> None:
    """The record, not the config, says where a moved job is: killed after the move, the run
    is resumed with the `burst:` config gone, and waits for the job on the target."""
    primary, target = full
    path = write(tmp_path, f"""
        version: 1
        name: b
        tasks:
        - name: slow
          command: "sleep 4; echo slow $FLUX_URI >> {tmp_path}/ran.txt"
          attributes: {{burstable: true}}
        """)
    config(tmp_path, target)
    proc = start(primary, path, "-t", "flux")
    deadline = time.monotonic() + 60
    while history(tmp_path, "slow")[-1:] != ["queued"] \
            or "moved" not in history(tmp_path, "slow"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (tmp_path / "jobspec-do.yaml").unlink()
    refused = jsd(primary, path, "-t", "flux")
    assert refused.returncode != 0 and "--resume" in refused.stdout + refused.stderr
    status = json.loads(jsd(primary, "status", path, "--json").stdout)["units"][0]
    assert status["state"] == "queued" or status["state"] == "running"
    assert status["burst"]["target"] == "second"
    out = jsd(primary, path, "-t", "flux", "--resume")
    assert out.returncode == 0, out.stdout + out.stderr
    assert executions(tmp_path) == [("slow", home(target))]
    assert history(tmp_path, "slow")[-2:] == ["attached", "completed"]


def test_a_group_and_a_replicated_task_move_whole(tmp_path: Path, full) -> None:
    """A group is one `flux batch` job and a task's replicas several jobs: each moves as one,
    every replica and child runs once."""
    primary, target = full
    path = write(tmp_path, f"""
        version: 1
        name: b
        resources:
          one: {{type: core, count: 1}}
        groups:
        - name: pipe
          attributes: {{burstable: true}}
          resources: one
          tasks:
          - {{name: a, command: "echo a $FLUX_URI >> {tmp_path}/ran.txt"}}
          - {{name: b, depends_on: [a], command: "echo b $FLUX_URI >> {tmp_path}/ran.txt"}}
        tasks:
        - {{group: pipe}}
        - name: rep
          resources: one
          replicas: 3
          attributes: {{burstable: true}}
          command: "echo rep$JOBSPEC_REPLICA $FLUX_URI >> {tmp_path}/ran.txt"
        """)
    config(tmp_path, target)
    out = jsd(primary, path, "-t", "flux")
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(n for n, _ in executions(tmp_path)) == ["a", "b", "rep0", "rep1", "rep2"]
    rep = job(tmp_path, "rep")
    assert rep["transformer"] == "burst:second" and len(rep["job_id"].split(",")) == 3
    assert {uri for n, uri in executions(tmp_path) if n.startswith("rep")} == {home(target)}
    for jid in rep["extra"]["burst"]["from"].split(","):
        assert "alloc" not in primary.events(jid)
    pipe = job_record(tmp_path / ".jobspec-do/spec/groups/pipe")
    assert pipe["transformer"] == "burst:second"
    assert "alloc" not in primary.events(pipe["extra"]["burst"]["from"])
    assert target.jobs_named("pipe") == [pipe["job_id"]]


def test_a_task_no_one_can_take_is_refused_before_anything_is_submitted(tmp_path: Path,
                                                                       fluxes) -> None:
    """The primary's check knows it cannot take 3 nodes; a burstable task is let through only
    when a burster can take it. Here none can: a clear error, naming every refusal, and
    nothing submitted anywhere (not a job left to fail later)."""
    primary, target = fluxes
    path = write(tmp_path, f"""
        version: 1
        name: b
        resources:
          three-nodes: {{type: node, count: 3}}
        tasks:
        - name: huge
          resources: three-nodes
          attributes: {{burstable: true}}
          command: "echo huge >> {tmp_path}/ran.txt"
        """)
    config(tmp_path, target)
    for args in (("plan", path, "-t", "flux"), (path, "-t", "flux")):
        out = jsd(primary, *args)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "3 nodes asked, the instance has 1" in out.stderr, out.stderr
        assert "no burster can take it: second: it asks for 3 node(s), this has 2" \
            in out.stderr, out.stderr
        assert "nothing was submitted" in out.stderr and "Traceback" not in out.stderr
    assert executions(tmp_path) == [] and target.jobs_named("huge") == []
    assert not has_records(tmp_path / ".jobspec-do/spec/tasks/huge")


def test_the_local_burster_runs_a_moved_task_here(tmp_path: Path, full) -> None:
    primary, _target = full
    path = write(tmp_path, f"""
        version: 1
        name: b
        tasks:
        - name: mover
          attributes: {{burstable: true}}
          command: "echo mover ${{FLUX_JOB_ID:-here}} >> {tmp_path}/ran.txt"
        """)
    (tmp_path / "jobspec-do.yaml").write_text("burst:\n- {plugin: local, after: 1s}\n")
    out = jsd(primary, path, "-t", "flux")
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "ran.txt").read_text() == "mover here\n"  # not inside a Flux job
    record = job(tmp_path, "mover")
    assert record["transformer"] == "burst:local"
    assert "alloc" not in primary.events(record["extra"]["burst"]["from"])


def test_a_task_whose_stage_steps_cannot_follow_it_is_not_burst(tmp_path: Path,
                                                                 fluxes) -> None:
    """flux-archive sends to the primary's ranks before the job. Before, the step staged
    there and the task then ran on the target, whose nodes never got the files."""
    primary, target = fluxes
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a\n")
    path = write(tmp_path, f"""
        version: 1
        name: b
        resources:
          two-nodes: {{type: node, count: 2}}
        tasks:
        - name: stager
          resources: two-nodes
          attributes: {{burstable: true}}
          steps: [{{name: stage, path: data}}]
          command: "echo stager >> {tmp_path}/ran.txt"
        """)
    config(tmp_path, target, after="1h")
    with (tmp_path / "jobspec-do.yaml").open("a") as f:
        f.write("stager: flux-archive\n")
    # The primary's check refuses it before the run starts, and says why no burster took it.
    for args in (("plan", path), (path,)):
        out = jsd(primary, *args, "-t", "flux")
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        assert "nothing was submitted" in out.stderr
        assert "no burster can take it: second: task 'stager' has stage steps, and the " \
               "flux-archive stager sends to the primary's nodes before the job, not to " \
               "second's" in out.stderr, out.stderr
    assert executions(tmp_path) == [] and target.jobs_named("stager") == []
    assert primary.jobs_named("stager") == []
    assert not (tmp_path / ".jobspec-do/spec/tasks/stager/step0.json").exists()
    # One that fits the primary and might move after waiting is kept there, and plan says why.
    small = write(tmp_path, """
        version: 1
        name: s
        tasks:
        - {name: small, attributes: {burstable: true}, steps: [{name: stage, path: data}],
           command: "true"}
        """, "small.yaml")
    config(tmp_path, target, after="1s")
    with (tmp_path / "jobspec-do.yaml").open("a") as f:
        f.write("stager: flux-archive\n")
    plan = jsd(primary, "plan", small, "-t", "flux")
    assert plan.returncode == 0, plan.stderr
    assert "# stays on flux: no burster has `after` or can take it (second: task 'small' has " \
           "stage steps" in plan.stdout, plan.stdout
    assert "# may burst" not in plan.stdout
