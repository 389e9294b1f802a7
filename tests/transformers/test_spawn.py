"""posix_spawn through ctypes: the child it makes, its errors, and the GIL left free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dodo_jobspec.transformers import spawn
from tests.helpers import write

pytestmark = pytest.mark.skipif(not spawn.available(), reason="needs Linux with glibc >= 2.26")


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _count_os_spawns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The programs os.posix_spawn starts from here on, in order (it still starts them)."""
    started: list[str] = []
    real = os.posix_spawn

    def counted(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        started.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "posix_spawn", counted)
    return started


def test_child_has_its_own_session_default_signals_and_the_given_streams(tmp_path: Path
                                                                         ) -> None:
    stdin = tmp_path / "in.txt"
    stdin.write_text("from stdin\n")
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    out.write_text("an older, longer content that must be truncated away\n")
    fd = os.open(stdin, os.O_RDONLY)
    try:
        pid = spawn.spawn("/bin/sh", ["/bin/sh", "-c", "cat; echo oops >&2; exec sleep 5"],
                          {b"PATH": os.environ["PATH"].encode()}, fd, str(out), str(err))
    finally:
        os.close(fd)
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline, "the child never reached its sleep"
            time.sleep(0.01)
        fields = _stat_fields(pid)
        assert int(fields[3]) == pid, "not the leader of a new session"
        ignored = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("SigIgn:"))
        mask = int(ignored.split()[1], 16)
        assert not mask & (1 << (signal.SIGPIPE - 1)) and not mask & (1 << (signal.SIGXFSZ - 1))
    finally:
        os.kill(pid, signal.SIGKILL)
        assert _wait(pid) == -signal.SIGKILL
    assert out.read_text() == "from stdin\n"
    assert err.read_text() == "oops\n"


