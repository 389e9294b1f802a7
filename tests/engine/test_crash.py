"""Kills at any moment lose nothing: no recorded completion runs again, nothing is corrupted,
and one run at a time holds a state directory."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dodo_jobspec import noop
from tests.helpers import counts, history_text, job_record, jobspec_do, write


def _spec(n: int) -> str:
    # The count line is written at the END of each command: a task killed mid-way leaves no
    # line, so a line means "this command ran to completion".
    lines = ["version: 1", "name: crash", "tasks:"]
    for i in range(n):
        lines += [f"- name: t{i}", f'  command: "sleep 0.1 && echo x >> count.t{i}"']
        if i >= 4:
            lines.append(f"  depends_on: [t{i - 4}]")
    return "\n".join(lines) + "\n"


def _completed_records(state: Path) -> set[str]:
    done = set()
    for folder in state.glob("tasks/*"):
        if job_record(folder).get("state") == "completed":
            done.add(folder.name)
    return done


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_mid_run_then_resume(tmp_path: Path, seed: int) -> None:
    n = 60
    spec = tmp_path / "spec.yaml"
    spec.write_text(_spec(n))
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-j", "2"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A random moment after the first completion is recorded (a fixed delay lands before it
    # on a loaded machine), while the 60 x 0.1 s chain is still far from its end.
    state = tmp_path / ".jobspec-do" / "spec"
    deadline = time.monotonic() + 60
    while not _completed_records(state) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 1.2))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)  # let the kernel deliver the parent-death signal to the children
    recorded = _completed_records(tmp_path / ".jobspec-do" / "spec")
    before = counts(tmp_path)
    assert recorded, "the kill came before anything completed; pick a later moment"
    r = jobspec_do(spec, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    after = counts(tmp_path)
    assert set(after) == {f"t{i}" for i in range(n)}
    for name in recorded:  # a completion recorded before the kill never runs again
        assert after[name] == 1, (name, before.get(name), after[name])
    # Nothing survived the kill to finish behind our back: runs = 1 per task, plus at most
    # the tasks in flight at the moment of the kill (-j 2).
    assert sum(after.values()) <= n + 2
    assert jobspec_do(spec, cwd=tmp_path).stderr.count("0 ran") == 1


def test_sigterm_records_progress_and_interrupted_tasks(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        name: term
        tasks:
        - {name: quick, command: "echo x >> count.quick"}
        - {name: slow, command: "sleep 30; echo x >> count.slow", depends_on: [quick]}
        """)
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 20
    state = tmp_path / ".jobspec-do" / "spec" / "tasks" / "slow"
    while "running" not in history_text(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert job_record(state)["state"] == "interrupted"
    assert "interrupted" in err
    r = jobspec_do(spec, "--resume", "-j", "1", cwd=tmp_path, timeout=60,
                   env={"PATH": os.environ["PATH"]})
    assert counts(tmp_path)["quick"] == 1  # not re-run
    assert r.returncode == 0


def test_second_concurrent_run_exits_75_and_none_runs_twice(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        name: lock
        tasks:
        - {name: a, command: "sleep 1.5 && echo x >> count.a"}
        - {name: b, command: "echo x >> count.b", depends_on: [a]}
        """)
    first = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec)],
                             cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)
    second = jobspec_do(spec, cwd=tmp_path)
    assert second.returncode == 75 and "another jobspec-do run" in second.stderr
    waiter = jobspec_do(spec, "--wait-lock", cwd=tmp_path)  # queues behind the first
    first.communicate(timeout=30)
    assert first.returncode == 0 and waiter.returncode == 0
    assert counts(tmp_path) == {"a": 1, "b": 1}


def test_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        name: stale
        tasks: [{name: a, command: "sleep 20"}]
        """)
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec)],
                            cwd=tmp_path, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    spec.write_text(spec.read_text().replace("sleep 20", "true"))
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_backend_commits_each_success_when_deps_key_is_written(tmp_path: Path) -> None:
    """The incremental backend relies on doit writing `deps:` last in save_success."""
    from doit.dependency import Dependency, JSONCodec, MD5Checker
    from doit.task import Task

    from dodo_jobspec.engine.backend import IncrementalSqliteDB

    db = tmp_path / "db.sqlite3"
    (tmp_path / "in.txt").write_text("x")
    dep = Dependency(IncrementalSqliteDB, str(db), checker_cls=MD5Checker, codec_cls=JSONCodec)
    task = Task("t", actions=[], file_dep=[str(tmp_path / "in.txt")])
    dep.save_success(task)
    # Read with a second connection, without closing the first: the row must be committed.
    import sqlite3

    rows = sqlite3.connect(db).execute("select task_id, task_data from doit").fetchall()
    assert [r[0] for r in rows] == ["t"]
    assert "deps:" in json.loads(rows[0][1])


