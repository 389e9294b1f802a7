"""A state folder on a disk that fills up: one clear line, nothing more started, and after
space is freed --resume re-runs nothing that completed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import jobspec_do, write
from tests.mounts import tmpfs


@pytest.mark.parametrize("size,jobs", [("1m", "2"), ("700k", "1"), ("1200k", "2")])
def test_a_full_state_folder_stops_the_run_and_loses_no_finished_task(
        tmp_path: Path, size: str, jobs: str) -> None:
    """Each task writes 30 kB of output into its log (in the state folder), so 40 of them
    fill it. It used to end in a raw doit traceback (sqlite3: database or disk is full),
    with finished tasks shown lost or never run and run again by --resume."""
    tasks = "\n".join(f"- {{name: t{i}, command: 'echo {i} >> ran.txt; head -c 30000 "
                      f"/dev/zero'}}" for i in range(40))
    spec = write(tmp_path, f"version: 1\ntasks:\n{tasks}\n")
    with tmpfs(tmp_path / "disk", size) as disk:
        state = disk / "state"
        r = jobspec_do(spec, "--state-dir", state, "-j", jobs, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr and "PythonAction" not in r.stderr, r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert f"state folder full: {state}: no space left for its records" in last, last
        first = json.loads(jobspec_do("status", spec, "--state-dir", state, "--json",
                                      cwd=tmp_path).stdout)["units"]
        states = {u["name"]: u["state"] for u in first}
        assert set(states.values()) <= {"completed", "failed", "never run"}, states
        assert "never run" in states.values(), "the disk never filled: make the tasks bigger"
        ran_once = _runs(tmp_path)
        completed = {n for n, s in states.items() if s == "completed"}
        assert {f"t{i}" for i in ran_once} >= completed
        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        r = jobspec_do(spec, "--state-dir", state, "-j", jobs, "--resume", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    runs = _runs(tmp_path)
    assert sorted(runs) == sorted(list(range(40)) + [  # each task once, but for those whose
        int(n[1:]) for n, s in states.items() if s == "failed"]), (states, r.stderr)
    assert f"{len(completed)} up to date" in r.stderr


def _runs(folder: Path) -> list[int]:
    return sorted(int(line) for line in (folder / "ran.txt").read_text().split())
