"""`jobspec-do status`: what it says of each unit, in a table and as JSON."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dodo_jobspec.records.state import JobRecord, StateDir, UnitState, lock_holder
from dodo_jobspec.records.status import unit_status
from tests.helpers import history_text, job_record, jobspec_do, load_text, write


def test_the_table_lines_up_under_its_header_for_short_names(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "true"}
        - {name: bb, command: "false", depends_on: [a]}
        """)
    jobspec_do(spec, cwd=tmp_path)
    out = jobspec_do("status", spec, cwd=tmp_path)
    assert out.returncode == 1  # bb failed
    header, *rows = [line for line in out.stdout.splitlines() if not line.startswith("  ")]
    column = header.index("STATE")
    assert header.startswith("TASK  ")
    assert [row[column:].split()[0] for row in rows] == ["completed", "failed"]
    assert [row.split()[0] for row in rows] == ["a", "bb"]


def _units(spec: Path, cwd: Path) -> dict[str, dict[str, Any]]:
    """`status --json`'s units by name."""
    report = json.loads(jobspec_do("status", spec, "--json", cwd=cwd).stdout)
    return {u["name"]: u for u in report["units"]}


def _state(spec: Path, cwd: Path) -> dict[str, tuple[str, str]]:
    return {name: (u["state"], u["info"]) for name, u in _units(spec, cwd).items()}


def _run_until_running(spec: Path, cwd: Path, task: str, attempt: int = 1
                       ) -> subprocess.Popen[bytes]:
    """Start a run of ``spec`` in the background; return once ``task``'s attempt runs."""
    run = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec)], cwd=cwd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = cwd / ".jobspec-do" / spec.stem / "tasks" / task
    deadline = time.monotonic() + 20
    while f",{attempt},running," not in history_text(folder):
        assert time.monotonic() < deadline, f"{task} never started attempt {attempt}"
        time.sleep(0.05)  # one write() per status line: a line seen is whole
    return run


def _one_task(tmp_path: Path) -> UnitState:
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: sim, command: "true"}
        """)
    st = StateDir(tmp_path / "state", spec).unit(spec.find("sim")[0])
    st.ensure()
    return st


def test_a_local_task_of_a_run_killed_with_9_is_lost_not_running(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: slow, command: "test -f go || sleep 30"}
        """)
    run = _run_until_running(spec, tmp_path, "slow")
    folder = tmp_path / ".jobspec-do" / "spec" / "tasks" / "slow"
    assert _state(spec, tmp_path)["slow"][0] == "running"  # while its run is alive
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert job_record(folder).get("state") != "completed"
    deadline = time.monotonic() + 10
    while (state := _state(spec, tmp_path)["slow"])[0] != "lost":
        # The run's watchdog kills the process group once the run is gone.
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert "--resume" in state[1]
    assert jobspec_do("status", spec, cwd=tmp_path).returncode == 1
    (tmp_path / "go").touch()
    assert jobspec_do(spec, "--resume", cwd=tmp_path).returncode == 0
    assert _state(spec, tmp_path)["slow"][0] == "completed"


def test_a_queued_scheduler_job_keeps_its_state_when_no_run_is_alive(tmp_path: Path) -> None:
    # A Slurm or Flux job outlives the run that submitted it (--no-wait, cron, a kill):
    # its recorded state stands; only the scheduler can say more.
    st = _one_task(tmp_path)
    st.append_status(1, "queued", "job 4711", "4711", record=JobRecord(
        attempt=1, state="queued", transformer="slurm", job_id="4711"))
    row = unit_status(st, run_active=False)
    assert (row["state"], row["info"]) == ("queued", "job 4711")


def test_a_local_task_is_running_while_its_run_holds_the_lock(tmp_path: Path) -> None:
    st = _one_task(tmp_path)
    st.append_status(1, "running", "pid 1:0")  # no job record yet: a local run writes it last
    assert unit_status(st, run_active=True)["state"] == "running"
    assert unit_status(st, run_active=False)["state"] == "lost"
    lock = tmp_path / "state" / "lock"
    lock.write_text(f"{os.getpid()}\n")  # the pid of a live process, but no lock taken
    assert unit_status(st)["state"] == "lost"
    with open(lock) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # as a run holds it
        assert lock_holder(tmp_path / "state") == os.getpid()
        assert unit_status(st)["state"] == "running"
    assert lock_holder(tmp_path / "state") is None


