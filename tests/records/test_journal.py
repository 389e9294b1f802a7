"""The journal: one append-only file for every unit's history, record and waiter's end."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from dodo_jobspec.errors import StateError
from dodo_jobspec.records.journal import NAME, Journal, exit_line_prefix
from dodo_jobspec.records.state import JobRecord, StateDir, UnitState
from tests.helpers import load_text

SPEC = "version: 1\ntasks:\n- {name: a, command: 'true'}\n- {name: b, command: 'true'}\n"


def _units(tmp_path: Path) -> tuple[StateDir, UnitState, UnitState]:
    spec = load_text(tmp_path, SPEC)
    state = StateDir(tmp_path / "state", spec)
    state.ensure()
    return state, state.unit(spec.nodes["task/a"]), state.unit(spec.nodes["task/b"])


def test_a_cut_line_is_skipped_and_the_next_line_starts_afresh(tmp_path: Path) -> None:
    state, a, _ = _units(tmp_path)
    a.append_status(1, "running", "pid 1")
    path = tmp_path / "state" / NAME
    with open(path, "ab") as fh:  # a power loss in the middle of a line
        fh.write(b'{"u":"tasks/b","t":1.0,"a":7,"s":"comp')
    later = StateDir(tmp_path / "state", state.spec)  # the next run, a fresh process
    later.unit(state.spec.nodes["task/b"]).append_status(1, "completed")
    fresh = StateDir(tmp_path / "state", state.spec)
    hist = fresh.unit(state.spec.nodes["task/b"]).history()
    assert [(h["attempt"], h["state"]) for h in hist] == [("1", "completed")]
    assert fresh.unit(state.spec.nodes["task/a"]).last_attempt() == 1


def test_a_reader_refresh_sees_new_lines_and_a_writer_never_counts_its_own_twice(
        tmp_path: Path) -> None:
    state, a, _ = _units(tmp_path)
    a.append_status(1, "running")
    assert a.last_attempt() == 1  # the index is read now
    a.append_status(1, "completed", record=JobRecord(attempt=1, state="completed"))
    # A task's waiter (another process) appends its end meanwhile.
    with open(tmp_path / "state" / NAME, "a") as fh:
        fh.write(exit_line_prefix("tasks/a", 2, None) + '0,"g":"sig"}\n')
    assert a.ended(2) == (0, "sig")
    assert [h["state"] for h in a.history()] == ["running", "completed"]
    reader = StateDir(tmp_path / "state", state.spec).unit(state.spec.nodes["task/a"])
    assert [h["state"] for h in reader.history()] == ["running", "completed"]
    a.append_status(2, "running")
    reader.journal.refresh()
    assert [h["state"] for h in reader.history()] == ["running", "completed", "running"]


def test_replicas_keep_records_of_their_own(tmp_path: Path) -> None:
    _, a, _ = _units(tmp_path)
    a.append_status(1, "completed", record=JobRecord(attempt=1, state="completed"), replica=3)
    a.write_job(JobRecord(attempt=2, state="queued", job_id="9"))
    assert a.read_job(3).state == "completed" and a.read_job(3).attempt == 1
    assert a.read_job().job_id == "9" and a.read_job(1) == JobRecord()


def test_a_journal_that_is_a_link_is_refused_not_followed(tmp_path: Path) -> None:
    state, a, _ = _units(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.write_text("")
    os.symlink(outside, tmp_path / "state" / NAME)
    with pytest.raises(OSError) as info:
        a.append_status(1, "running")
    assert info.value.errno == errno.ELOOP
    with pytest.raises(StateError, match="symlink"):
        StateDir(tmp_path / "state", state.spec).unit(state.spec.nodes["task/a"]).history()
    assert outside.read_text() == ""


def test_a_full_disk_mid_line_leaves_no_line_that_swallows_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    real = os.write

    def short(fd: int, data: bytes) -> int:
        return real(fd, data[:10])

    monkeypatch.setattr(os, "write", short)
    with pytest.raises(OSError) as info:
        journal.append({"u": "tasks/a", "t": 1.0, "a": 1, "s": "running", "i": ""})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "write", real)
    journal.append({"u": "tasks/a", "t": 2.0, "a": 1, "s": "completed", "i": ""})
    log = Journal(tmp_path).unit("tasks/a")
    assert log is not None and [h[2] for h in log.history] == ["completed"]


def test_the_waiter_line_from_a_real_shell_parses(tmp_path: Path) -> None:
    """What transformers/local.py's waiter writes: the prefix, the code, the signature."""
    journal = tmp_path / NAME
    prefix = exit_line_prefix('tasks/we"ird', 4, 2)
    subprocess.run(["/bin/sh", "-c", "printf '%s%s,\"g\":\"%s\"}\\n' \"$1\" 3 abc >> \"$2\"",
                    "sh", prefix, str(journal)], check=True)
    log = Journal(tmp_path).unit('tasks/we"ird')
    assert log is not None and log.exits == {(4, 2): (3, "abc")}


