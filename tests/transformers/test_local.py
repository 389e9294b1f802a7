"""The local transformer: commands, environment, cwd, durations, replicas, concurrency."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from tests.helpers import counts, job_record, jobspec_do, write


def _unique_seconds(whole: int) -> str:
    """``whole`` seconds plus a random fraction: a `sleep` argument no other process on the
    machine has, so that this test finds only the processes it started."""
    return f"{whole}.{random.randrange(10**8, 10**9)}"


def _with_argv(*argv: str) -> list[str]:
    """Pids of the live (not zombie) processes whose exact argv is ``argv``."""
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if fh.read() != want:
                    continue
        except OSError:  # gone meanwhile
            continue
        if _running(entry):
            found.append(entry)
    return found


def test_list_is_execd_without_a_shell_and_string_uses_sh(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: lst, command: [sh, -c, 'printf "%s|" "$0" > list.txt', "a;b $HOME"]}
        - {name: str, command: "printf '%s' \\"$((2 + 3))\\" > str.txt"}
        """)
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "list.txt").read_text() == "a;b $HOME|"  # no shell touched the argument
    assert (tmp_path / "str.txt").read_text() == "5"


def test_environment_is_added_and_inherited(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        attributes: {environment: {A: global, B: global}}
        tasks:
        - name: env
          attributes: {environment: {B: task}}
          command: 'echo "$A $B $INHERITED" > env.txt'
        """)
    assert jobspec_do(spec, cwd=tmp_path, env={"INHERITED": "yes"}).returncode == 0
    assert (tmp_path / "env.txt").read_text() == "global task yes\n"


def test_cwd_is_honoured_and_a_missing_one_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: here, command: "pwd > where.txt", attributes: {cwd: sub}}
        - {name: nowhere, command: "true", attributes: {cwd: missing-dir}}
        """)
    r = jobspec_do(spec, "-k", cwd=tmp_path)
    assert (tmp_path / "sub" / "where.txt").read_text().strip() == str(tmp_path / "sub")
    assert r.returncode == 1
    assert "cwd" in r.stderr and "missing-dir does not exist" in r.stderr


def test_duration_kills_the_process_group_and_records_timeout(tmp_path: Path) -> None:
    seconds = _unique_seconds(300)  # far longer than the test waits for it to go
    spec = write(tmp_path, f"""
        version: 1
        tasks:
        - name: slow
          command: "sleep {seconds} & sleep {seconds}; echo never >> count.slow"
          attributes: {{duration: 0.5s}}
        """)
    r = jobspec_do(spec, cwd=tmp_path, timeout=30)
    assert r.returncode == 1 and "timed out" in r.stderr
    job = job_record(tmp_path / ".jobspec-do/spec/tasks/slow")
    assert job["state"] == "timeout"
    deadline = time.monotonic() + 30  # killed; on a busy machine it may take a moment to go
    try:
        while _with_argv("sleep", seconds):
            assert time.monotonic() < deadline, \
                "the background child of the timed-out task survived"
            time.sleep(0.05)
    finally:
        _kill(_with_argv("sleep", seconds))
    assert not (tmp_path / "count.slow").exists()


@pytest.mark.parametrize("command", [
    "kill -9 $$",  # a string: /bin/sh, started by posix_spawn
    ["sh", "-c", "kill -KILL $$"],  # a program found on PATH: started by Popen
], ids=["string", "list"])
def test_a_task_killed_by_a_signal_fails_with_128_plus_the_signal(
        tmp_path: Path, command: str | list[str]) -> None:
    """The shell convention: killed by signal 9 is exit code 137, and the record says why."""
    spec = write(tmp_path, f"version: 1\ntasks: [{{name: k, command: {json.dumps(command)}}}]\n")
    r = jobspec_do(spec, cwd=tmp_path, timeout=60)
    assert r.returncode == 1, r.stderr
    job = job_record(tmp_path / ".jobspec-do/spec/tasks/k")
    assert (job["state"], job["exit_code"]) == ("failed", 137), job
    assert job["info"] == "killed by signal 9"
    assert "k: killed by signal 9" in r.stdout + r.stderr
    shown = json.loads(jobspec_do("status", "--json", spec, cwd=tmp_path).stdout)
    assert [(u["exit_code"], u["info"]) for u in shown["units"]] == [(137, "killed by signal 9")]


