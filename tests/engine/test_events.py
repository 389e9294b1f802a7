"""engine/events.py: the one-thread runner that waits on every local process at once.

Concurrency limits and a task that runs alone are in tests/transformers/test_local.py (they
run on this runner too); these are what only this runner does itself: time limits from its
poll loop, Ctrl-C for every running task, a failure that stops the run, a task that cannot
start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dodo_jobspec.engine import events
from tests.helpers import jobspec_do, write

pytestmark = pytest.mark.skipif(not events.available(), reason="no pidfds on this kernel")


def _job(folder: Path, task: str) -> dict[str, object]:
    path = folder / ".jobspec-do" / "spec" / "tasks" / task / "job.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_a_time_limit_stops_one_task_while_the_others_go_on(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: slow, command: "sleep 30", attributes: {duration: 1s}}
        - {name: a, command: "sleep 0.3; echo a > a.txt"}
        - {name: b, command: "sleep 0.3; echo b > b.txt", depends_on: [a]}
        """)
    started = time.monotonic()
    r = jobspec_do(spec, "-j", "2", "--keep-going", cwd=tmp_path)
    assert time.monotonic() - started < 8, "the time limit was not enforced"
    assert r.returncode == 1, r.stderr
    assert _job(tmp_path, "slow")["state"] == "timeout"
    assert _job(tmp_path, "a")["state"] == _job(tmp_path, "b")["state"] == "completed"
    assert (tmp_path / "b.txt").read_text() == "b\n"


def test_a_failure_stops_new_starts_but_lets_running_tasks_finish(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: bad, command: "sleep 0.2; exit 3"}
        - {name: running, command: "sleep 1; echo ok > running.txt"}
        - {name: later, command: "echo never > later.txt", depends_on: [bad]}
        - {name: after, command: "echo never > after.txt", depends_on: [running]}
        """)
    r = jobspec_do(spec, "-j", "2", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert _job(tmp_path, "bad")["state"] == "failed" and _job(tmp_path, "bad")["exit_code"] == 3
    assert _job(tmp_path, "running")["state"] == "completed"  # recorded, not abandoned
    assert not (tmp_path / "later.txt").exists() and not (tmp_path / "after.txt").exists()


def test_a_task_that_cannot_start_fails_alone_with_keep_going(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: missing, command: [/no/such/program]}
        - {name: fine, command: "echo ok > fine.txt"}
        - {name: next, command: "echo ok > next.txt", depends_on: [fine]}
        """)
    r = jobspec_do(spec, "-j", "2", "--keep-going", cwd=tmp_path)
    assert r.returncode == 1
    assert "/no/such/program" in r.stderr
    assert _job(tmp_path, "missing")["state"] == "failed"
    assert (tmp_path / "next.txt").read_text() == "ok\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_every_running_task_and_records_each(tmp_path: Path,
                                                               sig: int) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: one, command: "sleep 60 & sleep 61"}
        - {name: two, command: "sleep 62"}
        - {name: three, command: "echo never > three.txt", depends_on: [one]}
        """)
    # SIGINT at its default in the child: a test run started in the background inherits it
    # ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-j", "2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    tasks = tmp_path / ".jobspec-do" / "spec" / "tasks"
    deadline = time.monotonic() + 20
    while not all("running" in _text(tasks / t / "status.csv") for t in ("one", "two")):
        assert time.monotonic() < deadline, "the tasks never started"
        time.sleep(0.05)
    time.sleep(0.2)
    started = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 4, "the interrupt waited for a kill grace period"
    for task in ("one", "two"):
        assert _job(tmp_path, task)["state"] == "interrupted"
        pgid = int(_text(tasks / task / "status.csv").split("pid ")[1].split(":")[0])
        deadline = time.monotonic() + 5
        while _group_alive(pgid):
            assert time.monotonic() < deadline, f"{task}'s process group survived"
            time.sleep(0.05)
    assert not (tmp_path / "three.txt").exists()


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _group_alive(pgid: int) -> bool:
    import os

    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