def test_backend_commits_at_most_an_interval_late(tmp_path: Path, monkeypatch) -> None:
    """Rows are committed in batches: a success waits at most COMMIT_INTERVAL, and the
    rows of a batch are all there after the next commit or the final dump."""
    import sqlite3

    from doit.dependency import Dependency, JSONCodec, MD5Checker
    from doit.task import Task

    from dodo_jobspec.engine import backend

    clock = [100.0]
    monkeypatch.setattr(backend.time, "monotonic", lambda: clock[0])
    db = tmp_path / "db.sqlite3"
    dep = Dependency(backend.IncrementalSqliteDB, str(db), checker_cls=MD5Checker,
                     codec_cls=JSONCodec)

    def committed() -> list[str]:
        return sorted(r[0] for r in sqlite3.connect(db).execute("select task_id from doit"))

    dep.save_success(Task("a", actions=[]))
    assert committed() == ["a"]  # the first success after a quiet spell: at once
    clock[0] += backend.COMMIT_INTERVAL / 10
    dep.save_success(Task("b", actions=[]))
    assert committed() == ["a"]  # within the interval: batched
    clock[0] += backend.COMMIT_INTERVAL
    dep.save_success(Task("c", actions=[]))
    assert committed() == ["a", "b", "c"]
    dep.save_success(Task("d", actions=[]))
    dep.close()
    assert committed() == ["a", "b", "c", "d"]


def test_backend_forgets_a_pending_row_that_doit_removes(tmp_path: Path, monkeypatch) -> None:
    """A success still waiting for its batch, then removed (the task failed later in the
    run, or --force), must not come back when the batch is written."""
    import sqlite3

    from doit.dependency import Dependency, JSONCodec, MD5Checker
    from doit.task import Task

    from dodo_jobspec.engine import backend

    clock = [100.0]
    monkeypatch.setattr(backend.time, "monotonic", lambda: clock[0])
    db = tmp_path / "db.sqlite3"
    dep = Dependency(backend.IncrementalSqliteDB, str(db), checker_cls=MD5Checker,
                     codec_cls=JSONCodec)
    dep.save_success(Task("a", actions=[]))  # written at once: the first after a quiet spell
    dep.save_success(Task("b", actions=[]))  # pending
    dep.remove_success(Task("b", actions=[]))
    dep.save_success(Task("c", actions=[]))  # pending
    dep.close()
    rows = sorted(r[0] for r in sqlite3.connect(db).execute("select task_id from doit"))
    assert rows == ["a", "c"]