def test_missing_program_is_reported(tmp_path: Path) -> None:
    spec = write(tmp_path, "version: 1\ntasks: [{name: x, command: [no-such-program-xyz]}]\n")
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 1 and "cannot start 'no-such-program-xyz'" in r.stderr


def test_replicas_run_independently_with_their_index(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - name: rep
          replicas: 3
          command: 'echo $JOBSPEC_REPLICA > r$JOBSPEC_REPLICA.txt; echo x >> count.rep'
        - {name: after, depends_on: [rep], command: "cat r0.txt r1.txt r2.txt > all.txt"}
        """)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert (tmp_path / "all.txt").read_text() == "0\n1\n2\n"
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    assert counts(tmp_path) == {"rep": 3}


def test_failing_replica_fails_the_task(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: rep, replicas: 3, command: 'test $JOBSPEC_REPLICA != 1'}
        - {name: after, depends_on: [rep], command: "echo x >> count.after"}
        """)
    assert jobspec_do(spec, "-k", cwd=tmp_path).returncode == 1
    assert counts(tmp_path) == {}


def test_jobs_limit_concurrency(tmp_path: Path) -> None:
    lines = ["version: 1", "tasks:"]
    for i in range(6):
        lines.append(f"- {{name: t{i}, command: 'date +%s.%N >> starts; sleep 0.4; "
                     f"date +%s.%N >> ends'}}")
    spec = write(tmp_path, "\n".join(lines) + "\n")
    assert jobspec_do(spec, "-j", "2", cwd=tmp_path).returncode == 0
    assert _max_overlap(tmp_path) == 2


