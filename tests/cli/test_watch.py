"""`jobspec-do watch DIR`: valid, invalid and half-written files; SIGTERM; overlapping watchers."""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dodo_jobspec.cli import main
from dodo_jobspec.cli.watch import Outcome, Watcher, WatchOptions, add_watch_command
from dodo_jobspec.records.state import locked
from tests.helpers import has_records, history_text, write
from tests.services import SlurmCluster

GOOD = """
    version: 1
    name: good
    tasks:
    - name: make
      command: "mkdir -p out && echo made > out/made.txt"
      outputs: [out/made.txt]
    - name: use
      depends_on: [make]
      command: "cat out/made.txt > out/used.txt"
      inputs: [out/made.txt]
      outputs: [out/used.txt]
"""

INVALID = """
    version: 1
    name: bad
    tasks:
    - name: one
      comand: "echo hi"
"""

FAILING = """
    version: 1
    name: failing
    tasks:
    - name: boom
      command: "exit 3"
"""


def watcher(folder: Path, **kw: object) -> tuple[Watcher, io.StringIO]:
    out = io.StringIO()
    opts = WatchOptions(**{"folder": folder, "once": True, "settle": 0.2, **kw})  # type: ignore[arg-type]
    return Watcher(opts, out), out


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def test_a_valid_file_runs_to_completion_and_moves_to_done(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "good.yaml")
    w, out = watcher(tmp_path)
    [outcome] = w.cycle()
    assert (outcome.name, outcome.rc, outcome.what) == ("good.yaml", 0, "done")
    assert (tmp_path / "out" / "used.txt").read_text() == "made\n"
    assert names(tmp_path / "done") == ["good.yaml", "good.yaml.report.html",
                                        "good.yaml.status.json"]
    report = (tmp_path / "done" / "good.yaml.report.html").read_text()
    assert report.count('<g class="attempt"') == 2  # make and use, one attempt each
    assert not (tmp_path / "good.yaml").exists()
    status = json.loads((tmp_path / "done" / "good.yaml.status.json").read_text())
    assert status["complete"] and status["exit_code"] == 0
    assert [u["state"] for u in status["units"]] == ["completed", "completed"]
    # Its records are where `jobspec-do DIR/good.yaml` keeps them.
    assert has_records(tmp_path / ".jobspec-do" / "good" / "tasks" / "use")
    line = out.getvalue().strip()
    assert "good.yaml: exit 0, done -> done/good.yaml" in line
    assert w.cycle() == []  # nothing left to do


def test_an_invalid_file_moves_aside_with_its_error_beside_it(tmp_path: Path) -> None:
    write(tmp_path, INVALID, "bad.yaml")
    w, out = watcher(tmp_path)
    [outcome] = w.cycle()
    assert (outcome.rc, outcome.what) == (2, "invalid")
    assert names(tmp_path / "invalid") == ["bad.yaml", "bad.yaml.error.txt"]
    error = (tmp_path / "invalid" / "bad.yaml.error.txt").read_text()
    assert "bad.yaml:5:" in error  # names the line of the typo
    assert "unknown key 'comand'" in error and "did you mean 'command'" in error
    assert "bad.yaml: exit 2, invalid -> invalid/bad.yaml" in out.getvalue()
    assert not (tmp_path / ".jobspec-do" / "bad").exists()  # nothing ran


def test_a_failing_spec_moves_to_failed_with_its_last_status(tmp_path: Path) -> None:
    write(tmp_path, FAILING, "failing.yaml")
    w, _ = watcher(tmp_path)
    [outcome] = w.cycle()
    assert (outcome.rc, outcome.what) == (1, "failed")
    status = json.loads((tmp_path / "failed" / "failing.yaml.status.json").read_text())
    assert not status["complete"]
    assert status["units"][0]["state"] == "failed" and status["units"][0]["exit_code"] == 3
    report = (tmp_path / "failed" / "failing.yaml.report.html").read_text()
    assert '<tr class="st-failed"><td>boom</td>' in report
    assert "jobspec-do watch" in report  # the command line that ran it


def test_a_file_still_being_written_is_not_picked_up(tmp_path: Path) -> None:
    text = GOOD.replace("\n    ", "\n").lstrip("\n")
    path = tmp_path / "slow.yaml"
    # A writer that is still appending during the check: its prefix would even be a valid spec
    # (the first task alone), so picking it up early would run the wrong thing.
    half = text.index("- name: use")
    path.write_text(text[:half])
    stop = threading.Event()

    def keep_writing() -> None:
        n = half
        while not stop.is_set() and n < len(text):
            time.sleep(0.05)
            n += 1
            with open(path, "a") as fh:
                fh.write(text[n - 1])

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        w, _ = watcher(tmp_path, settle=0.5)
        assert w.cycle() == []
        assert path.exists() and not (tmp_path / ".jobspec-do" / "slow").exists()
    finally:
        stop.set()
        writer.join()
    path.write_text(text)  # the writer finishes
    [outcome] = w.cycle()
    assert outcome.what == "done"
    assert (tmp_path / "out" / "used.txt").is_file()