def test_backend_lets_go_of_written_rows_and_reads_them_back(tmp_path: Path,
                                                             monkeypatch) -> None:
    """Memory at 100,000 tasks: once a row is in the table, doit's in-memory copy goes; a
    later read of that task (doit checks a task's own data before running it) comes back
    from the table, whole."""
    from doit.dependency import Dependency, JSONCodec, MD5Checker
    from doit.task import Task

    from dodo_jobspec.engine import backend

    clock = [100.0]
    monkeypatch.setattr(backend.time, "monotonic", lambda: clock[0])
    (tmp_path / "in.txt").write_text("x")
    dep = Dependency(backend.IncrementalSqliteDB, str(tmp_path / "db.sqlite3"),
                     checker_cls=MD5Checker, codec_cls=JSONCodec)
    task = Task("a", actions=[], file_dep=[str(tmp_path / "in.txt")])
    task.values = {"k": "v"}
    dep.save_success(task)  # the first after a quiet spell: written at once
    assert "a" not in dep.backend._cache
    assert dep.get_values("a") == {"k": "v"}
    assert dep.backend.get("a", "deps:") == [str(tmp_path / "in.txt")]
    later = Task("b", actions=[])
    dep.save_success(later)  # pending: still in memory until its batch is written
    assert "b" in dep.backend._cache
    dep.close()


def test_backend_asks_an_empty_table_nothing(tmp_path: Path) -> None:
    """A first run's table is empty: doit's per-task query for a row can only find rows
    this run wrote. A table with rows is asked as doit asks it."""
    from doit.dependency import Dependency, JSONCodec, MD5Checker
    from doit.task import Task

    from dodo_jobspec.engine import backend

    db = str(tmp_path / "db.sqlite3")
    dep = Dependency(backend.IncrementalSqliteDB, db, checker_cls=MD5Checker,
                     codec_cls=JSONCodec)
    asked: list[str] = []
    dep.backend._conn.set_trace_callback(asked.append)
    assert not dep.backend.in_("t1")
    assert dep.backend.get("t1", "checker:") is None
    assert not [q for q in asked if "select" in q.lower()]
    dep.save_success(Task("t1", actions=[]))  # written at once, then dropped from memory
    assert dep.backend.get("t1", "checker:") == "MD5Checker"  # read back from the table
    assert dep.backend.in_("t1")
    assert [q for q in asked if "select task_data" in q]
    dep.close()

    again = Dependency(backend.IncrementalSqliteDB, db, checker_cls=MD5Checker,
                       codec_cls=JSONCodec)
    asked.clear()
    again.backend._conn.set_trace_callback(asked.append)
    assert again.backend.get("t1", "checker:") == "MD5Checker"
    assert again.backend.get("t2", "checker:") is None
    assert len([q for q in asked if "select task_data" in q]) == 2
    again.close()


def test_completions_doit_never_recorded_are_adopted_not_rerun(tmp_path: Path) -> None:
    """doit rows are committed in batches, so a kill can lose the newest ones. The tasks
    behind them must be adopted from their job records, not run again; and a changed task
    must still run."""
    spec = write(tmp_path, _spec(6))
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    state = tmp_path / ".jobspec-do" / "spec"
    for name in os.listdir(state):
        if name.startswith("doit.sqlite3"):
            os.unlink(state / name)  # every doit row lost at once: the worst case
    noop.forget(state)  # and no no-op shortcut: doit itself must decide
    r = jobspec_do(spec, "-v", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path) == {f"t{i}": 1 for i in range(6)}
    assert r.stderr.count("adopted") == 6
    assert "ok: 0 ran, 6 up to date" in r.stderr  # adopted: nothing ran again
    spec.write_text(spec.read_text().replace("echo x >> count.t5", "echo y >> count.t5"))
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path)["t5"] == 2 and counts(tmp_path)["t4"] == 1