def test_a_task_bigger_than_the_machine_runs_alone_with_a_warning(tmp_path: Path) -> None:
    cmd = "echo {n} $(date +%s.%N) >> starts; sleep 0.4; echo {n} $(date +%s.%N) >> ends"
    spec = write(tmp_path, f"""
        version: 1
        resources:
          huge: {{type: node, count: 1, with: [{{type: core, count: 4096}}]}}
          one: {{type: core, count: 1}}
        tasks:
        - {{name: a, resources: one, command: '{cmd.format(n="a")}'}}
        - {{name: big, resources: huge, command: '{cmd.format(n="big")}'}}
        - {{name: b, resources: one, command: '{cmd.format(n="b")}'}}
        - {{name: c, resources: one, command: '{cmd.format(n="c")}'}}
        """)
    r = jobspec_do(spec, "-j", "4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "asks for 4096 cores" in r.stderr and "runs alone" in r.stderr
    start = dict(line.split() for line in (tmp_path / "starts").read_text().splitlines())
    end = dict(line.split() for line in (tmp_path / "ends").read_text().splitlines())
    big = (float(start["big"]), float(end["big"]))
    for other in ("a", "b", "c"):
        s, e = float(start[other]), float(end[other])
        assert e <= big[0] or s >= big[1], f"{other} overlapped the big task"


def _max_overlap(folder: Path) -> int:
    starts = [(float(x), 1) for x in (folder / "starts").read_text().split()]
    ends = [(float(x), -1) for x in (folder / "ends").read_text().split()]
    now = best = 0
    for _, delta in sorted(starts + ends, key=lambda e: (e[0], e[1])):
        now += delta
        best = max(best, now)
    return best


def test_plan_notes_multi_node_requests(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        resources: {two: {type: node, count: 2}}
        tasks: [{name: wide, resources: two, command: [hostname]}]
        """)
    r = jobspec_do("plan", spec, cwd=tmp_path)
    assert "asks for 2 nodes; runs as one local process" in r.stdout


def _kill(pids: list[str]) -> None:
    """Clean up after a failure: SIGKILL these processes (this test's own)."""
    import contextlib
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _running(pid: str) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_jobspec_do_takes_its_running_tasks_with_it(tmp_path: Path) -> None:
    """The watchdog kills the task groups of a run that was SIGKILLed: a task left running
    would finish unrecorded. Every way of starting a task: posix_spawn here and in another
    directory, and Popen (a program found on PATH)."""
    import signal
    import subprocess
    import sys

    (tmp_path / "sub").mkdir()
    # Far longer than the test waits: a task must not end on its own before it is looked at.
    a1, a2, b, c = (_unique_seconds(n) for n in (300, 301, 302, 303))
    spec = write(tmp_path, f"""
        version: 1
        tasks:
        - {{name: a, command: "sleep {a1} & sleep {a2}; echo never > a.txt"}}
        - {{name: b, command: "sleep {b}; echo never > b.txt", attributes: {{cwd: sub}}}}
        - {{name: c, command: [sh, -c, "sleep {c}; echo never > c.txt"]}}
        """)

    def sleeps() -> list[str]:
        return [pid for s in (a1, a2, b, c) for pid in _with_argv("sleep", s)]

    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-j", "3"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(mine := sleeps()) < 4:
            assert time.monotonic() < deadline, f"the tasks did not start: {mine}"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    try:
        while survivors := [p for p in mine if _running(p)]:
            assert time.monotonic() < deadline, f"tasks outlived the killed run: {survivors}"
            time.sleep(0.05)
    finally:
        _kill(sleeps())
    # A waiter that evals its command itself is killed with it: spared, it would go on to the
    # command's next line once its `sleep` was killed.
    time.sleep(0.3)
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "sub" / "b.txt").exists()


def test_a_command_of_builtins_runs_in_its_waiter_and_exec_in_a_subshell(tmp_path: Path
                                                                         ) -> None:
    """A string command is eval'd by the waiter itself (the job's process: no fork of its
    own), unless it could replace that shell (``exec``): then in a subshell of its own."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: 'read -r me rest < /proc/self/stat; echo "$me" > a.txt'}
        - {name: b, command: 'exec 3>&2; read -r me rest < /proc/self/stat; echo "$me" > b.txt'}
        """)
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tasks = tmp_path / ".jobspec-do" / "spec" / "tasks"
    pid = {t: str(job_record(tasks / t)["job_id"]).split(":")[0] for t in ("a", "b")}
    assert (tmp_path / "a.txt").read_text().strip() == pid["a"]
    assert (tmp_path / "b.txt").read_text().strip() not in ("", pid["b"])


def test_what_a_command_sets_does_not_reach_its_waiters_end(tmp_path: Path) -> None:
    """A command eval'd by its waiter may `set -eux`: the waiter's end is not traced into
    the task's stderr, and -e does not change the exit code it records."""
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: 'set -eux; echo hi'}
        - {name: b, command: 'set -e; echo hi; exit 3'}
        """)
    r = jobspec_do(spec, "-k", cwd=tmp_path)
    assert r.returncode != 0
    tasks = tmp_path / ".jobspec-do" / "spec" / "tasks"
    assert (tasks / "a" / "stderr.1").read_text() == "+ echo hi\n"
    assert job_record(tasks / "a")["state"] == "completed"
    assert job_record(tasks / "b")["exit_code"] == 3
    ends = [line for line in (tasks.parent / "journal.jsonl").read_text().splitlines()
            if '"x":' in line]
    assert sorted(line.split('"x":')[1].split(",")[0] for line in ends) == ["0", "3"]


def test_the_watchdog_spares_a_waiter_that_is_journaling_its_end() -> None:
    """After a kill -9 of jobspec-do, a waiter that evals its command is killed first,
    unless it ignores SIGTERM, which it does only while it appends its end line."""
    import subprocess
    import sys

    from dodo_jobspec.transformers.local import _WATCHDOG, WAITER_NAME, _start_time

    def waiter(script: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([WAITER_NAME, "-c", script, WAITER_NAME, "j", "p", "s", "e"],
                                executable="/bin/sh", start_new_session=True)

    busy, ending = waiter("sleep 30"), waiter("trap '' TERM; sleep 30; exit 3")
    try:
        deadline = time.monotonic() + 10
        while "SigIgn:\t0000000000004000" not in Path(f"/proc/{ending.pid}/status").read_text():
            assert time.monotonic() < deadline, "the trap was never set"
            time.sleep(0.01)
        dog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, "JSD_NOT_THERE=", WAITER_NAME],
                               stdin=subprocess.PIPE)
        assert dog.stdin is not None
        for number, proc in enumerate((busy, ending)):
            dog.stdin.write(f"{proc.pid} {_start_time(proc.pid)} {number}\n".encode())
        dog.stdin.close()
        assert dog.wait(timeout=30) == 0
        assert busy.wait(timeout=10) == -9  # killed itself, before its sleep
        # Spared: its sleep was killed and it went on to its end, as a waiter goes on to
        # append its line.
        assert ending.wait(timeout=10) == 3
    finally:
        for proc in (busy, ending):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_an_absolute_program_that_is_missing_is_reported(tmp_path: Path) -> None:
    spec = write(tmp_path, "version: 1\ntasks: [{name: x, command: [/no/such/program]}]\n")
    r = jobspec_do(spec, cwd=tmp_path)
    assert r.returncode == 1 and "cannot start '/no/such/program'" in r.stderr


def test_spawned_child_waits_polls_and_times_out() -> None:
    """The Popen-like handle of a posix_spawn'ed child."""
    import os
    import subprocess

    from dodo_jobspec.transformers.local import _Spawned

    quick = _Spawned(os.posix_spawn("/bin/sh", ["/bin/sh", "-c", "exit 7"], dict(os.environ)))
    assert quick.wait() == 7 and quick.poll() == 7
    slow = _Spawned(os.posix_spawn("/bin/sleep", ["/bin/sleep", "5"], dict(os.environ)))
    assert slow.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        slow.wait(timeout=0.1)
    os.kill(slow.pid, 9)
    assert slow.wait(timeout=5) == -9