def test_a_half_written_file_that_does_not_parse_waits(tmp_path: Path) -> None:
    text = GOOD.replace("\n    ", "\n").lstrip("\n")
    path = tmp_path / "half.yaml"
    path.write_text(text[: text.index("echo made")] + '"mkdir -p out && ec')  # open quote
    w, _ = watcher(tmp_path)
    assert w.cycle() == []  # settled, but it does not parse and it is young: not picked up
    assert path.exists() and not (tmp_path / "invalid").exists()
    path.write_text(text)
    [outcome] = w.cycle()
    assert outcome.what == "done"


def test_an_old_file_that_does_not_parse_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\ntasks:\n- name: a\n   command: x\n")
    old = time.time() - 3600
    os.utime(path, (old, old))
    w, _ = watcher(tmp_path)
    [outcome] = w.cycle()
    assert outcome.what == "invalid"
    error = (tmp_path / "invalid" / "broken.yaml.error.txt").read_text()
    assert "broken.yaml:4" in error and "YAML syntax error" in error


def test_dotfiles_temporaries_and_other_files_are_ignored(tmp_path: Path) -> None:
    for name in (".hidden.yaml", "spec.yaml.tmp", "spec.yaml~", "#spec.yaml#", "notes.txt",
                 "jobspec-do.yaml", "data.part"):
        (tmp_path / name).write_text("not: [a spec\n")
    w, _ = watcher(tmp_path)
    assert w.cycle() == []
    assert len(names(tmp_path)) == 7 and not (tmp_path / "invalid").exists()


def test_a_name_used_before_gets_a_dated_name_in_done(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "good.yaml")
    w, _ = watcher(tmp_path)
    w.cycle()
    write(tmp_path, GOOD.replace("made >", "made again >"), "good.yaml")
    [outcome] = w.cycle()
    assert outcome.what == "done" and outcome.moved_to is not None
    assert outcome.moved_to.name.startswith("good.") and outcome.moved_to.name != "good.yaml"
    assert (tmp_path / "out" / "made.txt").read_text() == "made again\n"  # changed: re-ran
    assert len([n for n in names(tmp_path / "done") if n.endswith(".yaml")]) == 2


