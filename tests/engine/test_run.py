"""engine/run.py: which doit runner a run gets, and what Ctrl-C does on the sequential one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dodo_jobspec.engine.loader import task_dicts
from dodo_jobspec.engine.run import one_at_a_time
from dodo_jobspec.plan import build
from dodo_jobspec.records.state import StateDir
from dodo_jobspec.tasks.steps import StageConfig, StepRunner
from dodo_jobspec.tasks.unit import RunOptions, UnitRunner
from dodo_jobspec.transformers.local import LocalTransformer
from tests.helpers import history_text, job_record, load_text, write

SHAPES = {
    "a chain": ("""
        version: 1
        tasks:
        - {name: a, command: "true"}
        - {name: b, command: "true", depends_on: [a]}
        - {name: c, command: "true", depends_on: [b]}
        """, True),
    "one task": ("version: 1\ntasks: [{name: a, command: 'true'}]\n", True),
    "a fan": ("""
        version: 1
        tasks:
        - {name: a, command: "true"}
        - {name: b, command: "true"}
        - {name: c, command: "true", depends_on: [a, b]}
        """, False),
    "a diamond": ("""
        version: 1
        tasks:
        - {name: a, command: "true"}
        - {name: b, command: "true", depends_on: [a]}
        - {name: c, command: "true", depends_on: [a]}
        - {name: d, command: "true", depends_on: [b, c]}
        """, False),
    "replicas": ("version: 1\ntasks: [{name: a, command: 'true', replicas: 2}]\n", False),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_only_a_pipeline_is_one_at_a_time(tmp_path: Path, shape: str) -> None:
    text, expected = SHAPES[shape]
    spec = load_text(tmp_path, text)
    state = StateDir(tmp_path / "state", spec)
    transformer = LocalTransformer()
    steps = StepRunner(state, StageConfig(), lambda *event: None)
    runner = UnitRunner(spec, state, transformer, RunOptions(), lambda *event: None)
    dicts = task_dicts(build(spec, False), runner, steps, state, local_replicas=True)
    assert one_at_a_time(dicts) is expected


@pytest.mark.parametrize("shape,jobs,runner", [
    ("a chain", "2", "Runner"), ("a fan", "2", "MThreadRunner"), ("a fan", "1", "Runner")])
def test_a_pipeline_or_one_job_runs_on_doits_sequential_runner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str, jobs: str,
        runner: str) -> None:
    """Handing each task to a thread and back costs a pipeline ~15 % of its time for
    nothing: only one of its tasks can run at a time."""
    from doit.runner import Runner

    from dodo_jobspec.cli.app import main

    used: list[str] = []
    real = Runner.run_all

    def spy(self, task_dispatcher):  # type: ignore[no-untyped-def]
        used.append(type(self).__name__)
        return real(self, task_dispatcher)

    monkeypatch.setattr(Runner, "run_all", spy)
    monkeypatch.chdir(tmp_path)
    spec = write(tmp_path, SHAPES[shape][0])
    assert main([str(spec), "-q", "-j", jobs]) == 0
    assert used == [runner]


# jobspec-do's CLI with the SIGTERM-to-SIGKILL grace period made an hour: a run that waits
# for it instead of seeing its task end on SIGTERM does not come back within the test.
CLI_WITH_AN_HOUR_OF_GRACE = """
import sys
from dodo_jobspec.transformers import local
local.KILL_GRACE = 3600.0
from dodo_jobspec.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_on_the_sequential_runner_stops_and_records_the_task(tmp_path: Path) -> None:
    """On the sequential runner the task's wait is in the main thread, where SIGINT lands:
    the task's process group is stopped, the attempt is recorded as interrupted, and the run
    exits 130 at once: a task that ends on SIGTERM is not waited for a kill grace period."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: long, command: "sleep 60 & sleep 61; echo never"}
        """)
    # SIGINT at its default in the child: a test run started in the background (`cmd &` in
    # a script) inherits it ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-c", CLI_WITH_AN_HOUR_OF_GRACE, str(spec),
                             "-j", "1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    status = tmp_path / ".jobspec-do" / "spec" / "tasks" / "long"
    try:
        deadline = time.monotonic() + 20
        while "running" not in history_text(status):
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError("the interrupted run did not exit: it waited for the kill "
                                 "grace period (an hour here) although its task had ended "
                                 "on SIGTERM") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    job = job_record(tmp_path / ".jobspec-do" / "spec" / "tasks" / "long")
    assert job["state"] == "interrupted"
    pgid = int(history_text(status).split("pid ")[1].split(":")[0])
    deadline = time.monotonic() + 30
    while _group_alive(pgid):  # killed, then reaped by init once orphaned
        assert time.monotonic() < deadline, "the task's process group survived"
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failure_found_still_failing_is_counted_once_quiet_or_not() -> None:
    import io

    from dodo_jobspec.engine.console import Console
    from dodo_jobspec.tasks.unit import STILL_FAILING

    for quiet in (False, True):
        out = io.StringIO()
        console = Console(None, 2, quiet=quiet, stream=out, live=False)  # type: ignore[arg-type]
        console.failure("bad", f"{STILL_FAILING} (attempt 1, exit 3): ...", None)
        console.failure("worse", "exit 4", None)
        assert (console.failed, console.failures, console.known) == (2, ["bad", "worse"], 1)
        assert ("bad" in out.getvalue()) is not quiet  # said again only when not quiet