def test_tasks_get_default_sigpipe_and_no_inherited_descriptors(tmp_path: Path) -> None:
    """A task starts as from Popen: SIGPIPE and SIGXFSZ at their defaults (Python ignores
    them, and an ignored signal survives exec), and no descriptor jobspec-do's caller left
    open beyond stdin/stdout/stderr. Every way of starting a task."""
    import os
    import subprocess
    import sys

    for sub in ("sub", "path"):
        (tmp_path / sub).mkdir()
    probe = "grep SigIgn /proc/self/status > ign.txt; ls /proc/self/fd > fds.txt"
    spec = write(tmp_path, f"""
        version: 1
        tasks:
        - {{name: here, command: "{probe}"}}
        - {{name: there, command: "{probe}", attributes: {{cwd: sub}}}}
        - {{name: onpath, command: [sh, -c, "{probe}"], attributes: {{cwd: path}}}}
        """)
    read, write_end = os.pipe()
    passed = 37  # well above what `ls` itself opens
    os.dup2(write_end, passed)
    try:
        r = subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", str(spec)], cwd=tmp_path,
                           pass_fds=(passed,), capture_output=True, text=True, timeout=60)
    finally:
        for fd in (read, write_end, passed):
            os.close(fd)
    assert r.returncode == 0, r.stderr
    for folder in (tmp_path, tmp_path / "sub", tmp_path / "path"):
        ignored = int((folder / "ign.txt").read_text().split()[1], 16)
        assert not ignored & (1 << (13 - 1)), "SIGPIPE is ignored in the task"
        assert not ignored & (1 << (25 - 1)), "SIGXFSZ is ignored in the task"
        fds = {int(n) for n in (folder / "fds.txt").read_text().split()}
        assert passed not in fds, fds


