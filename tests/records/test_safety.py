"""The state folder never leads outside itself: links are refused, not followed; names made of
dots stay inside `.jobspec-do/`; `clean` deletes only what is recognisably a state folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.helpers import jobspec_do, write

SPEC = """\
version: 1
tasks:
- name: make
  command: "echo hi > out.txt"
  outputs: [out.txt]
"""


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    return victim


def test_a_state_folder_that_is_a_link_is_refused_by_clean_and_run(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    project = tmp_path / "project"
    (project / ".jobspec-do").mkdir(parents=True)
    spec = write(project, SPEC)
    (project / ".jobspec-do" / "spec").symlink_to("../../victim")
    for args in (["clean", spec], [spec]):
        r = jobspec_do(*args, cwd=project)
        assert r.returncode == 2, r.stderr
        assert "symlink" in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(victim)) == ["precious.txt"]


def test_a_jobspec_do_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    spec = write(project, SPEC)
    (project / ".jobspec-do").symlink_to(victim)
    r = jobspec_do(spec, cwd=project)
    assert r.returncode == 2 and "symlink" in r.stderr, r.stderr
    assert sorted(os.listdir(victim)) == ["precious.txt"]


def test_links_planted_inside_a_state_folder_are_not_written_through(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    spec = write(tmp_path, SPEC)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    root = tmp_path / ".jobspec-do" / "spec"
    (tmp_path / "out.txt").unlink()
    journal = root / "journal.jsonl"
    journal.rename(root / "journal.was")
    journal.symlink_to(victim / "precious.txt")
    r = jobspec_do(spec, cwd=tmp_path)  # nothing can be recorded: refused before it runs
    assert r.returncode == 2 and "journal.jsonl is a symlink" in r.stderr, r.stderr
    assert not (tmp_path / "out.txt").exists()
    assert (victim / "precious.txt").read_text() == "keep me\n"
    journal.unlink()
    (root / "journal.was").rename(journal)
    runs = root / "runs.jsonl"
    runs.unlink()
    runs.symlink_to(victim / "precious.txt")
    jobspec_do(spec, "--force", "make", cwd=tmp_path)  # a new run is not logged through it
    assert (victim / "precious.txt").read_text() == "keep me\n"
    (root / "lock").unlink()
    (root / "lock").symlink_to(victim / "precious.txt")
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 2 and "symlink" in r.stderr, r.stderr
    assert (victim / "precious.txt").read_text() == "keep me\n"


def test_a_task_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    spec = write(tmp_path, SPEC)
    tasks = tmp_path / ".jobspec-do" / "spec" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "make").symlink_to(victim)
    jobspec_do(spec, cwd=tmp_path)
    assert sorted(os.listdir(victim)) == ["precious.txt"]


def test_spec_names_made_of_dots_keep_their_state_inside_jobspec_do(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.c").write_text("int main(void) { return 0; }\n")
    three, two = write(project, SPEC, "...yaml"), write(project, SPEC, "..yaml")
    for spec in (three, two):  # the same spec twice: both make its output, knowingly
        assert jobspec_do(spec, "--allow-shared-outputs", cwd=project).returncode == 0
    folders = sorted(os.listdir(project / ".jobspec-do"))
    assert len(folders) == 2 and all(f.startswith("dots-") for f in folders), folders
    for spec in (three, two):
        r = jobspec_do("clean", spec, cwd=project)
        assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(project)) == ["...yaml", "..yaml", ".jobspec-do", "main.c",
                                           "out.txt"]


def test_clean_refuses_a_folder_that_never_held_state(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC)
    mine = _victim(tmp_path)
    r = jobspec_do("clean", "--state-dir", mine, spec, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "does not look like a jobspec-do state folder" in r.stderr
    assert "precious.txt" in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(mine)) == ["precious.txt"]


def test_clean_deletes_a_real_state_folder_and_only_it(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC)
    state = tmp_path / "st"
    # --report: the page and runs.jsonl are jobspec-do's own files too, and clean takes them.
    assert jobspec_do("--state-dir", state, "--report", spec, cwd=tmp_path).returncode == 0
    assert (state / "report.html").is_file() and (state / "runs.jsonl").is_file()
    victim = _victim(tmp_path)
    (state / "tasks" / "make" / "lnk").symlink_to(victim)  # removed as a link, not followed
    r = jobspec_do("clean", "--state-dir", state, spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not state.exists()
    assert sorted(os.listdir(victim)) == ["precious.txt"]


def test_the_state_folder_is_private(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    for folder in (tmp_path / ".jobspec-do", tmp_path / ".jobspec-do" / "spec"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