def test_a_cycle_skips_while_another_watcher_works(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "good.yaml")
    w, out = watcher(tmp_path)
    root = tmp_path / ".jobspec-do"
    root.mkdir()
    fd = os.open(root / ".watch.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert w.cycle() == []
        assert "another watcher" in out.getvalue()
    finally:
        os.close(fd)
    assert [o.what for o in w.cycle()] == ["done"]


def test_a_spec_whose_state_is_locked_stays_for_the_next_cycle(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "good.yaml")
    w, _ = watcher(tmp_path)
    with locked(tmp_path / ".jobspec-do" / "good"):
        [outcome] = w.cycle()
    assert (outcome.rc, outcome.what) == (75, "locked")
    assert (tmp_path / "good.yaml").exists()
    assert [o.what for o in w.cycle()] == ["done"]


def test_state_root_option(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write(inbox, GOOD, "good.yaml")
    w, _ = watcher(inbox, state_root=tmp_path / "states")
    assert [o.what for o in w.cycle()] == ["done"]
    assert (tmp_path / "states" / "good" / "tasks" / "make" / "done.json").is_file()


def test_the_command_line(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_watch_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["watch", str(tmp_path), "--every", "5m", "--once", "-t", "local"])
    assert (args.every, args.once, args.transformer, args.folder) == (300.0, True, "local",
                                                                      tmp_path)
    assert parser.parse_args(["watch", "d", "--every", "60"]).every == 60.0
    assert parser.parse_args(["watch", "d", "--every", "60s"]).every == 60.0
    assert parser.parse_args(["watch", "d"]).every == 60.0
    with pytest.raises(SystemExit):
        parser.parse_args(["watch", "d", "--every", "soon"])
    assert main(["watch", str(tmp_path / "missing"), "--once"]) == 2


def test_outcome_line() -> None:
    line = Outcome("a.yaml", 1, "failed", Path("/x/failed/a.yaml"), "boom").line()
    assert line == "a.yaml: exit 1, failed -> failed/a.yaml (boom)"


SLOW = """
    version: 1
    name: slow
    tasks:
    - name: long
      command: "touch started && sleep 4 && echo finished > out/long.txt"
      outputs: [out/long.txt]
"""


def start_watch(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", "watch", str(folder), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_sigterm_finishes_the_spec_in_hand_then_stops(tmp_path: Path) -> None:
    """What a service manager expects (and the README says): it used to interrupt the run."""
    (tmp_path / "out").mkdir()
    write(tmp_path, SLOW, "slow.yaml")
    proc = start_watch(tmp_path, "--every", "1", "--settle", "0.2")
    try:
        wait_for(tmp_path / "started")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert (tmp_path / "out" / "long.txt").read_text() == "finished\n"
    assert names(tmp_path / "done") == ["slow.yaml", "slow.yaml.report.html",
                                        "slow.yaml.status.json"], out


def test_a_second_sigterm_interrupts_and_leaves_nothing_half_done(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    spec = write(tmp_path, SLOW, "slow.yaml")
    original = spec.read_bytes()
    proc = start_watch(tmp_path, "--every", "1", "--settle", "0.2")
    try:
        wait_for(tmp_path / "started")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "slow.yaml: exit 130, interrupted" in out
    # Nothing moved, nothing torn: the spec is where it was, byte for byte.
    assert spec.read_bytes() == original
    assert not any((tmp_path / d).exists() for d in ("done", "failed", "invalid"))
    assert not (tmp_path / "out" / "long.txt").exists()  # the task was stopped, not left behind
    assert not [p for p in tmp_path.rglob("*.tmp")]
    root = tmp_path / ".jobspec-do" / "slow"
    history = history_text(root / "tasks" / "long")
    assert "interrupted" in history
    with locked(root):  # released
        pass
    # The next start picks it up again and finishes it.
    (tmp_path / "started").unlink()
    assert main(["watch", str(tmp_path), "--once", "--settle", "0.2"]) == 0
    assert (tmp_path / "out" / "long.txt").read_text() == "finished\n"
    assert names(tmp_path / "done") == ["slow.yaml", "slow.yaml.report.html",
                                        "slow.yaml.status.json"]


def _holds(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == str(path.resolve()):
                return True
        except OSError:  # closed meanwhile
            pass
    return False


def test_sigterm_while_idle_exits_0_at_once(tmp_path: Path) -> None:
    """SIGTERM ends the wait between two cycles: with an hour between cycles, the service
    exits 0 at once rather than at the next cycle."""
    proc = start_watch(tmp_path, "--every", "3600")
    lock = tmp_path / ".jobspec-do" / ".watch.lock"
    try:
        # The first cycle has run (it creates the lock, after the signal handlers are in
        # place) and is over (it closed the lock): the service is in its wait between cycles.
        deadline = time.monotonic() + 60
        while not lock.exists() or _holds(proc.pid, lock):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the first cycle never finished"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("SIGTERM did not end the wait between cycles (--every "
                                 "3600)") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err


# -- on the real Slurm cluster: each cycle is a non-blocking step ------------------------------
def test_cycles_drive_a_slurm_spec_to_done_without_duplicate_submissions(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace("outputs: [out/made.txt]",
                                 "outputs: [out/made.txt]\n      attributes: {duration: 60s}"),
          "good.yaml")
    write(tmp_path, FAILING, "failing.yaml")
    before = len(slurm.submitted_job_ids())
    w, out = watcher(tmp_path, transformer="slurm")
    seen: dict[str, list[str]] = {"good.yaml": [], "failing.yaml": []}
    deadline = time.monotonic() + 180
    while (tmp_path / "good.yaml").exists() or (tmp_path / "failing.yaml").exists():
        assert time.monotonic() < deadline, out.getvalue()
        for outcome in w.cycle():
            seen[outcome.name].append(outcome.what)
        time.sleep(0.5)
    assert seen["good.yaml"][-1] == "done" and seen["failing.yaml"][-1] == "failed", seen
    # A cycle never waits for the jobs: the one that submitted them returned while they were
    # still queued or running ("in progress"), and a later cycle found them finished.
    assert seen["good.yaml"][0] == "in progress" and seen["failing.yaml"][0] == "in progress", \
        seen
    assert set(seen["good.yaml"][:-1]) <= {"in progress"}
    assert (tmp_path / "out" / "used.txt").read_text() == "made\n"
    assert len(slurm.submitted_job_ids()) == before + 3  # make, use, boom: each once


def test_a_spec_removed_or_renamed_while_it_runs_does_not_kill_the_service(
        tmp_path: Path) -> None:
    write(tmp_path, """
        version: 1
        tasks: [{name: a, command: "rm job.yaml"}]
    """, "job.yaml")
    write(tmp_path, """
        version: 1
        tasks: [{name: a, command: "mv moved.yaml elsewhere.txt"}]
    """, "moved.yaml")
    w, _ = watcher(tmp_path)
    outcomes = {o.name: o.what for o in w.cycle()}
    assert outcomes == {"job.yaml": "gone", "moved.yaml": "gone"}
    assert names(tmp_path / "done") == []
    assert w.cycle() == []


def test_a_spec_that_changed_while_it_ran_runs_again_before_it_is_done(
        tmp_path: Path) -> None:
    """A writer that paused longer than --settle: the spec read then is not the whole one."""
    write(tmp_path, """
        version: 1
        tasks:
        - name: a
          command: "echo '- {name: b, command: \\"touch b.txt\\"}' >> job.yaml"
    """, "job.yaml")
    w, _ = watcher(tmp_path)
    [first] = w.cycle()
    assert first.what == "in progress" and "changed while it ran" in first.detail
    assert (tmp_path / "job.yaml").exists() and not (tmp_path / "b.txt").exists()
    [second] = w.cycle()
    assert (tmp_path / "b.txt").exists()  # the task the first look had not seen ran
    assert second.what == "done"  # `a` was up to date: the spec did not change this time
    assert names(tmp_path / "done") == ["job.yaml", "job.yaml.report.html", "job.yaml.status.json"]