def test_a_second_thread_waits_for_the_descriptor_sweep_to_finish(monkeypatch) -> None:
    """Two threads start their first tasks at once: the one that finds the sweep of
    inherited descriptors under way must wait for it, or its child inherits them (this
    was a flaky CI failure once doit had three threads)."""
    import os
    import threading

    from dodo_jobspec.transformers import local

    read, write_end = os.pipe()
    inherited = os.dup(write_end)
    os.set_inheritable(inherited, True)
    monkeypatch.setattr(local, "_SWEPT", [])
    inside, release = threading.Event(), threading.Event()
    real = os.set_inheritable

    def slow(fd: int, value: bool) -> None:
        if fd == inherited:
            inside.set()
            release.wait(10)
        real(fd, value)

    monkeypatch.setattr(local.os, "set_inheritable", slow)
    first = threading.Thread(target=local._close_inherited)
    first.start()
    try:
        assert inside.wait(10), "the sweep never reached the descriptor"
        second = threading.Thread(target=local._close_inherited)
        second.start()
        second.join(0.3)
        assert second.is_alive(), "the second caller went on while the sweep was under way"
        release.set()
        second.join(10)
        assert not os.get_inheritable(inherited)
    finally:
        release.set()
        first.join(10)
        for fd in (read, write_end, inherited):
            os.close(fd)


def test_status_of_a_process_killed_by_a_signal_matches_what_wait_says(
        tmp_path: Path) -> None:
    """status() is what a Flux group asks of its local tasks; it said -9 and no reason."""
    from dodo_jobspec.transformers.base import JobState, UnitContext
    from dodo_jobspec.transformers.local import LocalTransformer
    from tests.helpers import load_text

    spec = load_text(tmp_path, "version: 1\ntasks: [{name: k, command: 'kill -9 $$'}]\n")
    task = spec.nodes["task/k"]
    ctx = UnitContext(spec=spec, workdir=tmp_path, attempt=1, token="t",
                      stdout=tmp_path / "out", stderr=tmp_path / "err", cwd=tmp_path)
    t = LocalTransformer()
    job = t.submit(task, ctx)
    deadline = time.monotonic() + 30
    while (st := t.status([job])[job]).state is JobState.RUNNING:
        assert time.monotonic() < deadline, "the process never ended"
        time.sleep(0.02)
    assert (st.state, st.exit_code, st.info) == (JobState.FAILED, 137, "killed by signal 9")
    t.close()


def test_a_start_time_known_from_the_boot_clock_is_the_one_proc_gives() -> None:
    """A job id's start time comes from the boot clock read around the spawn, unless the
    two readings straddle a tick: it must be what /proc says, or pid reuse goes unnoticed."""
    from dodo_jobspec.transformers.local import _TICK_NS, _known_start, _start_time

    known = 0
    for _ in range(200):
        before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        pid = os.posix_spawn("/bin/sleep", ["sleep", "1"], os.environ)
        start = _known_start(before, time.clock_gettime_ns(time.CLOCK_BOOTTIME))
        try:
            if start:
                known += 1
                assert start == _start_time(pid)
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert known > 100  # a spawn takes far less than a tick: most are known
    assert _known_start(_TICK_NS - 1, _TICK_NS) == ""  # straddling a tick


def test_the_watchdog_reads_its_pipe_in_batches_and_sees_done_at_once() -> None:
    """Two lines per task reach the watchdog; woken for each, it cost the run ~0.1 ms of CPU
    per task. It reads what has come every 10 ms instead, and still ends soon after "done"."""
    import subprocess
    import sys

    from dodo_jobspec.transformers.local import _WATCHDOG, WAITER_NAME

    dog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, "JSD_NOT_THERE=", WAITER_NAME],
                           stdin=subprocess.PIPE)
    assert dog.stdin is not None
    try:
        time.sleep(0.5)  # started and blocked on its first read
        status = Path(f"/proc/{dog.pid}/status")

        def switches() -> int:
            line = next(li for li in status.read_text().splitlines()
                        if li.startswith("voluntary_ctxt_switches:"))
            return int(line.split()[1])

        before = switches()
        for n in range(300):  # as a run sends them: a line per write(), tasks over time
            os.write(dog.stdin.fileno(), f"{10**6 + n} 1 {n}\n".encode())
            time.sleep(0.001)
            os.write(dog.stdin.fileno(), f"end {n}\n".encode())
        woken = switches() - before
        started = time.monotonic()
        os.write(dog.stdin.fileno(), b"done\n")
        assert dog.wait(timeout=10) == 0
        assert time.monotonic() - started < 1
        assert woken < 150, woken  # 600 lines over 0.4 s or more
    finally:
        if dog.poll() is None:
            dog.kill()
            dog.wait()
