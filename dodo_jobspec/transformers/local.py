"""The local transformer: run each task as a process on this machine (the embedded default).

- A list command is exec'd without a shell; a string runs under ``/bin/sh -c`` (the spec allows
  both).
- ``environment`` is added on top of the inherited environment; ``cwd`` must exist.
- ``duration`` is enforced: the task's whole process group is killed and the task is TIMEOUT.
- Each process gets its own session, so a timeout or a cancel reaches its children too.

A job id is ``pid:starttime`` (from /proc), so an id recorded by a killed run is never confused
with an unrelated process that later got the same pid.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import Problem
from ..spec.model import Resource, ResourceRequest, Spec, Task, Unit
from . import spawn
from .base import JobState, JobStatus, SubmitError, Transformer, UnitContext

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL, as Slurm's KillWait does
HOST = socket.gethostname()  # where every task of this transformer runs: the status says so
RUN_MARKER = "JOBSPEC_DO_RUN"  # names the run that started a task, in the task's environment

# Each task runs as the child of a tiny shell, its waiter, which appends the command's exit
# code and the attempt's signature to the state folder's journal (records/journal.py) the
# moment it ends, then exits with that code. The waiter outlives a kill -9 of jobspec-do (the
# watchdog kills the command, not the waiter; one that evals its command itself is killed
# unless it is already journaling the end, when it ignores SIGTERM), so an end that came
# just before the kill is on disk and --resume adopts it instead of running the task again.
# One O_APPEND write of one short line: a reader sees the whole line
# or none. A command killed by a signal takes its waiter with it by the same signal, so the
# run sees what it saw before (killed by signal N).
#
# A string command is eval'd by the waiter itself, which writes its line from an EXIT trap:
# no fork of its own, so a command of shell builtins (`echo 1 > out`) costs one process, as
# under `sh -c`. A command that could take the trap away (`exec`, `trap`, or anything it
# sources or evals, which may hold them) runs in a subshell instead, as does a list command
# (a fork that then execs the program). The waiter's own names start with __jsd_, so that a
# command's variables do not overwrite them, and its end undoes what the command may have
# `set` (-e would exit on a failed append with the wrong code; -x would trace the waiter
# into the task's stderr).
WAITER_NAME = "jobspec-do-task"  # the waiter's argv[0]: the watchdog tells it apart by this
_WAITER = """__jsd_j=$1 __jsd_p=$2 __jsd_s=$3 __jsd_k=$4; shift 4
__jsd_end() {
set +eux
trap - EXIT
trap '' TERM
command printf '%s%s,"g":"%s"}\\n' "$__jsd_p" "$1" "$__jsd_s" >> "$__jsd_j"
if [ "$1" -gt 128 ] && [ "$1" -lt 160 ]; then command kill -$(($1 - 128)) $$ 2>/dev/null; fi
exit "$1"
}
if [ "$__jsd_k" = e ]; then
trap '{ __jsd_end $?; } 2>/dev/null' EXIT
__jsd_c=$1; shift; unset __jsd_k
eval "$__jsd_c"
else
if [ "$__jsd_k" = s ]; then (__jsd_c=$1; shift; eval "$__jsd_c"); else ("$@"); fi
__jsd_end $?
fi
"""
# Words after which a command may replace or un-trap the shell that evals it (see above).
_OWN_SHELL = re.compile(r"\b(exec|trap|eval|source|command|builtin)\b|(^|[\s;&|(`])\.(\s|$)")


def waiter_kind(command: str) -> str:
    """``e``: the waiter may eval ``command`` itself; ``s``: in a subshell of its own."""
    return "s" if _OWN_SHELL.search(command) else "e"


class LocalTransformer(Transformer):
    """Runs tasks as local processes; groups are sub-runs of their children."""

    name = "local"
    description = "processes on this machine (the default; needs nothing installed)"
    default_resources = Resource("core", 1)
    submits_groups = False
    can_reattach = False
    polled = False

    def __init__(self, options=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(options)
        self._procs: dict[str, subprocess.Popen[bytes] | _Spawned] = {}
        self._durations: dict[str, float | None] = {}
        self._dog: _Watchdog | None = None
        self._lock = threading.Lock()
        self._env: dict[bytes, bytes] | None = None
        self._cwd = ""
        self._lock_fd: int | None = None
        # In each task's environment, RUN_MARKER=<run>:<task number>: what the watchdog looks
        # for after a kill -9, and what a timeout or a cancel stops besides the task's group.
        self._run = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._numbers = itertools.count()
        self._marks: dict[str, str] = {}  # job id -> its task's marker value
        self._alone = False  # doit runs one unit at a time: start processes holding the GIL

    def check(self, spec: Spec) -> list[Problem]:
        """The base checks, plus every task that asks for more GPUs than this machine has.

        Cores are time-shared (an oversized task runs alone, with a warning); a GPU that is
        not there cannot be."""
        problems = super().check(spec)
        gpus = machine_gpus()
        over: dict[int, bool] = {}  # most tasks share one request: count its GPUs once
        for node in spec.nodes.values():
            if not isinstance(node, Task):
                continue
            req, _ = self.choose(node)
            if req is None:
                continue
            short = over.get(id(req))
            if short is None:
                short = over[id(req)] = req.counts.gpus > gpus
            if short:
                problems.append(Problem(
                    f"task '{node.name}' asks for {req.label}, which cannot run here: this "
                    f"machine has {gpus} GPU(s)", (node.spec_path,),
                    "run it with -t slurm or -t flux, give it an alternative without GPUs "
                    f"(a|b resources), or set {GPUS_ENV} if this machine's GPUs were not "
                    "found", str(spec.path)))
        return problems

    def choose(self, node: Unit) -> tuple[ResourceRequest | None, str]:
        """The first alternative this machine's GPUs allow, else the first."""
        alts = node.resources
        if len(alts) == 1 and self.options.resources_choice is None:
            return alts[0], "as requested"  # the common case, asked twice per unit by `plan`
        req, why = super().choose(node)
        if len(alts) < 2 or self.options.resources_choice is not None:
            return req, why
        gpus = machine_gpus()
        for i, alt in enumerate(node.resources):
            if alt.counts.gpus <= gpus:
                return alt, (why if i == 0 else f"alternative {i + 1} of "
                             f"{len(node.resources)}: the first that this machine's GPUs allow")
        return req, why

    def argv(self, task: Task) -> list[str]:
        """The argv that runs ``task`` (a string command goes through /bin/sh -c)."""
        if isinstance(task.command, str):
            return ["/bin/sh", "-c", task.command]
        return list(task.command or ("true",))

    def describe(self, unit: Unit, ctx: UnitContext) -> str:
        if not isinstance(unit, Task):
            return f"group {unit.name}: runs its {len(unit.children)} children in order"
        if isinstance(unit.command, str):  # the common case: only the command needs quoting
            run = "/bin/sh -c " + shlex.quote(unit.command)
        else:
            run = shlex.join(self.argv(unit))
        lines = [f"run: {run}", f"  cwd: {ctx.cwd}"]
        for key, value in sorted(unit.attributes.environment.items()):
            lines.append(f"  env: {key}={value}")
        if unit.attributes.duration is not None:
            lines.append(f"  time limit: {unit.attributes.duration:g}s")
        if unit.replicas > 1:
            lines.append(f"  replicas: {unit.replicas} (each its own process)")
        req, _why = self.choose(unit)
        if req is not None and req.counts.nodes > 1:
            lines.append(f"  note: asks for {req.counts.nodes} nodes; runs as one local process")
        lines.append(f"  stdout: {ctx.stdout}\n  stderr: {ctx.stderr}")
        return "\n".join(lines)

    def submit(self, unit: Unit, ctx: UnitContext) -> str:
        if not isinstance(unit, Task):
            raise SubmitError(f"the local transformer runs group '{unit.name}' as its children")
        here = self._cwd or os.getcwd()
        self._cwd = here  # nothing in jobspec-do changes directory during a run
        if os.fspath(ctx.cwd) != here and not ctx.cwd.is_dir():
            raise SubmitError(f"task '{unit.name}': cwd {ctx.cwd} does not exist")
        env = self._base_env().copy()
        for key, value in (*unit.attributes.environment.items(), *_replica_env(ctx).items()):
            env[os.fsencode(key)] = os.fsencode(value)
        number = next(self._numbers)
        mark = f"{self._run}:{number}"
        env[RUN_MARKER.encode()] = mark.encode()
        command = self.argv(unit)
        if not isinstance(unit.command, str):
            _check_program(unit.name, command[0], env, ctx.cwd)
        journal, prefix = ctx.end_line or ("/dev/null", "{")
        journal = os.path.join(here, journal)  # the command may cd before the waiter appends
        argv = [WAITER_NAME, "-c", _WAITER, WAITER_NAME, journal, prefix, ctx.signature or "-"]
        argv += [waiter_kind(unit.command), unit.command] if isinstance(unit.command, str) \
            else ["l", *command]
        dog = self._watchdog()  # up before the first task starts: it must outlive it
        before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        try:
            proc = _spawn(argv, ctx, env, here, self._alone)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename not in (None, argv[0]) else ""
            raise SubmitError(f"task '{unit.name}': cannot start "
                              f"{command[0]!r}: {exc.strerror}{where}") from exc
        started = _known_start(before, time.clock_gettime_ns(time.CLOCK_BOOTTIME)) \
            or _start_time(proc.pid)
        job_id = f"{proc.pid}:{started}"
        dog.send(f"{proc.pid} {started} {number}")  # the pid is the group id: a new session
        with self._lock:
            self._procs[job_id] = proc
            self._durations[job_id] = unit.attributes.duration
            self._marks[job_id] = mark
        return job_id

    def wait(self, job_id: str) -> JobStatus:
        """Wait for a process this transformer started, enforcing the task's duration."""
        with self._lock:
            proc = self._procs.get(job_id)
            duration = self._durations.get(job_id)
        if proc is None:  # not our child (left by a killed run): it cannot be waited on
            return JobStatus(JobState.LOST, None, "not started by this run")
        with self._lock:
            mark = self._marks.get(job_id, "")
        try:
            code = proc.wait(timeout=duration)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, proc, mark)
            return JobStatus(JobState.TIMEOUT, None, f"timed out: stopped after its duration "
                             f"of {duration:g}s", HOST)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM while waiting in the main thread
            _kill_group(proc.pid, proc, mark)
            raise
        finally:
            with self._lock:
                self._procs.pop(job_id, None)
                self._durations.pop(job_id, None)
                self._marks.pop(job_id, None)
                dog = self._dog
            if dog is not None:
                # Ended: what it left running on purpose (a daemon) is not the watchdog's.
                dog.send(f"end {mark.rpartition(':')[2]}")
        return _ended(code)

    def _base_env(self) -> dict[bytes, bytes]:
        """This process's environment, encoded once per run rather than once per task."""
        with self._lock:
            if self._env is None:
                self._env = {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
            return self._env

    def _watchdog(self) -> _Watchdog:
        with self._lock:
            if self._dog is None:
                self._dog = _Watchdog(f"{RUN_MARKER}={self._run}:", self._lock_fd)
            return self._dog

    def hold_lock(self, fd: int) -> None:
        self._lock_fd = fd

    def one_thread(self, alone: bool) -> None:
        self._alone = alone

    def close(self) -> None:
        with self._lock:
            dog, self._dog = self._dog, None
            idle = not self._procs
        if dog is not None:
            dog.close(done=idle)

    def running(self) -> list[str]:
        with self._lock:
            return [j for j, p in self._procs.items() if p.poll() is None]

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        out = {}
        for job_id in job_ids:
            with self._lock:
                proc = self._procs.get(job_id)
            if proc is not None and proc.poll() is None:
                out[job_id] = JobStatus(JobState.RUNNING, where=HOST)
            elif proc is not None:
                out[job_id] = _ended(proc.returncode)
            else:
                alive = process_alive(job_id)
                out[job_id] = JobStatus(JobState.RUNNING if alive else JobState.LOST, None,
                                        "left by an earlier run" if alive else "",
                                        HOST if alive else "")
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            with self._lock:
                proc = self._procs.get(job_id)
                mark = self._marks.get(job_id, "")
            if proc is not None:
                _kill_group(proc.pid, proc, mark)
            elif process_alive(job_id):
                _kill_group(int(job_id.split(":")[0]), None)


# Reads "PGID STARTTIME" lines, one per task, until "done" (jobspec-do ended its run) or the
# end of input (jobspec-do exited or was killed, however). Then it kills every process of
# every registered group whose leader (the task's waiter) is still that same process (its
# start time tells a reused pid apart); and unless told "done", the groups of every process
# that carries this run's marker in its environment: a task started just before a kill -9
# had no time to be registered. A waiter is spared, so that it records how its command
# ended, unless it is running the command itself (see _WAITER).
_WATCHDOG = """
import os, signal, sys, time
prefix, tasks, ended, done = sys.argv[1].encode(), {}, set(), False
waiter = sys.argv[2].encode() + b"\\0"
rest = b""
while not done:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    *lines, rest = (rest + chunk).split(b"\\n")
    for line in lines:
        words = line.split()
        if words == [b"done"]:
            done = True
            break
        if len(words) == 2 and words[0] == b"end":
            ended.add(words[1])
        elif len(words) == 3:
            tasks[words[2]] = words[:2]
    # Read in batches: a read waiting on the pipe would wake this process for every line,
    # two per task; a run's death is still seen within 10 ms.
    time.sleep(0.01)
groups = set()
for number, (pgid, started) in tasks.items():
    try:
        with open(b"/proc/" + pgid + b"/stat", "rb") as fh:
            if number not in ended and fh.read().rsplit(b")", 1)[1].split()[19] == started:
                groups.add(int(pgid))
    except (OSError, IndexError, ValueError):
        pass
names = [n for n in os.listdir("/proc") if n.isdigit()] if groups or not done else []
for name in () if done else names:
    try:
        with open("/proc/" + name + "/environ", "rb") as fh:
            for var in fh.read().split(b"\\0"):
                if var.startswith(prefix) and var[len(prefix):] not in ended:
                    groups.add(os.getpgid(int(name)))
    except (OSError, ValueError):
        pass
def writing(pid):
    # A waiter ignores SIGTERM only while it journals how its command ended (see _WAITER).
    with open("/proc/%d/status" % pid, "rb") as fh:
        for line in fh:
            if line.startswith(b"SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False
def kill_evaluators():
    # A waiter that evals its command itself is that command: it goes first, before what it
    # started, or it would go on to the command's next line once that is killed.
    for pgid in groups:
        try:
            with open("/proc/%d/cmdline" % pgid, "rb") as fh:
                argv = fh.read().split(b"\\0")
            if argv[0] + b"\\0" == waiter and len(argv) > 7 and argv[7] == b"e" \
                    and not writing(pgid):
                os.kill(pgid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
def kill_groups():
    for name in names:
        try:
            with open("/proc/" + name + "/stat", "rb") as fh:
                pgid = int(fh.read().rsplit(b")", 1)[1].split()[2])
            if pgid not in groups:
                continue
            if pgid == int(name):
                with open("/proc/" + name + "/cmdline", "rb") as fh:
                    if fh.read().startswith(waiter):
                        continue
            os.kill(int(name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass
kill_evaluators()
kill_groups()
kill_groups()  # what forked while the first pass went by
"""


class _Watchdog:
    """Kills our tasks' process groups if jobspec-do dies, kill -9 included.

    A task that outlived a killed run would finish unrecorded and run again on --resume. A
    parent-death signal set in each child (preexec_fn) would do it too, but preexec_fn forces a
    full fork() of this process: 4 ms per task instead of 0.7 ms. One watchdog per run, fed
    through a pipe only this process holds, costs two small writes per task (its start, its
    end). A task started but not yet registered when the kill came is found by its marker in
    its environment; what an ended task left running on purpose is left alone.
    It holds the state directory's lock (``lock_fd``) until it has done its work, so that a
    run started right after the kill cannot start a task while the old copy still runs.
    """

    def __init__(self, prefix: str, lock_fd: int | None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, prefix, WAITER_NAME],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     pass_fds=() if lock_fd is None else (lock_fd,))
        self.lock = threading.Lock()

    def send(self, line: str) -> None:
        """``PGID STARTTIME NUMBER`` when a task starts, ``end NUMBER`` when it ends."""
        assert self.proc.stdin is not None
        with self.lock, contextlib.suppress(OSError):  # one write() per line: never mixed
            if self.proc.stdin.closed:
                return
            os.write(self.proc.stdin.fileno(), f"{line}\n".encode())

    def close(self, done: bool) -> None:
        """The run is over: ``done`` when none of its tasks can still be running (else the
        watchdog does its work as after a kill). Waits for it to let go of the lock."""
        assert self.proc.stdin is not None
        with self.lock, contextlib.suppress(OSError):
            if done:
                os.write(self.proc.stdin.fileno(), b"done\n")
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def _check_program(task: str, program: str, env: dict[bytes, bytes], cwd: Path) -> None:
    """SubmitError when a list command's program cannot be found or run: the waiter would
    only say so on the task's stderr, as exit 127."""
    if "/" in program:
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return
        why = "No such file or directory" if not os.path.exists(path) else "Permission denied"
    else:
        search = os.fsdecode(env.get(b"PATH", os.defpath.encode()))
        if shutil.which(program, path=search) is not None:
            return
        why = "No such file or directory"
    raise SubmitError(f"task '{task}': cannot start {program!r}: {why}")