def test_records_of_an_older_jobspec_do_are_brought_into_the_journal(tmp_path: Path) -> None:
    """Upgrading loses no history: status.csv and job.json of each unit become lines."""
    from tests.helpers import jobspec_do, write

    spec = write(tmp_path, SPEC)
    folder = tmp_path / ".jobspec-do" / "spec" / "tasks" / "a"
    folder.mkdir(parents=True)
    (folder / "status.csv").write_text("timestamp,attempt,state,info\n"
                                       "100.000,1,running,pid 1:1 on old\n"
                                       "101.000,1,failed,exit 3\n"
                                       "102.000,2,running,pid 2:2 on old\n"
                                       "103.0")  # cut by a power loss
    (folder / "job.json").write_text('{"attempt": 2, "state": "running", "job_id": "2:2", '
                                     '"transformer": "local", "definition": {"x": 1}}')
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    st = StateDir(tmp_path / ".jobspec-do" / "spec", load_text(tmp_path, SPEC)).unit(
        load_text(tmp_path, SPEC).nodes["task/a"])
    assert [(h["attempt"], h["state"]) for h in st.history()] == [
        ("1", "running"), ("1", "failed"), ("2", "running"), ("3", "running"),
        ("3", "completed")]
    assert st.read_job().attempt == 3 and st.read_job().state == "completed"


def test_a_journal_mostly_of_replaced_records_is_compacted_keeping_every_history_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dodo_jobspec.records import journal as module

    monkeypatch.setattr(module, "COMPACT_AT", 1000)
    state, a, _ = _units(tmp_path)
    for attempt in range(1, 21):
        for st in ("submitting", "queued", "completed"):
            a.append_status(attempt, st, record=JobRecord(attempt=attempt, state=st,
                                                          signature="s" * 64))
    with open(tmp_path / "state" / NAME, "a") as fh:  # an end no record has yet
        fh.write(exit_line_prefix("tasks/a", 21, None) + '0,"g":"sig"}\n')
    before = (tmp_path / "state" / NAME).stat().st_size
    assert module.compact(state.journal)
    assert (tmp_path / "state" / NAME).stat().st_size < before / 2
    fresh = StateDir(tmp_path / "state", state.spec).unit(state.spec.nodes["task/a"])
    assert len(fresh.history()) == 60 and fresh.read_job().attempt == 20
    assert fresh.ended(21) == (0, "sig")
    a.append_status(21, "completed")  # the journal it holds was replaced: it writes anew
    again = StateDir(tmp_path / "state", state.spec).unit(state.spec.nodes["task/a"])
    assert len(again.history()) == 61
    assert not module.compact(state.journal)  # nothing to gain now


def test_a_writer_keeps_where_its_lines_are_not_the_lines_until_asked(tmp_path: Path) -> None:
    """A run reads few of its own records back: 10,000 parsed ones cost ~12 MB to keep. It
    keeps each line's offset, and reads the line back when asked."""
    state, a, b = _units(tmp_path)
    assert b.last_attempt() == 0  # the index is read now (an empty journal)
    long_info = "x" * 5000  # past one 4 KB read of the line (cut to 500 in the history)
    for attempt in (1, 2):
        a.append_status(attempt, "running", long_info)
        a.append_status(attempt, "completed", record=JobRecord(
            attempt=attempt, state="completed", extra={"burst": {"why": "y" * 6000}}))
    index = state.journal._index
    assert index is not None and "tasks/a" not in index  # not parsed, not kept
    assert a.last_attempt() == 2 and a.read_job().extra["burst"]["why"] == "y" * 6000
    assert [h["state"] for h in a.history()] == ["running", "completed"] * 2
    assert a.history()[0]["info"] == "x" * 500


def test_a_run_in_process_leaves_no_journal_open(tmp_path: Path) -> None:
    """The watch service runs one spec after another in one process: a descriptor left open
    per run would run it out of descriptors."""
    from dodo_jobspec.engine.run import RunRequest, run
    from tests.helpers import write

    spec = write(tmp_path, SPEC)

    def journals_open() -> int:  # this test's: other tests' state folders live elsewhere
        mine = str(tmp_path / ".jobspec-do" / "spec" / NAME)
        return sum(os.readlink(f"/proc/self/fd/{fd}") == mine
                   for fd in os.listdir("/proc/self/fd")
                   if os.path.exists(f"/proc/self/fd/{fd}"))

    for force in ((), ("a",)):
        assert run(RunRequest(spec=spec, quiet=True, force=force)) == 0
        assert journals_open() == 0
    assert (tmp_path / ".jobspec-do" / "spec" / NAME).stat().st_size > 0