@pytest.mark.parametrize(("replicas", "status_line"), [(1, True), (2, True), (1, False)])
def test_an_attempt_cut_short_by_kill_9_keeps_its_number_and_logs(
        tmp_path: Path, replicas: int, status_line: bool) -> None:
    """A local attempt's job record is written when it ends: after a kill -9 only its status
    line and logs say it ran, and the resume must give the next attempt a new number."""
    spec = tmp_path / "spec.yaml"
    task = "{name: slow, replicas: %d, command: %s}"
    spec.write_text(f"version: 1\ntasks:\n- {task % (replicas, '[echo, first]')}\n")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    spec.write_text(spec.read_text().replace("[echo, first]", '"echo second; sleep 60"'))
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / ".jobspec-do" / "spec" / "tasks" / "slow"
    suffix = ".0" if replicas > 1 else ""
    deadline = time.monotonic() + 30
    while not (folder / f"stdout.2{suffix}").exists() or \
            not (folder / f"stdout.2{suffix}").read_text():
        assert time.monotonic() < deadline, "attempt 2 never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not status_line:  # killed between the start and its status line: only logs remain
        journal = folder.parents[1] / "journal.jsonl"
        journal.write_text("".join(line for line in journal.read_text().splitlines(True)
                                   if '"a":2,' not in line or '"s":"running"' not in line))
    spec.write_text(spec.read_text().replace('"echo second; sleep 60"', "[echo, third]"))
    r = jobspec_do(spec, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (folder / f"stdout.1{suffix}").read_text() == "first\n"
    assert (folder / f"stdout.2{suffix}").read_text() == "second\n"  # not overwritten
    assert (folder / f"stdout.3{suffix}").read_text() == "third\n"


# Runs the CLI with the watchdog never told of a task: as if the kill -9 came between the
# task's start and its registration (a window of a millisecond, too narrow to hit on purpose).
_UNREGISTERED = """
import sys
from dodo_jobspec.transformers import local
local._Watchdog.send = lambda *args: None
from dodo_jobspec.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_task_started_just_before_a_kill_9_dies_with_its_run(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\ntasks:\n- {name: a, command: "
                    "'echo $$ > pid.txt; sleep 30; echo late >> count.a'}\n")
    proc = subprocess.Popen([sys.executable, "-c", _UNREGISTERED, str(spec)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = tmp_path / "pid.txt"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.02)
    task = int(pid_file.read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # At once: the killed run's watchdog holds the lock until the orphan is gone, and the
    # resume waits for it rather than starting a second copy or giving up with 75.
    spec.write_text(spec.read_text().replace("sleep 30; ", ""))
    r = jobspec_do(spec, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not Path(f"/proc/{task}").exists() or \
        Path(f"/proc/{task}/stat").read_text().split(") ")[1].startswith("Z")
    assert counts(tmp_path) == {"a": 1}  # the resume's copy; the orphan never got that far


@pytest.mark.parametrize("how", ["cut", "lost"])
def test_a_journal_that_lost_its_end_still_knows_what_completed(tmp_path: Path, how: str
                                                                ) -> None:
    """A power loss without fsync can cut the journal's last line or lose the file. The
    completion records (done.json) that doit goes by still say what completed: `status`
    says so too, the next run runs nothing again, and what it appends parses."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\ntasks:\n"
                    "- {name: a, command: 'echo x >> count.a; echo A > a.out', outputs: [a.out]}\n"
                    "- {name: b, command: 'echo x >> count.b'}\n")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    journal = tmp_path / ".jobspec-do" / "spec" / "journal.jsonl"
    if how == "cut":
        data = journal.read_bytes()
        journal.write_bytes(data[:len(data) - 40])  # into the last completion line
    else:
        journal.unlink()
    status = jobspec_do("status", spec, "--json", cwd=tmp_path)
    units = {u["name"]: u for u in json.loads(status.stdout)["units"]}
    assert status.returncode == 0, status.stdout
    assert (units["a"]["state"], units["b"]["state"]) == ("completed", "completed")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"a": 1, "b": 1}
    assert jobspec_do(spec, "--force", "b", cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"a": 1, "b": 2}
    final = {u["name"]: u for u in json.loads(
        jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)["units"]}
    assert (final["b"]["state"], final["b"]["attempts"]) == ("completed", 2)
    assert "completed" in history_text(journal.parent / "tasks" / "b")