def test_an_attempt_in_flight_is_reported_not_the_record_of_the_one_before(
        tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: t, command: "test -f go || exit 3; echo second; sleep 30"}
        """)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 1  # attempt 1 fails with exit 3
    (tmp_path / "go").touch()
    run = _run_until_running(spec, tmp_path, "t", attempt=2)
    try:
        unit = _units(spec, tmp_path)["t"]
        assert (unit["state"], unit["attempts"], unit["exit_code"], unit["duration"]) == (
            "running", 2, None, None)
        pid = int(unit["job_id"].split(":")[0])  # the running process, not attempt 1's
        assert (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2]
                == [b"jobspec-do-task", b"-c"])  # the task's waiter (transformers/local.py)
        assert unit["stdout"].endswith("stdout.2")
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=30)


def test_cancel_stops_a_local_run_in_progress_and_it_records_that(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: slow, command: "sleep 30"}
        - {name: after, command: "true", depends_on: [slow]}
        """)
    assert jobspec_do("cancel", spec, cwd=tmp_path).stdout.strip() == "nothing queued or running"
    run = _run_until_running(spec, tmp_path, "slow")
    cancel = jobspec_do("cancel", spec, cwd=tmp_path, timeout=60)
    assert cancel.returncode == 0, cancel.stderr
    assert f"stopped the run (pid {run.pid})" in cancel.stdout
    assert run.wait(timeout=5) == 130  # interrupted, as with Ctrl-C
    units = _units(spec, tmp_path)
    assert (units["slow"]["state"], units["after"]["state"]) == ("interrupted", "never run")
    pid = int(units["slow"]["job_id"].split(":")[0])
    assert not Path(f"/proc/{pid}").exists()  # the task's process went with it


# Replica 1 fails at once; the others wait for a file `go`, so they finish after it.
REPLICAS = """
    version: 1
    tasks:
    - name: sim
      replicas: 3
      command: >-
        echo out $JOBSPEC_REPLICA;
        if [ "$JOBSPEC_REPLICA" = 1 ] && [ ! -f ok ]; then echo boom >&2; exit 4; fi;
        while [ ! -f go ]; do sleep 0.05; done
    - {name: plain, command: "echo plain"}
    """


def _table(spec: Path, cwd: Path) -> list[str]:
    """The rows of `status`'s table (without its header)."""
    return jobspec_do("status", spec, cwd=cwd).stdout.splitlines()[1:]


