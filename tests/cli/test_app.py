"""The spec commands of the CLI: validate, graph, schema, plugins, and exit codes."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dodo_jobspec.cli.app import main
from tests.helpers import REFERENCE, counts, jobspec_do, write
from tests.services import SlurmCluster

GOOD = """
    version: 1
    tasks:
    - {name: build, command: [make]}
    - {name: test, command: [make, test], depends_on: [build]}
    """


def test_validate_ok_and_errors_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    good = write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, "version: 1\ntasks:\n- comand: [x]\n", "bad.yaml")
    assert main(["validate", str(good)]) == 0
    assert f"{good}: ok" in capsys.readouterr().out
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:3: tasks[0].comand: unknown key 'comand'" in err
    assert "did you mean 'command'?" in err


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "version: 1\ntasks:\n- comand: [x]\n", "bad.yaml")
    assert main(["validate", "--json", str(bad)]) == 2
    out = json.loads(capsys.readouterr().out)
    problem = out[str(bad)]["problems"][0]
    assert out[str(bad)]["ok"] is False
    assert (problem["line"], problem["path"], problem["hint"]) == (
        3, "tasks[0].comand", "did you mean 'command'?")


def test_validate_strict_rejects_extensions(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    spec = write(tmp_path, """
        version: 1
        resources: {r: {type: node, count: 1}}
        tasks:
        - {command: [make], resources: r, outputs: [a.out], attributes: {duration: 5m}}
        """)
    assert main(["validate", str(spec)]) == 0
    assert main(["validate", "--strict", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'outputs'" in err and "drop --strict" in err


def test_validate_abbreviated_attribute_is_an_error_with_the_full_name(tmp_path: Path) -> None:
    """`env:` under attributes would silently set nothing: the real CLI refuses it."""
    write(tmp_path, """
        version: 1
        tasks:
        - name: build
          command: [make]
          attributes:
            env: {A: "1"}
        """)
    r = jobspec_do("validate", "spec.yaml", cwd=tmp_path)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert r.stderr == ("spec.yaml:6:5: tasks[0].attributes.env: unknown attribute 'env'\n"
                        "    hint: did you mean 'environment'?\n"), r.stderr


def test_validate_abbreviated_keys_are_errors_with_the_full_name(tmp_path: Path) -> None:
    write(tmp_path, """
        version: 1
        req: {io: {fs: lustre}}
        tasks:
        - {name: a, command: [true]}
        - {name: b, command: [true], dep: [a]}
        """)
    r = jobspec_do("validate", "spec.yaml", cwd=tmp_path)
    assert r.returncode == 2, r
    assert r.stderr == ("spec.yaml:2:1: req: unknown key 'req'\n"
                        "    hint: did you mean 'requires'?\n"
                        "spec.yaml:5:30: tasks[1].dep: unknown key 'dep'\n"
                        "    hint: did you mean 'depends_on'?\n"), r.stderr


def test_unsatisfiable_request_exits_2_before_anything_runs(tmp_path: Path,
                                                           slurm: SlurmCluster) -> None:
    """README: exit 2 for an invalid spec or usage; a request no node can give is found
    before anything is submitted or run, and says which task and what is short."""
    write(tmp_path, """
        version: 1
        tasks:
        - {name: small, command: "touch small.ran"}
        - {name: huge, command: "touch huge.ran", resources: {type: core, count: 1000}}
        """)
    before = len(slurm.submitted_job_ids())
    r = jobspec_do("run", "-t", "slurm", "spec.yaml", cwd=tmp_path)
    assert r.returncode == 2, r
    assert re.fullmatch(
        r"jobspec-do: error: spec\.yaml:4:3: tasks\[1\]: task 'huge' asks for inline "
        r"\[1 slot\(s\) x 1000 core\(s\)\], which cannot run here: 1000 cores per task "
        r"asked, the largest node has \d+\n"
        r"    hint: ask for fewer resources, or choose another partition\n"
        r"nothing was submitted \(slurm transformer\)\n", r.stderr), r.stderr
    assert len(slurm.submitted_job_ids()) == before  # the real cluster got nothing
    assert not (tmp_path / "small.ran").exists() and not (tmp_path / "huge.ran").exists()
    assert not (tmp_path / ".jobspec-do").exists()


def test_unsatisfiable_gpu_request_on_the_local_transformer_exits_2(tmp_path: Path) -> None:
    write(tmp_path, """
        version: 1
        tasks:
        - {name: cpu, command: "touch cpu.ran"}
        - name: train
          command: "touch train.ran"
          resources: {type: slot, count: 1, with: [{type: core, count: 1}, {type: gpu, count: 2}]}
        """)
    r = jobspec_do("spec.yaml", cwd=tmp_path, env={"JOBSPEC_DO_LOCAL_GPUS": "1"})
    assert r.returncode == 2, r
    assert r.stderr.startswith("jobspec-do: error: spec.yaml:4:3: tasks[1]: task 'train' asks "
                               "for inline [1 slot(s) x 1 core(s) + 2 gpu(s)], which cannot "
                               "run here"), r.stderr
    assert r.stderr.endswith("\nnothing was submitted (local transformer)\n"), r.stderr
    assert not (tmp_path / "cpu.ran").exists() and not (tmp_path / "train.ran").exists()


def test_strict_accepts_the_upstream_corpus() -> None:
    names = ["hello-world-jobspec.yaml", "examples__depends_on__jobspec.yaml",
             "group-with-group.yaml", "task-with-group.yaml", "machine-learning.yaml",
             "jobspec-spack-subystem-satisfied.yaml"]
    assert main(["validate", "--strict", *[str(REFERENCE / "corpus" / n) for n in names]]) == 0


def test_default_resources_come_from_the_transformer(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, "version: 1\ntasks: [{command: [true]}]\n")
    assert main(["validate", str(spec)]) == 0  # local supplies one core
    capsys.readouterr()


@pytest.mark.parametrize("fmt", ["text", "dot", "mermaid"])
def test_graph_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    assert main(["graph", "--format", fmt, str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    expected = {"text": "- task test  <- after build",
                "dot": '"task/build" -> "task/test";',
                "mermaid": "n0 --> n1"}[fmt]
    assert expected in out


def test_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["version"] == {"const": 1}


def test_plugins_lists_builtin_local(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    assert "local" in capsys.readouterr().out


def test_unknown_transformer_is_a_clear_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-t", "lcoal", str(write(tmp_path, GOOD))]) == 2
    assert "unknown transformer 'lcoal' (did you mean 'local'?)" in capsys.readouterr().err


def test_console_script_help_teaches() -> None:
    out = subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "exit codes:" in out and "--resume" in out


_CONSOLE = """
import atexit, sys, threading, time
from dodo_jobspec.cli import app as cli