def test_child_gets_exactly_the_environment_given(tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    env = {b"ONLY": b"this", b"SPACED": b"a b=c"}
    pid = spawn.spawn("/usr/bin/env", ["/usr/bin/env"], env, 0, str(out), str(out) + ".err")
    assert _wait(pid) == 0
    assert sorted(out.read_text().splitlines()) == ["ONLY=this", "SPACED=a b=c"]


def test_cwd_is_entered_after_the_logs_are_opened(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if not spawn.can_chdir():
        pytest.skip("glibc < 2.29 has no posix_spawn_file_actions_addchdir_np")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    pid = spawn.spawn("/bin/sh", ["/bin/sh", "-c", "pwd"], {}, 0, "where.txt", "where.err",
                      cwd="sub")
    assert _wait(pid) == 0
    # Relative log paths are ours (as with Popen, which opens them in the parent).
    assert (tmp_path / "where.txt").read_text().strip() == str(tmp_path / "sub")
    assert not (tmp_path / "sub" / "where.txt").exists()


def test_a_missing_program_and_an_unwritable_log_are_told_apart(tmp_path: Path) -> None:
    with pytest.raises(OSError) as missing:
        spawn.spawn("/no/such/program", ["/no/such/program"], {}, 0, str(tmp_path / "o"),
                    str(tmp_path / "e"))
    assert missing.value.errno == 2 and missing.value.filename == "/no/such/program"
    log = str(tmp_path / "no-such-dir" / "out.txt")
    with pytest.raises(OSError) as unwritable:
        spawn.spawn("/bin/true", ["/bin/true"], {}, 0, log, log)
    assert unwritable.value.errno == 2 and unwritable.value.filename == log


_GIL_PROBE = """
import os, threading, sys
from dodo_jobspec.transformers import spawn
fifo = sys.argv[1]
pids = []
def start():
    # The child blocks opening its stdout (a FIFO with no reader yet), so the spawning thread
    # stays inside posix_spawn until another thread opens the FIFO for reading.
    if sys.argv[2] == "ctypes":
        pids.append(spawn.spawn("/bin/true", ["/bin/true"], {}, 0, fifo, os.devnull))
    else:
        actions = [(os.POSIX_SPAWN_OPEN, 1, fifo, os.O_WRONLY, 0)]
        pids.append(os.posix_spawn("/bin/true", ["/bin/true"], {}, file_actions=actions))
t = threading.Thread(target=start)
t.start()
reader = os.open(fifo, os.O_RDONLY)  # needs this thread to run Python meanwhile
t.join()
os.waitpid(pids[0], 0)
print("ok")
"""


@pytest.mark.parametrize("how", ["ctypes", "os.posix_spawn"])
def test_spawning_leaves_the_gil_to_other_threads(tmp_path: Path, how: str) -> None:
    """The point of spawn.py: while one thread waits in posix_spawn for its child to exec,
    the others run. os.posix_spawn holds the GIL meanwhile: the same probe deadlocks (the
    reader thread never runs), which this test expects, to show the probe can fail."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = write(tmp_path, textwrap.dedent(_GIL_PROBE), "probe.py")
    root = str(Path(__file__).resolve().parents[2])
    try:
        r = subprocess.run([sys.executable, str(script), str(fifo), how.split(".")[0]],
                           capture_output=True, text=True, timeout=8,
                           env={**os.environ, "PYTHONPATH": root}, start_new_session=True)
    except subprocess.TimeoutExpired:
        deadlocked = True
    else:
        assert r.returncode == 0, r.stderr
        deadlocked = False
    if how == "ctypes":
        assert not deadlocked, "spawn() held the GIL while the child started"
    else:
        assert deadlocked, "the probe cannot tell a held GIL from a released one"
        # Unblock the stuck child so nothing is left behind.
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))


def test_without_ctypes_tasks_start_through_os_posix_spawn_just_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where spawn.py is not available (another libc), the local transformer falls back to
    os.posix_spawn, and a task starts the same: default signals, its logs, its cwd."""
    from dodo_jobspec.cli.app import main

    monkeypatch.setattr(spawn, "_LIBC", [None])
    assert not spawn.available()
    started = _count_os_spawns(monkeypatch)
    monkeypatch.chdir(tmp_path)
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: here, command: "grep SigIgn /proc/self/status; echo err >&2"}
        """)
    assert main([str(spec), "-q"]) == 0
    assert started == ["/bin/sh"]
    task = tmp_path / ".jobspec-do" / "spec" / "tasks" / "here"
    mask = int((task / "stdout.1").read_text().split()[1], 16)
    assert not mask & (1 << (signal.SIGPIPE - 1)) and not mask & (1 << (signal.SIGXFSZ - 1))
    assert (task / "stderr.1").read_text() == "err\n"


def test_one_unit_at_a_time_starts_through_os_posix_spawn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When doit runs one unit at a time no thread waits for the GIL, and a task starts
    through os.posix_spawn (cheaper than spawn.py's ctypes calls): its logs, default signals."""
    from dodo_jobspec.cli.app import main

    def not_this_way(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("started through ctypes")

    monkeypatch.setattr(spawn, "spawn", not_this_way)
    started = _count_os_spawns(monkeypatch)
    monkeypatch.chdir(tmp_path)
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "grep SigIgn /proc/self/status; echo err >&2"}
        - {name: b, command: "echo b", depends_on: [a]}
        """)
    assert main([str(spec), "-q", "-j", "2"]) == 0
    assert started == ["/bin/sh", "/bin/sh"]
    tasks = tmp_path / ".jobspec-do" / "spec" / "tasks"
    mask = int((tasks / "a" / "stdout.1").read_text().split()[1], 16)
    assert not mask & (1 << (signal.SIGPIPE - 1)) and not mask & (1 << (signal.SIGXFSZ - 1))
    assert (tasks / "a" / "stderr.1").read_text() == "err\n"
    assert (tasks / "b" / "stdout.1").read_text() == "b\n"


def test_a_log_planted_as_a_link_is_refused_when_alone_too(tmp_path: Path) -> None:
    """os.posix_spawn opens the logs without following links, and its failure is told as
    spawn.py tells it: the log named, the link's target untouched."""
    from types import SimpleNamespace

    from dodo_jobspec.transformers.local import _spawn

    target = tmp_path / "elsewhere.txt"
    target.write_text("keep\n")
    out = tmp_path / "stdout.1"
    out.symlink_to(target)
    ctx = SimpleNamespace(cwd=tmp_path, stdout=out, stderr=tmp_path / "stderr.1")
    with pytest.raises(OSError) as caught:
        _spawn(["sh", "-c", "echo hi"], ctx, {}, str(tmp_path), alone=True)  # type: ignore[arg-type]
    assert caught.value.filename == str(out)
    assert target.read_text() == "keep\n"