def _spawn(argv: list[str], ctx: UnitContext, env: dict[bytes, bytes], here: str,
           alone: bool = False) -> subprocess.Popen[bytes] | _Spawned:
    """Start ``argv`` in its own session, stdin from /dev/null, stdout/stderr to the logs.

    ``argv`` is the waiter's (see _WAITER): always /bin/sh, which finds the task's program
    on the task's PATH. posix_spawn where it can do the job: it costs the parent a third of
    what Popen does. Through ctypes (spawn.py) it also leaves the GIL to doit's other threads
    while the child starts, and can enter another directory; ``os.posix_spawn`` is the
    fallback on other libcs, and Popen for another directory there. ``alone`` (no other
    thread wants the GIL): ``os.posix_spawn`` first, which costs ~0.08 ms less per start
    than the ctypes calls.
    """
    _close_inherited()
    cwd = os.fspath(ctx.cwd)
    shell = "/bin/sh"  # argv[0] is the waiter's name, which the watchdog looks for
    if alone and cwd == here:
        actions = [(os.POSIX_SPAWN_DUP2, _devnull(), 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.fspath(ctx.stdout), spawn.CREATE, 0o644),
                   (os.POSIX_SPAWN_OPEN, 2, os.fspath(ctx.stderr), spawn.CREATE, 0o644)]
        with contextlib.suppress(OSError):  # the ways below say which file was at fault
            return _Spawned(os.posix_spawn(shell, argv, env, file_actions=actions,
                                           setsid=True, setsigdef=_RESTORED_SIGNALS))
    if spawn.available() and (cwd == here or spawn.can_chdir()):
        return _Spawned(spawn.spawn(shell, argv, env, _devnull(), os.fspath(ctx.stdout),
                                    os.fspath(ctx.stderr), None if cwd == here else cwd))
    if os.fspath(ctx.cwd) == here:
        # The logs are opened here, not by the child: this thread holds the GIL until the
        # child has exec'd, and creating a file on a busy disk can take half a millisecond.
        create = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
        out = os.open(ctx.stdout, create, 0o644)
        try:
            err = os.open(ctx.stderr, create, 0o644)
            try:
                actions = [(os.POSIX_SPAWN_DUP2, _devnull(), 0), (os.POSIX_SPAWN_DUP2, out, 1),
                           (os.POSIX_SPAWN_DUP2, err, 2)]
                # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored
                # across exec: Popen resets them (restore_signals), and so must we.
                return _Spawned(os.posix_spawn(shell, argv, env, file_actions=actions,
                                               setsid=True, setsigdef=_RESTORED_SIGNALS))
            finally:
                os.close(err)
        finally:
            os.close(out)
    with _log(ctx.stdout) as out, _log(ctx.stderr) as err:
        return subprocess.Popen(argv, executable=shell, cwd=ctx.cwd, env=env, stdout=out,
                                stderr=err, stdin=_devnull(), start_new_session=True)


