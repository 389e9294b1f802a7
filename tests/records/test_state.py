"""The state directory's records: atomic, compact, and cheap in files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dodo_jobspec.records.state import (
    JobRecord,
    StateDir,
    atomic_write,
    read_record,
    write_record,
)
from tests.helpers import counts, jobspec_do, load_text, write

ONE = """\
version: 1
tasks:
- name: make
  command: {cmd}
  outputs: [out.txt]
"""


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write(target, "old")
    atomic_write(str(target), b"new")
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_record_round_trips_compact_with_its_definition(tmp_path: Path) -> None:
    rec = JobRecord(attempt=3, state="completed", exit_code=0,
                    definition={"name": "t", "command": "echo, \"hi\""})
    write_record(tmp_path / "job.json", rec)
    text = (tmp_path / "job.json").read_text()
    assert "\n" not in text  # one compact line: the C encoder, not the pure-Python one
    assert read_record(tmp_path / "job.json") == rec


def test_status_lines_go_to_the_journal_and_give_the_last_attempt(tmp_path: Path) -> None:
    spec = load_text(tmp_path, ONE.format(cmd="'true'"))
    state = StateDir(tmp_path / "state", spec)
    state.ensure()
    st = state.unit(spec.nodes["task/make"])
    assert st.last_attempt() == 0
    st.append_status(1, "failed", 'exit 1, said "no"\nand more')
    st.append_status(2, "running", "pid 7")
    st.append_status(10, "completed", record=JobRecord(attempt=10, state="completed"))
    assert [(r["attempt"], r["state"], r["info"]) for r in st.history()] == [
        ("1", "failed", 'exit 1, said "no" and more'), ("2", "running", "pid 7"),
        ("10", "completed", "")]
    # Another process (status, report) reads the same from the file.
    again = StateDir(tmp_path / "state", spec).unit(spec.nodes["task/make"])
    assert again.history() == st.history() and again.last_attempt() == 10
    assert again.read_job() == JobRecord(attempt=10, state="completed")
    assert not os.path.exists(st.dir_str)  # no folder and no file of its own for records


def test_a_run_leaves_three_files_per_task_and_done_is_the_completed_job(tmp_path: Path
                                                                         ) -> None:
    spec = write(tmp_path, ONE.format(cmd="echo hi > out.txt"))
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    root = tmp_path / ".jobspec-do" / "spec"
    unit = root / "tasks" / "make"
    # The history, the job record and the waiter's end are lines of the journal.
    assert sorted(os.listdir(unit)) == ["done.json", "stderr.1", "stdout.1"]
    done = json.loads((unit / "done.json").read_text())
    assert done["state"] == "completed" and done["definition"]["command"] == "echo hi > out.txt"
    # A later failed attempt is the current record; done.json still names the completed one.
    spec.write_text(ONE.format(cmd="exit 3"))
    assert jobspec_do(spec, cwd=tmp_path).returncode == 1
    st = StateDir(root, load_text(tmp_path, ONE.format(cmd="exit 3"))).unit(
        load_text(tmp_path, ONE.format(cmd="exit 3")).nodes["task/make"])
    assert st.read_job().state == "failed" and st.read_job().attempt == 2
    assert json.loads((unit / "done.json").read_text())["attempt"] == 1


def test_ensure_returns_only_once_the_folder_exists(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas ensure one folder from several threads: none may go on before it exists."""
    import threading
    import time

    from dodo_jobspec.records import state

    real_mkdir = os.mkdir

    def slow_mkdir(path: str, *args: object) -> None:
        time.sleep(0.3)
        real_mkdir(path, *args)

    spec = load_text(tmp_path, ONE.format(cmd="'true'"))
    (tmp_path / "state" / "tasks").mkdir(parents=True)
    st = StateDir(tmp_path / "state", spec).unit(spec.nodes["task/make"])
    monkeypatch.setattr(state.os, "mkdir", slow_mkdir)
    first = threading.Thread(target=st.ensure)
    first.start()
    time.sleep(0.1)  # the first thread is inside mkdir now
    st.ensure()
    assert os.path.isdir(st.dir_str)
    first.join()


def test_two_spec_files_with_one_name_do_not_share_a_state_folder(tmp_path: Path) -> None:
    """p.yaml and p.yml both default to .jobspec-do/p: each would take the other's records
    for its own. The second is refused while the first exists; a renamed spec takes over."""
    first = write(tmp_path, 'version: 1\ntasks: [{name: a, command: "echo x >> count.a"}]\n',
                  "p.yaml")
    second = write(tmp_path, 'version: 1\ntasks: [{name: a, command: "echo x >> count.b"}]\n',
                   "p.yml")
    assert jobspec_do(first, cwd=tmp_path).returncode == 0
    for args in ([second], ["status", second], ["plan", second], ["clean", second]):
        r = jobspec_do(*args, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert f"keeps the state of {first}, not of {second}: pass --state-dir" in r.stderr
    assert counts(tmp_path) == {"a": 1}
    assert (tmp_path / ".jobspec-do" / "p" / "tasks" / "a" / "done.json").exists()  # kept
    own = jobspec_do(second, "--state-dir", tmp_path / "other", cwd=tmp_path)
    assert own.returncode == 0, own.stderr
    first.unlink()  # as if p.yaml had been renamed p.yml
    assert jobspec_do(second, cwd=tmp_path).returncode == 0
    assert (tmp_path / ".jobspec-do" / "p" / "spec").read_text() == f"{second}\n"