def fake_main():
    sys.stdout.write("x" * 200_000 + "\\n")  # more than a pipe's buffer: must be flushed
    if sys.argv[1] == "thread":
        def late():
            time.sleep(0.3)
            open(sys.argv[2], "w").write("finished")
        threading.Thread(target=late).start()
    return 3

atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
cli.main = fake_main
cli.console()
"""


@pytest.mark.parametrize("case", ["plain", "thread"])
def test_console_exit_flushes_runs_atexit_and_waits_for_threads(tmp_path: Path,
                                                                case: str) -> None:
    """The console script skips freeing the heap at exit, and nothing else a normal exit
    does: buffered output, atexit handlers, the exit code, a thread still at work."""
    marker = tmp_path / "thread.txt"
    r = subprocess.run([sys.executable, "-c", _CONSOLE, case, str(marker)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert r.stdout == "x" * 200_000 + "\n"
    assert r.stderr == "atexit ran\n"
    assert (case == "thread") == marker.exists()
    if case == "thread":
        assert marker.read_text() == "finished"


RUNS = """
    version: 1
    tasks:
    - {name: touch, command: "touch ran.txt"}
    """


def test_mistyped_command_is_a_usage_error_naming_the_command(tmp_path: Path) -> None:
    write(tmp_path, RUNS, "hello.yaml")
    r = jobspec_do("stauts", "hello.yaml", cwd=tmp_path)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert r.stderr.endswith(
        "jobspec-do: error: unknown command 'stauts'; did you mean 'status'?\n"), r.stderr
    assert not (tmp_path / "ran.txt").exists()


def test_a_spec_whose_name_looks_like_a_command_still_runs(tmp_path: Path) -> None:
    write(tmp_path, RUNS, "stats")  # an existing file is the spec, however it is named
    r = jobspec_do("stats", cwd=tmp_path)
    assert r.returncode == 0, r
    assert (tmp_path / "ran.txt").exists()
    r = jobspec_do("plan.yaml", cwd=tmp_path)  # a missing spec file is no mistyped command
    assert r.returncode == 2, r
    assert r.stderr == "plan.yaml: (top level): file not found\n", r.stderr


def test_missing_spec_suggests_a_sibling_with_a_close_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, RUNS, "hello.yaml")
    assert main([str(tmp_path / "hello.yml")]) == 2
    assert capsys.readouterr().err == (f"{tmp_path / 'hello.yml'}: (top level): file not found\n"
                                       f"    hint: did you mean '{tmp_path / 'hello.yaml'}'?\n")
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2  # only a shared suffix
    assert capsys.readouterr().err == f"{tmp_path / 'nope.yaml'}: (top level): file not found\n"
    assert not (tmp_path / "ran.txt").exists()


def _json_error(out: str) -> dict[str, object]:
    data = json.loads(out)
    assert (data["format"], data["ok"]) == (1, False), data
    error: dict[str, object] = data["error"]
    return error


@pytest.mark.parametrize("command", ["plan", "status"])
def test_json_commands_print_a_json_error_on_an_invalid_spec(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    bad = write(tmp_path, "version: 1\ntasks:\n- comand: [x]\n", "bad.yaml")
    assert main([command, "--json", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert f"{bad}:3:3: tasks[0].comand: unknown key 'comand'" in err  # the human text
    error = _json_error(out)
    assert error["exit_code"] == 2
    assert error["message"] == err.rstrip("\n")
    problems = error["problems"]
    assert isinstance(problems, list) and len(problems) == 2  # every problem, as on stderr
    assert problems[0] == {"file": str(bad), "line": 3, "column": 3, "path": "tasks[0].comand",
                           "message": "unknown key 'comand'", "hint": "did you mean 'command'?"}


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_json_commands_print_a_json_error_on_a_handled_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    spec = write(tmp_path, GOOD)
    assert main([command, "--json", "-t", "lcoal", str(spec)]) == 2
    out, err = capsys.readouterr()
    assert err == "jobspec-do: error: unknown transformer 'lcoal' (did you mean 'local'?)\n"
    assert _json_error(out) == {"exit_code": 2, "problems": [],
                                "message": "unknown transformer 'lcoal' (did you mean 'local'?)"}
    # The one spec a command works on is named as `status --json` names it; validate's many
    # are the keys of its own answer.
    assert json.loads(out).get("spec") == (str(spec) if command == "plan" else None)
    assert main([command, "-t", "lcoal", str(write(tmp_path, GOOD))]) == 2
    assert capsys.readouterr().out == ""  # without --json, stdout stays empty


def test_plan_json_has_a_format_like_status_json(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, GOOD)
    assert main(["status", "--json", str(spec)]) == 1  # never ran
    status = json.loads(capsys.readouterr().out)
    assert main(["plan", "--json", str(spec)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["format"] == status["format"] == 1
    assert (plan["spec"], plan["transformer"]) == (str(spec), "local")
    assert [u["unit"] for u in plan["units"]] == ["task/build", "task/test"]
    assert all(u["runs"] for u in plan["units"])


@pytest.mark.parametrize(("args", "message"), [
    (["-j", "0"], "argument -j/--jobs: must be a positive number of parallel jobs, not '0'"),
    (["-j", "-1"], "argument -j/--jobs: must be a positive number of parallel jobs, not '-1'"),
    (["--jobs", "two"], "argument -j/--jobs: not a whole number: 'two'"),
    (["--resources-choice", "-1"], "argument --resources-choice: must be 0 or more"),
    (["plan", "--resources-choice", "-1"], "argument --resources-choice: must be 0 or more"),
    (["logs", "--attempt", "0"], "argument --attempt: must be 1 or more"),
])
def test_nonsense_numbers_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           args: list[str], message: str) -> None:
    spec = str(write(tmp_path, RUNS))
    argv = [*args, spec, "touch"] if args[0] == "logs" else [*args, spec]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ran.txt").exists()


@pytest.mark.parametrize("flags", [["--no-wait"], ["--cron", "--no-wait"]])
def test_no_wait_on_the_local_transformer_is_refused_naming_the_flag(
        tmp_path: Path, flags: list[str]) -> None:
    """Refused the same way whether work is left or everything is up to date (that case
    used to exit 0 from the no-op answer)."""
    write(tmp_path, RUNS)
    for case in ("work left", "all up to date"):
        r = jobspec_do(*flags, "spec.yaml", cwd=tmp_path)
        assert (r.returncode, r.stdout) == (2, ""), (case, r)
        assert r.stderr == ("jobspec-do: error: --no-wait needs a scheduler: the local "
                            "transformer runs tasks as children of jobspec-do (use -t slurm "
                            "or -t flux)\n")
        if case == "work left":
            assert not (tmp_path / "ran.txt").exists()
            assert jobspec_do("spec.yaml", cwd=tmp_path).returncode == 0


def test_cron_on_the_local_transformer_runs_the_spec_through_quietly(tmp_path: Path) -> None:
    """A crontab line calling `jobspec-do --cron spec.yaml` every minute: each tick that
    finds work does it, a tick while the last one still runs leaves it alone, and nothing
    is printed unless something ran or failed."""
    write(tmp_path, RUNS)
    first = jobspec_do("--cron", "spec.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "ran.txt").exists()
    assert "ok: 1 ran" in first.stderr and "start" not in first.stderr  # one closing line
    again = jobspec_do("--cron", "spec.yaml", cwd=tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    (tmp_path / "ran.txt").unlink()
    state = tmp_path / ".jobspec-do" / "spec"
    with open(state / "lock", "a") as held:  # the previous tick's run, still at work
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = jobspec_do("--cron", "spec.yaml", cwd=tmp_path)
    assert (busy.returncode, busy.stdout, busy.stderr) == (0, "", "")
    assert not (tmp_path / "ran.txt").exists()  # left to the run holding the lock
    failing = write(tmp_path, RUNS.replace("touch ran.txt", "exit 3"), "bad.yaml")
    bad = jobspec_do("--cron", failing, cwd=tmp_path)
    assert bad.returncode == 1 and "exit 3" in bad.stderr


def test_cron_help_says_what_it_does_on_each_kind_of_transformer() -> None:
    out = jobspec_do("run", "--help").stdout
    cron = " ".join(out.split("--cron ", 1)[1].split("--wait-lock")[0].split())
    assert cron.endswith("on a scheduler it is --no-wait, locally the spec runs through"), cron


def _busy_for(pid: int, cpu_seconds: float) -> None:
    """Wait until ``pid`` has used ``cpu_seconds`` of CPU: on a loaded machine a wall-clock
    sleep can end while it is still importing, before any handler could be installed."""
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        if (int(fields[11]) + int(fields[12])) / tick >= cpu_seconds:
            return
        time.sleep(0.01)


def test_sigterm_while_a_spec_loads_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """Before a run sets up its own handling a SIGTERM killed jobspec-do outright (143), and
    SIGHUP (a dropped ssh session) with 129; Ctrl-C gave a traceback from whatever was
    being imported."""
    lines = ["version: 1", "tasks:"]
    lines += [f"- {{name: t{i}, command: 'true'}}" for i in range(40000)]
    spec = tmp_path / "big.yaml"
    spec.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "JOBSPEC_DO_CACHE": "0"}  # parse it every time: seconds, not ms
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        proc = subprocess.Popen([sys.executable, "-c", "from dodo_jobspec.cli.app import console; "
                                 "console()", "plan", str(spec)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _busy_for(proc.pid, 0.5)  # past start-up, into the parse (seconds long)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (130, "jobspec-do: interrupted\n"), (signum, err)


def test_cron_locally_does_not_rerun_a_failed_task_every_tick(tmp_path: Path) -> None:
    """As on a scheduler: a failed task waits for an edit or --resume, and the ticks that
    find it still failed say nothing (cron mails what is printed) but exit 1."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: bad, command: "echo x >> count.bad; exit 3"}
        - {name: good, command: "echo x >> count.good"}
        """)
    first = jobspec_do("--cron", spec, cwd=tmp_path)
    assert first.returncode == 1 and "bad: exit 3" in first.stderr
    for _ in range(2):
        tick = jobspec_do("--cron", spec, cwd=tmp_path)
        assert (tick.returncode, tick.stdout, tick.stderr) == (1, "", "")
    assert counts(tmp_path) == {"bad": 1, "good": 1}
    resumed = jobspec_do("--cron", "--resume", spec, cwd=tmp_path)
    assert resumed.returncode == 1 and "bad: exit 3" in resumed.stderr
    spec.write_text(spec.read_text().replace("exit 3", "exit 0"))  # fixed
    fixed = jobspec_do("--cron", spec, cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert counts(tmp_path) == {"bad": 3, "good": 1}
    plain = jobspec_do(spec, cwd=tmp_path)  # without --cron a failed task is retried as ever
    assert plain.returncode == 0


def test_the_readmes_local_crontab_line_works_in_crons_bare_environment(tmp_path: Path) -> None:
    """`jobspec-do: not found` under cron: the README's line names the executable by its
    absolute path, and runs with nothing but what cron sets."""
    import re
    import shutil as sh

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(m.group(1) for m in re.finditer(r"^    \* \* \* \* \*  (.*)$", readme, re.M)
                if "-t slurm" not in m.group(1))
    exe = sh.which("jobspec-do") or str(Path(sys.executable).parent / "jobspec-do")
    assert Path(exe).is_absolute() and Path(exe).exists(), exe
    line = line.replace("/work/project/.venv/bin/jobspec-do", exe).replace(
        "/work/project", str(tmp_path))
    write(tmp_path, RUNS, "pipeline.yaml")
    for _ in range(2):
        r = subprocess.run(["env", "-i", "HOME=" + str(tmp_path), "LOGNAME=root",
                            "SHELL=/bin/sh", "PATH=/usr/bin:/bin", "/bin/sh", "-c", line],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "ran.txt").exists()