def _log(path: Path | str) -> IO[bytes]:
    """A task's log opened for writing, never through a link planted in its place."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644),
                     "wb")


_RESTORED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, n))
_SWEPT: list[bool] = []
_SWEEP_LOCK = threading.Lock()


def _close_inherited() -> None:
    """Make the descriptors this process inherited (fd 3 and up) close on exec, once.

    Popen closes them in each child (close_fds); posix_spawn cannot. Descriptors Python opens
    are close-on-exec already, so what is left is what our caller passed down (a cron job's
    or a shell's), which a task must not hold open."""
    if _SWEPT:
        return
    # Done is said only once the sweep is over: a second thread starting a task meanwhile
    # waits here instead of spawning a child that inherits what is not swept yet.
    with _SWEEP_LOCK:
        if _SWEPT:
            return
        for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else ():
            fd = int(name)
            if fd > 2:
                with contextlib.suppress(OSError):
                    if os.get_inheritable(fd):
                        os.set_inheritable(fd, False)
        _SWEPT.append(True)


class _Spawned:
    """The part of Popen's interface this transformer uses, for a posix_spawn'ed child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def _reaped(self, status: int) -> int:
        with self._lock:
            if self.returncode is None:
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by the thread blocked in wait()
                return self.returncode
            if pid == self.pid:
                return self._reaped(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            while self.returncode is None:
                try:
                    _, status = os.waitpid(self.pid, 0)
                except ChildProcessError:  # reaped by poll() in another thread
                    time.sleep(0.001)
                    continue
                self._reaped(status)
            return self.returncode
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while (code := self.poll()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired([str(self.pid)], timeout)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)
        return code


_DEVNULL: list[int] = []


def _devnull() -> int:
    """One /dev/null descriptor for every task's stdin (Popen would open and close one each)."""
    if not _DEVNULL:
        _DEVNULL.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    return _DEVNULL[0]


def _ended(code: int | None) -> JobStatus:
    """The status of a process that ended with ``code`` (negative: killed by that signal,
    which the shell convention reports as 128 + N)."""
    if code == 0:
        return JobStatus(JobState.COMPLETED, 0, where=HOST)
    if code is not None and code < 0:
        return JobStatus(JobState.FAILED, 128 - code, f"killed by signal {-code}", HOST)
    return JobStatus(JobState.FAILED, code, where=HOST)


def _replica_env(ctx: UnitContext) -> dict[str, str]:
    return {"JOBSPEC_REPLICA": str(ctx.replica), "JOBSPEC_ATTEMPT": str(ctx.attempt)}


_TICK_NS = 10**9 // os.sysconf("SC_CLK_TCK")


def _known_start(before: int, after: int) -> str:
    """A child's start time as /proc/PID/stat gives it (clock ticks since boot), from the
    boot clock read just before and just after it was spawned: its start is stamped between
    the two. "" when they straddle a tick: only /proc can tell then. Reading /proc right
    after a spawn is a system call that the busy child makes slow (0.2 ms per task)."""
    tick = before // _TICK_NS
    return str(tick) if after // _TICK_NS == tick else ""


def _start_time(pid: int) -> str:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return "0"
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return "0"
    finally:
        os.close(fd)
    # Field 22 (starttime) follows the parenthesised command name, which may contain spaces.
    fields = stat.rsplit(b")", 1)[1].split()
    return fields[19].decode() if len(fields) > 19 else "0"


GPUS_ENV = "JOBSPEC_DO_LOCAL_GPUS"


def machine_gpus() -> int:
    """How many GPUs this machine has: ``$JOBSPEC_DO_LOCAL_GPUS`` if set, else the NVIDIA
    devices (/dev/nvidiaN) and, where the AMD driver is loaded (/dev/kfd), the render nodes."""
    told = os.environ.get(GPUS_ENV, "").strip()
    if told.isdigit():
        return int(told)
    try:
        names = os.listdir("/dev")
    except OSError:
        return 0
    count = sum(1 for n in names if n.startswith("nvidia") and n[6:].isdigit())
    if "kfd" in names:
        with contextlib.suppress(OSError):
            count += sum(1 for n in os.listdir("/dev/dri") if n.startswith("renderD"))
    return count


def _kill_marked(mark: str) -> None:
    """SIGKILL the process group of every process whose environment has this task's marker:
    what is left of a stopped task after its own group (the grace time was its chance)."""
    want = f"{RUN_MARKER}={mark}".encode()
    for name in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if want in fh.read().split(b"\0"):
                    os.killpg(os.getpgid(int(name)), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def process_alive(job_id: str) -> bool:
    """Whether the process of a local job id (``pid:starttime``) still exists, zombie or not
    (a reused pid has another start time)."""
    pid_text, _, started = job_id.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return _start_time(pid) == started and started != "0"


def _kill_group(pid: int, proc: subprocess.Popen[bytes] | _Spawned | None,
                mark: str = "") -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after the grace time;
    with ``mark``, then every process still carrying it (one that left the group: setsid)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        if mark:
            _kill_marked(mark)
        return
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        if proc is None and not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if mark:
        _kill_marked(mark)
    if proc is not None:
        proc.wait()