def _start_cli(tmp_path: Path, spec: Path, *args: str) -> subprocess.Popen[str]:
    # SIGINT at its default in the child (see above).
    return subprocess.Popen([sys.executable, "-c", CLI_WITH_AN_HOUR_OF_GRACE, str(spec), *args],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _running(tasks: Path, names: str) -> list[str]:
    return [n for n in names if "running" in history_text(tasks / n)]


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_after_an_interrupt_nothing_starts_and_the_run_exits_at_once(
        tmp_path: Path, signum: int) -> None:
    """-j 2 and three long tasks: an interrupt while two run used to start the third in the
    slot the first freed, then kill it after a wait. Nothing starts after an interrupt; the
    run stops what runs, records it, prints its summary and exits 130 (SIGHUP, a dropped ssh
    session, is treated like SIGTERM)."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "sleep 30"}
        - {name: b, command: "sleep 30"}
        - {name: c, command: "sleep 30"}
        """)
    tasks = tmp_path / ".jobspec-do" / "spec" / "tasks"
    proc = _start_cli(tmp_path, spec, "-j", "2")
    try:
        deadline = time.monotonic() + 20
        while len(_running(tasks, "abc")) < 2:  # doit picks which two
            assert time.monotonic() < deadline, "the tasks never started"
            time.sleep(0.05)
        time.sleep(0.3)
        first = _running(tasks, "abc")
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    (third,) = set("abc") - set(first)
    assert history_text(tasks / third) == "", history_text(tasks / third)
    assert f"start     {third}" not in err, err
    for name in first:
        assert job_record(tasks / name)["state"] == "interrupted"
    assert "interrupted: 0 ran" in err, err
    assert took < 5, f"the run took {took:.1f}s to exit after the interrupt"


@pytest.mark.parametrize("transformer,env,said", [
    ("flux", {"PATH": "/usr/bin:/bin", "FLUX_URI": ""}, "flux is not on PATH"),
    ("slurm", {"SLURM_CONF": "/nonexistent/slurm.conf"},
     "SLURM_CONF names /nonexistent/slurm.conf, which does not exist: set SLURM_CONF"),
])
def test_no_scheduler_here_is_refused_before_anything_is_recorded(
        tmp_path: Path, transformer: str, env: dict[str, str], said: str) -> None:
    """Each run used to record a failed attempt per task and exit 1; now the run stops before
    the state folder is touched, exit 2 with the reason (every time: no attempt piles up)."""
    from tests.helpers import jobspec_do

    spec = write(tmp_path, "version: 1\ntasks: [{name: a, command: 'true'}]\n")
    for args in ((), ("--no-wait",), ("--cron",)):
        r = jobspec_do(spec, "-t", transformer, *args, cwd=tmp_path, env=env)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(f"jobspec-do: error: cannot run on {transformer}: {said}"), \
            r.stderr
        assert not (tmp_path / ".jobspec-do").exists()


def test_a_task_is_shown_done_before_the_one_that_takes_its_slot_starts(tmp_path: Path) -> None:
    """-j 2: the next task's `start` used to print before the `done` of the one it replaced
    (the slot is let go before doit reports the success), and the live line said
    `running 3`. Replayed from the event lines, never more than 2 run at once."""
    from tests.helpers import jobspec_do

    tasks = "\n".join(f"- {{name: t{i}, command: 'sleep 0.{i % 3 + 1}'}}" for i in range(10))
    spec = write(tmp_path, f"version: 1\ntasks:\n{tasks}\n")
    r = jobspec_do(spec, "-j", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    running, most = set(), 0
    for line in r.stderr.splitlines():
        words = line.split()
        if len(words) > 2 and words[1] == "start":
            running.add(words[2].rstrip(":"))
        elif len(words) > 2 and words[1] == "done":
            running.discard(words[2].rstrip(":"))
        most = max(most, len(running))
    assert most == 2, r.stderr
    assert "ok: 10 ran" in r.stderr


def test_units_are_named_apart_in_the_run_log(tmp_path: Path) -> None:
    """A group and a task both named `train` both printed `done train`, and a legacy write
    step printed `done install` before `start install`."""
    from tests.helpers import jobspec_do

    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: train, command: "true"}
        - {name: after, command: "true", depends_on: [inner]}
        groups:
        - name: train
          tasks:
          - {name: inner, command: "true"}
        """)
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    done = [line.split(None, 2)[2].split(":")[0] for line in r.stderr.splitlines()
            if line.split()[1:2] == ["done"]]
    assert sorted(done) == ["after", "group/train", "inner", "train"], r.stderr
    legacy = write(tmp_path, """
        version: 1
        resources: [{type: core, count: 1}]
        task:
          command: ["/bin/sh", "job.sh"]
          transform:
          - {step: write, filename: job.sh}
          - {step: submit, filename: job.sh}
          scripts:
          - {name: job.sh, content: "echo hi"}
        """, "legacy.yaml")
    r = jobspec_do(legacy, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    events = [" ".join(line.split()[1:3]) for line in r.stderr.splitlines()[:-1]]
    (task,) = {e.split()[1].rstrip(":") for e in events if e.startswith("start")}
    assert events.index(f"start {task}:") < events.index(f"done {task}:"), r.stderr
    assert f"done      {task} (write job.sh): in " in r.stderr, r.stderr