def _run_until_a_replica_failed(spec: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a run of REPLICAS; return once replica 1 failed while the others still run."""
    run = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-j", "4", "-k"],
                           cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = cwd / ".jobspec-do" / spec.stem / "tasks" / "sim"
    deadline = time.monotonic() + 20
    while not ((text := history_text(folder)).count(",running,") == 3
               and ",failed," in text):
        assert time.monotonic() < deadline, "the replicas never got that far"
        time.sleep(0.05)
    return run


def test_a_replica_that_failed_before_the_others_finished_fails_its_task(
        tmp_path: Path) -> None:
    spec = write(tmp_path, REPLICAS)
    run = _run_until_a_replica_failed(spec, tmp_path)
    (tmp_path / "go").touch()
    assert run.wait(timeout=30) == 1
    folder = tmp_path / ".jobspec-do" / "spec" / "tasks" / "sim"
    # The last line of its history is a replica that completed: the task is still not.
    assert history_text(folder).splitlines()[-1].endswith(",completed,")

    units = _units(spec, tmp_path)
    sim = units["sim"]
    assert (sim["state"], sim["exit_code"]) == ("failed", 4)
    assert sim["info"] == "replica 1 of 3 failed: exit 4"
    assert Path(sim["stderr"]).read_text() == "boom\n"
    assert Path(sim["stdout"]).read_text() == "out 1\n"
    assert [(r["replica"], r["state"], r["attempt"]) for r in sim["replicas"]] == [
        (0, "completed", 1), (1, "failed", 1), (2, "completed", 1)]
    assert all(Path(r["stdout"]).exists() and Path(r["stderr"]).exists()
               for r in sim["replicas"])
    report = json.loads(jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)
    assert report["complete"] is False

    rows = _table(spec, tmp_path)
    assert rows[0].split()[:4] == ["sim", "failed", "1", "4"]
    assert rows[1].strip() == f"replica 1 of 3 failed: exit 4 (logs: {folder}/stderr.1.1)"
    assert rows[2].split()[:4] == ["plain", "completed", "1", "0"]
    assert jobspec_do("status", spec, cwd=tmp_path).returncode == 1

    # A plain task's entry is as before: its own logs, no replicas.
    plain = units["plain"]
    assert (plain["state"], plain["info"], "replicas" in plain) == ("completed", "", False)
    assert plain["stdout"].endswith("/plain/stdout.1") and Path(plain["stdout"]).exists()

    # Only replica 1 runs again (its attempt 2); then every replica's latest attempt completed.
    (tmp_path / "ok").touch()
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    sim = _units(spec, tmp_path)["sim"]
    assert (sim["state"], sim["attempts"]) == ("completed", 2)
    assert [(r["state"], r["attempt"]) for r in sim["replicas"]] == [
        ("completed", 1), ("completed", 2), ("completed", 1)]
    assert Path(sim["stdout"]).exists()
    assert [row.split()[1] for row in _table(spec, tmp_path)] == ["completed", "completed"]


def test_a_replicated_task_runs_while_a_replica_runs_after_another_failed(
        tmp_path: Path) -> None:
    spec = write(tmp_path, REPLICAS)
    run = _run_until_a_replica_failed(spec, tmp_path)
    try:
        sim = _units(spec, tmp_path)["sim"]
        assert sim["state"] == "running"
        assert sim["info"] == "2 of 3 replicas running; replica 1 of 3 failed: exit 4"
    finally:
        (tmp_path / "go").touch()
        assert run.wait(timeout=30) == 1
    assert _state(spec, tmp_path)["sim"] == ("failed", "replica 1 of 3 failed: exit 4")


def test_replicas_that_all_completed_make_their_task_completed(tmp_path: Path) -> None:
    spec = write(tmp_path, REPLICAS)
    (tmp_path / "go").touch()
    (tmp_path / "ok").touch()
    assert jobspec_do(spec, "-j", "4", cwd=tmp_path).returncode == 0
    status = jobspec_do("status", spec, cwd=tmp_path)
    assert status.returncode == 0
    assert [row.split()[:2] for row in status.stdout.splitlines()[1:]] == [
        ["sim", "completed"], ["plain", "completed"]]  # and no line about replicas
    sim = _units(spec, tmp_path)["sim"]
    assert (sim["state"], sim["info"]) == ("completed", "all 3 replicas")
    assert Path(sim["stdout"]).read_text() == "out 0\n"
    assert [r["state"] for r in sim["replicas"]] == ["completed"] * 3


def test_the_table_says_why_a_task_failed_under_its_row(tmp_path: Path) -> None:
    """A missing output fails a task that exited 0: the EXIT column alone would not say why."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: noout, command: "true", outputs: [never.txt]}
        - {name: bad, command: "exit 3"}
        - {name: fine, command: "true"}
        """)
    assert jobspec_do(spec, "-k", cwd=tmp_path).returncode == 1
    out = jobspec_do("status", spec, cwd=tmp_path)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    logs = tmp_path / ".jobspec-do" / "spec" / "tasks"
    row = next(i for i, line in enumerate(lines) if line.startswith("noout "))
    assert lines[row + 1] == (f"  finished but did not make its outputs: {tmp_path}/never.txt "
                              f"(logs: {logs}/noout/stderr.1)")
    row = next(i for i, line in enumerate(lines) if line.startswith("bad "))
    assert lines[row + 1] == f"  exit 3 (logs: {logs}/bad/stderr.1)"
    assert lines[-1].startswith("fine ")  # a completed task has no note


def test_a_killed_task_waiting_to_be_reaped_is_lost_at_once(
        tmp_path: Path, monkeypatch: Any) -> None:
    """After a kill -9 the watchdog kills the task at once, but it stays a zombie until its
    new parent reaps it (1-2 s in a container whose init is slow to): status said
    `running` all that time. A zombie is no running task; nor is a dead run that its
    watchdog's inherited lock still names."""
    from dodo_jobspec.records import status
    from dodo_jobspec.transformers.local import _start_time

    spec = load_text(tmp_path, "version: 1\ntasks: [{name: a, command: 'sleep 60'}]\n")
    state = StateDir(tmp_path / "state", spec)
    st = state.unit(spec.tasks[0])
    st.ensure()
    child = subprocess.Popen(["true"])  # not waited for: a zombie once it exits
    try:
        deadline = time.monotonic() + 10
        while _state_of(child.pid) != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        st.append_status(1, "running", f"pid {child.pid}:{_start_time(child.pid)}")
        assert unit_status(st, run_active=False)["state"] == "lost"
        monkeypatch.setattr(status, "lock_holder", lambda root: child.pid)
        assert not status.lock_holder_alive(tmp_path / "state")
        assert unit_status(st)["state"] == "lost"
        monkeypatch.setattr(status, "lock_holder", lambda root: os.getpid())
        assert status.lock_holder_alive(tmp_path / "state")
    finally:
        child.wait()


def _state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]
