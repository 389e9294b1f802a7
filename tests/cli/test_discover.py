"""`jobspec-do` with no spec named finds it in the current folder, the way `make` does:
jobspec.yaml or jobspec.yml, else the spec whose state folder a run used last; ambiguity and
absence are usage errors (exit 2) that say what was looked for and how to pick."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dodo_jobspec.cli.app import main
from dodo_jobspec.cli.discover import find
from dodo_jobspec.errors import JobspecError
from tests.helpers import counts, jobspec_do, write

SPEC = """
    version: 1
    tasks:
    - {name: build, command: "echo built >> count.build; echo build-log"}
    - {name: test, command: "echo x >> count.test", depends_on: [build]}
    """

CI = """
    # A CI configuration: YAML, in the same folder, and no spec.
    stages: [test]
    test:
      script: [jobspec-do spec.yaml]
    """


def _recorded(folder: Path, name: str, used: int, text: str = SPEC) -> Path:
    """``name`` written in ``folder`` with a state folder as a run leaves it (the `spec` file
    naming it, the `lock` file each run rewrites), last used at ``used`` (seconds)."""
    spec = write(folder, text, name)
    state = folder / ".jobspec-do" / spec.stem
    state.mkdir(parents=True)
    (state / "spec").write_text(f"{spec.resolve()}\n")
    (state / "lock").write_text("4242\n")
    os.utime(state / "lock", (used, used))
    return spec


def _error(folder: Path, typed: list[str] | None = None) -> str:
    with pytest.raises(JobspecError) as exc:
        find(folder, typed or [])
    assert exc.value.exit_code == 2
    return str(exc.value)


# --- The issue's own scenario, through the real command line ------------------------------

def test_plain_resume_finds_the_spec_that_just_failed(tmp_path: Path) -> None:
    """`jobspec-do --resume` in a folder holding one spec that just failed, beside a CI file:
    it names the spec first, and re-runs only what failed and what depends on it."""
    write(tmp_path, CI, ".gitlab-ci.yml")
    write(tmp_path, CI, "ci.yml")
    spec = write(tmp_path, SPEC.replace("echo x >> count.test", "echo x >> count.test; exit 3"),
                 "pipeline.yaml")
    failed = jobspec_do(spec.name, cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    spec.write_text(spec.read_text().replace("; exit 3", ""))  # the fix
    resumed = jobspec_do("--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    first = resumed.stderr.splitlines()[0]  # run's progress is on stderr: the line leads it
    assert first.startswith("jobspec-do: using pipeline.yaml (no SPEC named; the spec run "
                            "last here"), resumed.stderr
    assert counts(tmp_path) == {"build": 1, "test": 2}
    again = jobspec_do(cwd=tmp_path)  # plain `jobspec-do`, now up to date: the no-op path
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[0].startswith("jobspec-do: using pipeline.yaml")
    assert "ok: 0 ran, 2 up to date" in again.stderr
    assert counts(tmp_path) == {"build": 1, "test": 2}


def test_plain_jobspec_do_runs_jobspec_yaml_and_not_a_ci_file(tmp_path: Path) -> None:
    write(tmp_path, CI, ".gitlab-ci.yml")
    write(tmp_path, SPEC, "jobspec.yaml")
    r = jobspec_do(cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == ("jobspec-do: using jobspec.yaml (no SPEC named; the "
                                        "default name)")
    assert counts(tmp_path) == {"build": 1, "test": 1}
    assert os.listdir(tmp_path / ".jobspec-do") == ["jobspec"]


def test_a_folder_with_a_spec_never_run_and_a_ci_file_is_an_error_not_a_guess(
        tmp_path: Path) -> None:
    write(tmp_path, CI, "ci.yml")
    write(tmp_path, SPEC, "pipeline.yaml")
    r = jobspec_do("--resume", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr == (
        f"jobspec-do: error: no SPEC named, and none found in {tmp_path}: looked for "
        "jobspec.yaml, jobspec.yml, then a spec run here before (its state folder under "
        ".jobspec-do/)\n"
        "    hint: name the spec: jobspec-do SPEC, or -f SPEC (YAML files here: ci.yml, "
        "pipeline.yaml)\n")
    assert not (tmp_path / ".jobspec-do").exists() and counts(tmp_path) == {}


def test_an_empty_folder_says_what_was_looked_for_in_json_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--json"]) == 2
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert (data["ok"], data["error"]["exit_code"]) == (False, 2)
    assert "looked for jobspec.yaml, jobspec.yml" in data["error"]["message"]
    assert "spec" not in data
    assert err.startswith("jobspec-do: error: no SPEC named, and none found")
    assert "YAML files here" not in err


# --- Rank 1: the default names ---------------------------------------------------------------

def test_jobspec_yml_alone_is_found(tmp_path: Path) -> None:
    write(tmp_path, SPEC, "jobspec.yml")
    assert find(tmp_path, []).path == Path("jobspec.yml")


def test_both_default_names_are_ambiguous_with_the_commands_to_pick_one(tmp_path: Path) -> None:
    write(tmp_path, SPEC, "jobspec.yaml")
    write(tmp_path, SPEC, "jobspec.yml")
    r = jobspec_do("--resume", "-k", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert r.stderr == (
        f"jobspec-do: error: no SPEC named, and 2 specs in {tmp_path} fit equally (both "
        "default names are there): jobspec.yaml, jobspec.yml\n"
        "    hint: pick one:\n"
        "        jobspec-do --resume -k -f jobspec.yaml\n"
        "        jobspec-do --resume -k -f jobspec.yml\n")
    assert counts(tmp_path) == {}
    # `logs -f` is --follow: its pick-one commands say --file.
    assert "jobspec-do logs build --file jobspec.yaml" in _error(tmp_path, ["logs", "build"])


def test_one_default_file_under_both_names_is_one_spec(tmp_path: Path) -> None:
    write(tmp_path, SPEC, "jobspec.yaml")
    (tmp_path / "jobspec.yml").symlink_to("jobspec.yaml")
    assert find(tmp_path, []).path == Path("jobspec.yaml")


def test_a_folder_called_jobspec_yaml_is_no_spec(tmp_path: Path) -> None:
    (tmp_path / "jobspec.yaml").mkdir()
    write(tmp_path, SPEC, "jobspec.yml")
    assert find(tmp_path, []).path == Path("jobspec.yml")


def test_a_default_name_beats_a_spec_run_more_recently(tmp_path: Path) -> None:
    write(tmp_path, SPEC, "jobspec.yaml")
    _recorded(tmp_path, "other.yaml", used=2_000_000_000)
    assert find(tmp_path, []).path == Path("jobspec.yaml")


# --- Rank 2: the spec whose state folder was used last ----------------------------------------

def test_the_state_folder_used_last_decides(tmp_path: Path) -> None:
    _recorded(tmp_path, "a.yaml", used=1_700_000_000)
    _recorded(tmp_path, "b.yml", used=1_700_000_100)
    found = find(tmp_path, [])
    assert (found.path, found.why) == (
        Path("b.yml"), "no SPEC named; the spec run last here, per .jobspec-do/b/")
    os.utime(tmp_path / ".jobspec-do" / "a" / "lock", (1_700_000_200, 1_700_000_200))
    assert find(tmp_path, []).path == Path("a.yaml")


def test_a_real_run_makes_its_spec_the_last_used(tmp_path: Path) -> None:
    """What a run really leaves (not _recorded's imitation) is what is read."""
    _recorded(tmp_path, "old.yaml", used=1_600_000_000)
    write(tmp_path, SPEC, "new.yaml")
    assert find(tmp_path, []).path == Path("old.yaml")
    assert jobspec_do("new.yaml", cwd=tmp_path).returncode == 0
    assert find(tmp_path, []).path == Path("new.yaml")


def test_two_state_folders_used_at_the_same_time_are_ambiguous(tmp_path: Path) -> None:
    _recorded(tmp_path, "a.yaml", used=1_700_000_000)
    _recorded(tmp_path, "b.yaml", used=1_700_000_000)
    _recorded(tmp_path, "c.yaml", used=1_600_000_000)
    message = _error(tmp_path, ["status"])
    assert message == (
        f"no SPEC named, and 2 specs in {tmp_path} fit equally (their state folders were last "
        "used at the same time): a.yaml, b.yaml\n"
        "    hint: pick one:\n"
        "        jobspec-do status -f a.yaml\n"
        "        jobspec-do status -f b.yaml")


def _untrusted(folder: Path, elsewhere: Path) -> None:
    """Every kind of state folder that must not be picked, all "used" later than the good."""
    late = 2_000_000_000
    other = _recorded(elsewhere, "away.yaml", used=late)  # the spec of another folder
    bad = folder / ".jobspec-do"
    kinds = {
        "away": f"{other}\n",  # points elsewhere
        "gone": f"{folder / 'gone.yaml'}\n",  # names a missing file
        "relative": "relative.yaml\n",  # not an absolute path
        "binary": b"\xff\xfe\x00/x\n",
        "two": f"{folder / 'two.yaml'}\n{folder / 'two.yaml'}\n",
        "stem": f"{folder / 'ci.yml'}\n",  # a file here, but not the one this folder is for
        "huge": f"{folder / 'huge.yaml'}" + " " * 10_000,
    }
    write(folder, CI, "ci.yml")
    for name, content in kinds.items():
        (bad / name).mkdir(parents=True)
        owner = bad / name / "spec"
        owner.write_bytes(content if isinstance(content, bytes) else content.encode())
        (bad / name / "lock").write_text("1\n")
        os.utime(bad / name / "lock", (late, late))
    write(folder, SPEC, "two.yaml")
    write(folder, SPEC, "huge.yaml")
    # The owner file a symlink (to a true owner file), and a state folder that is a symlink.
    write(folder, SPEC, "linked.yaml")
    (bad / "linked").mkdir()
    real_owner = elsewhere / "owner"
    real_owner.write_text(f"{folder / 'linked.yaml'}\n")
    (bad / "linked" / "spec").symlink_to(real_owner)
    write(folder, SPEC, "dirlink.yaml")
    target = elsewhere / "dirlink"
    target.mkdir()
    (target / "spec").write_text(f"{folder / 'dirlink.yaml'}\n")
    (bad / "dirlink").symlink_to(target)
    # A spec file here that is now a link to another folder's file: its state lives there.
    (folder / "moved.yaml").symlink_to(other)
    (bad / "moved").mkdir()
    (bad / "moved" / "spec").write_text(f"{folder / 'moved.yaml'}\n")
    # A fifo where the owner file should be: reading it would block forever.
    (bad / "fifo").mkdir()
    os.mkfifo(bad / "fifo" / "spec")
    (folder / "fifo.yaml").write_text("version: 1\n")
    (bad / "notdir").write_text("a file where a state folder would be\n")


def test_untrusted_state_folders_are_passed_over(tmp_path: Path) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    _untrusted(here, elsewhere)
    message = _error(here)
    assert "none found" in message
    assert "10 state folder(s) there name no spec file of this folder" in message
    assert "away.yaml" not in message  # nothing read from those folders is echoed
    _recorded(here, "good.yaml", used=1_000_000_000)  # older than every bad one
    assert find(here, []).path == Path("good.yaml")


def test_a_symlinked_state_root_is_not_read(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _recorded(elsewhere, "x.yaml", used=1_700_000_000)
    here = tmp_path / "here"
    here.mkdir()
    write(here, SPEC, "x.yaml")
    (here / ".jobspec-do").symlink_to(elsewhere / ".jobspec-do")
    assert "none found" in _error(here)


def test_a_state_folder_without_a_lock_counts_from_its_claim(tmp_path: Path) -> None:
    spec = _recorded(tmp_path, "a.yaml", used=1_700_000_000)
    os.unlink(tmp_path / ".jobspec-do" / spec.stem / "lock")
    assert find(tmp_path, []).path == Path("a.yaml")


# --- Every command that takes a spec ------------------------------------------------------------

@pytest.fixture
def ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder whose one spec (not under a default name) ran, beside a CI file."""
    write(tmp_path, CI, ".gitlab-ci.yml")
    write(tmp_path, SPEC, "pipe.yaml")
    assert jobspec_do("pipe.yaml", cwd=tmp_path).returncode == 0
    monkeypatch.chdir(tmp_path)
    return tmp_path


NOTE = "jobspec-do: using pipe.yaml (no SPEC named; the spec run last here, per .jobspec-do/pipe/)"


@pytest.mark.parametrize(("argv", "expect"), [
    (["status"], "build  completed"),
    (["plan"], "plan for pipe.yaml on local:"),
    (["logs", "build"], "build-log"),
    (["validate"], "pipe.yaml: ok"),
    (["cancel"], "nothing queued or running"),
    (["report"], "report: "),
])
def test_each_command_names_the_found_spec_on_its_first_line(
        ran: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, (out, err)
    assert out.splitlines()[0] == NOTE, out
    assert expect in out


def test_graph_names_the_found_spec_on_stderr_and_keeps_stdout_a_graph(
        ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--format", "dot"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith('digraph "pipe" {') and err == NOTE + "\n"


def test_clean_with_no_spec_forgets_the_found_spec(ran: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clean"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == NOTE and out[1].startswith("forgot all state of pipe.yaml")
    assert not (ran / ".jobspec-do" / "pipe").exists()
    assert main(["clean"]) == 2  # its state folder was how it was found


@pytest.mark.parametrize("command", ["status", "plan"])
def test_json_names_the_found_spec_and_stays_pure_json(
        ran: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main([command, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["spec"] == "pipe.yaml" and err == ""


def test_dry_run_and_quiet(ran: Path) -> None:
    dry = jobspec_do("-n", cwd=ran)
    assert dry.returncode == 0 and dry.stderr.splitlines()[0] == NOTE, dry
    quiet = jobspec_do("-q", cwd=ran)  # quiet is quiet: nothing ran, nothing printed
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


# --- -f/--file, and the positional SPEC ---------------------------------------------------------

def test_file_option_names_the_spec_like_the_positional(
        ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(ran, SPEC, "jobspec.yaml")  # would be found: -f wins, and no line is printed
    assert main(["status", "-f", "pipe.yaml"]) == 0
    assert capsys.readouterr().out.startswith("TASK ")
    assert main(["status", "--file", "pipe.yaml", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"] == "pipe.yaml"
    assert main(["logs", "--file", "pipe.yaml", "build"]) == 0
    assert "build-log" in capsys.readouterr().out
    assert main(["validate", "-f", "pipe.yaml", "--file", "jobspec.yaml"]) == 0
    assert capsys.readouterr().out == "pipe.yaml: ok\njobspec.yaml: ok\n"


def test_report_finds_its_spec_or_takes_it_by_file_option(
        ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = ran / ".jobspec-do" / "pipe" / "report.html"
    assert main(["report"]) == 0 and page.is_file()
    page.unlink()
    capsys.readouterr()
    write(ran, SPEC, "jobspec.yaml")  # would be found: -f wins, and no line is printed
    assert main(["report", "-f", "pipe.yaml", "-o", "r.html"]) == 0
    assert capsys.readouterr().out == "report: r.html\n"
    assert "build" in (ran / "r.html").read_text()
    assert main(["report", "--file", "pipe.yaml", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["spec_file"] == str(ran / "pipe.yaml")
    assert data["summary"]["counts"] == {"completed": 2}


def test_run_with_file_option(ran: Path) -> None:
    write(ran, SPEC.replace("count.", "count.2."), "other.yaml")
    r = jobspec_do("-f", "other.yaml", "-q", cwd=ran)
    assert r.returncode == 0, r.stderr
    assert (counts(ran)["build"], counts(ran)["2.build"]) == (1, 1)


def test_two_different_specs_named_is_a_usage_error(ran: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "pipe.yaml", "-f", "other.yaml"]) == 2
    assert capsys.readouterr().err == ("jobspec-do: error: two specs named: pipe.yaml and "
                                       "--file other.yaml; name one (SPEC or -f SPEC)\n")


def test_logs_with_a_spec_but_no_task_says_so(ran: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "pipe.yaml"]) == 2
    assert capsys.readouterr().err == ("jobspec-do: error: 'pipe.yaml' is a file, and logs "
                                       "needs a TASK: jobspec-do logs pipe.yaml TASK\n")
    (ran / "build").write_text("a file named like the task, as a task's output may be\n")
    assert main(["logs", "build"]) == 0
    assert "build-log" in capsys.readouterr().out


def test_help_and_readme_teach_plain_resume_and_the_search_order() -> None:
    top = jobspec_do("--help").stdout
    assert "jobspec-do --resume    " in top  # the example line, with no spec
    assert "jobspec.yaml or jobspec.yml in the current\nfolder, else the spec whose state" in top
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    first = readme.split("\n\n", 3)[2]  # the paragraph after the two command lines
    assert "`jobspec-do --resume` in its folder" in first
    assert "1. `jobspec.yaml` or `jobspec.yml`" in readme and ".jobspec-do/<stem>/` a run used" \
        in readme


def test_a_found_spec_that_is_invalid_is_reported_like_a_named_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "version: 1\ntasks:\n- comand: [x]\n", "jobspec.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--json"]) == 2
    out, err = capsys.readouterr()
    data = json.loads(out)  # nothing but JSON on stdout
    assert data["spec"] == "jobspec.yaml"
    assert data["error"]["problems"][0]["file"] == "jobspec.yaml"
    assert err.startswith("jobspec.yaml:3:3: tasks[0].comand: unknown key 'comand'")