def _alive(pid_file: Path) -> bool:
    """Whether the process whose pid ``pid_file`` holds still runs (a zombie does not)."""
    stat = Path(f"/proc/{pid_file.read_text().strip()}/stat")
    try:
        return stat.read_text().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def test_after_kill_9_a_finished_tasks_daemon_lives_and_running_tasks_die(
        tmp_path: Path) -> None:
    """The watchdog stops what the killed run had in flight, including what escaped its
    group (setsid), and leaves alone what a task that ended started on purpose."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("""version: 1
tasks:
- name: starter
  command: "setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &"
- name: slow
  depends_on: [starter]
  command: "setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' & echo $$ > slow.pid; sleep 300"
""")
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for name in ("daemon.pid", "slow.pid", "escaped.pid"):
            _wait_for(tmp_path / name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while _alive(tmp_path / "slow.pid") or _alive(tmp_path / "escaped.pid"):
            assert time.monotonic() < deadline, "the killed run's tasks still run"
            time.sleep(0.05)
        assert _alive(tmp_path / "daemon.pid")  # started on purpose by a task that ended
    finally:
        for name in ("daemon.pid", "slow.pid", "escaped.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((tmp_path / name).read_text()), signal.SIGKILL)


def test_a_timeout_also_stops_what_its_task_started_in_another_session(
        tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("""version: 1
tasks:
- name: t
  command: "setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' & sleep 300"
  attributes: {duration: 1}
""")
    try:
        r = jobspec_do(spec, cwd=tmp_path, timeout=60)
        assert r.returncode == 1 and "timed out" in r.stderr, r.stderr
        assert not _alive(tmp_path / "escaped.pid")
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((tmp_path / "escaped.pid").read_text()), signal.SIGKILL)


def _kill_at_the_end(folder: Path, delay: float) -> None:
    """Start a run of one task, kill -9 it ``delay`` s after the task's command has done its
    work (its count line is its last act), and let the watchdog do its work."""
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", "spec.yaml"],
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    count = folder / "count.a"
    deadline = time.monotonic() + 60
    while not count.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the task never ran"
        time.sleep(0.0002)
    time.sleep(delay)
    proc.kill()
    proc.wait()


def test_a_kill_at_the_instant_a_task_ends_never_runs_it_again(tmp_path: Path) -> None:
    """A kill -9 within ~0-6 ms after a task's command ended left it running/lost, and
    --resume ran it again (4 of 42 timed kills). The task's waiter records the end on disk
    whatever happens to jobspec-do, and --resume (or a plain run) adopts it."""
    (tmp_path / "spec.yaml").write_text(
        "version: 1\ntasks: [{name: a, command: 'echo x >> count.a'}]\n")
    rng = random.Random(7)
    for trial in range(16):
        shutil.rmtree(tmp_path / ".jobspec-do", ignore_errors=True)
        (tmp_path / "count.a").unlink(missing_ok=True)
        _kill_at_the_end(tmp_path, rng.uniform(0, 0.006))
        r = jobspec_do(tmp_path / "spec.yaml", "--resume", "--wait-lock", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert counts(tmp_path) == {"a": 1}, (trial, r.stderr)


def test_force_runs_a_task_again_even_with_an_unrecorded_end_to_adopt(tmp_path: Path) -> None:
    """A run killed after a task's waiter journaled its end, before the run recorded it:
    a plain run adopts that end, and `--force` runs the task again all the same."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\ntasks: [{name: a, command: 'echo x >> count.a'}]\n")
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    journal = tmp_path / ".jobspec-do" / "spec" / "journal.jsonl"
    lines = journal.read_text().splitlines(True)
    assert any('"x":0' in line for line in lines)  # the waiter's end line
    journal.write_text("".join(line for line in lines if '"s":"completed"' not in line))
    (tmp_path / ".jobspec-do" / "spec" / "tasks" / "a" / "done.json").unlink()
    assert jobspec_do(spec, "--force", "a", cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"a": 2}
