"""The state directory: where a spec's runs leave their records.

Layout (default ``.jobspec-do/<spec file stem>/`` beside the spec)::

    lock                 held (flock) by the one run allowed at a time; holds its pid
    runs.jsonl           one line per run that took the lock: when, its command line
    journal.jsonl        every state change of every unit, appended (records/journal.py):
                         the units' histories, current job records and waiters' exit codes
    doit.sqlite3         doit's dependency database (committed at least every 0.25 s)
    tasks/<name>/        one folder per task that ran (groups under groups/<name>/)
        stdout.N         output of attempt N (stderr.N likewise)
        done.json        the completion record: doit's target, dependents' file_dep; the
                         job record of the last completed attempt, with the definition it ran

Every record file is written to a temporary name and renamed, so a kill -9 at any moment leaves
either the old or the new content, never a torn file; the journal is only ever appended to,
one whole line per write. Each new file costs an inode, and on a busy disk creating one costs
more than a trivial task's whole Python overhead: a task that runs leaves four (its folder,
stdout, stderr, done.json), where it left seven before the journal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from ..errors import LockedError, StateError
from ..paths import NOFOLLOW, check_real_dir, make_state_dir
from ..paths import state_folder_name as state_folder_name  # re-exported for cli/watch
from ..spec.model import Spec, Unit
from .folder import default_state_dir as default_state_dir  # its old home
from .journal import Journal, UnitLog, compact, import_legacy, parse_lines

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")


def atomic_write(path: Path | str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old or the new content, never a mix.

    No fsync: the rename is atomic against a killed process (the page cache survives it), and
    a sync per record would cost more than the tasks of a large spec. A power cut may lose the
    last records; the engine's at-least-once design then re-runs those tasks.
    """
    tmp = _tmp_name(path)
    view = memoryview(data.encode() if isinstance(data, str) else data)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW, 0o644)
    try:
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _tmp_name(path: Path | str) -> str:
    """A hidden temporary name beside ``path``, unique to this process and thread."""
    head, tail = os.path.split(os.fspath(path))
    return os.path.join(head, f".{tail}.{os.getpid()}.{threading.get_ident()}.tmp")


def folder_name(name: str) -> str:
    """A file-system-safe folder name for a task or group name (stable, collision-free)."""
    if _SAFE.match(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "task"
    return f"{slug}-{sha256(name.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class StatusEvent:
    """One state change of one unit, as recorded in the journal (and sent to webhooks)."""

    spec: str  # the spec's name
    unit: str  # the task or group name
    kind: str  # "task" or "group"
    attempt: int
    state: str
    info: str
    job_id: str | None
    exit_code: int | None
    timestamp: float


Listener = Callable[[StatusEvent], None]


@dataclass
class JobRecord:
    """The current attempt of one unit (its journal record; done.json when completed)."""

    attempt: int = 0
    token: str = ""
    job_id: str | None = None
    state: str = "new"
    transformer: str = ""
    signature: str = ""  # what the attempt ran: definition + inputs; adoption requires a match
    digest: str = ""  # the definition's digest (spec.json is rewritten when it changes)
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    info: str = ""
    # Where the attempt runs or ran (a host name, a Slurm node list, Flux nodes and ranks) and
    # when its job began to run, as the workload manager told when polled ("" / None: not yet,
    # or not told). A scheduler job's ``started`` is its submission: the two make the queue wait.
    nodes: str = ""
    run_start: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict)  # the resolved task it ran

    def place(self, nodes: str, run_start: float | None, running: bool) -> bool:
        """Take what a poll told of where and since when the job runs; True if the record
        changed (and should be written)."""
        before = (self.nodes, self.run_start, self.state)
        self.nodes = nodes or self.nodes
        self.run_start = run_start or self.run_start
        if running and self.state == "queued":
            self.state = "running"
        return (self.nodes, self.run_start, self.state) != before


_RECORD_FIELDS = tuple(JobRecord.__dataclass_fields__)
_RECORD_KEYS = frozenset(_RECORD_FIELDS)  # membership, for reading 10,000 records


def read_bytes(path: Path | str) -> bytes:
    """A whole (small) file, through the os module: a file object costs several times the
    reading of a record, and `report` and `status` read two per unit of a 10,000-task spec."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, _CHUNK)]
        # A short read of a regular file is its end: no second read to learn it.
        while len(chunks[-1]) == _CHUNK:
            chunks.append(os.read(fd, _CHUNK))
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_CHUNK = 1 << 16


def read_record(path: Path | str, lenient: bool = False) -> JobRecord:
    """A job record file (done.json); empty if there is none.

    An unreadable record is a StateError naming the file, unless ``lenient``: the runner then
    treats it as absent and starts a new attempt."""
    try:
        data = json.loads(read_bytes(path))
    except FileNotFoundError:
        return JobRecord()
    except (OSError, ValueError) as exc:
        if lenient:
            return JobRecord()
        raise StateError(f"{path} is unreadable ({exc}); remove it to start that task "
                         "afresh") from exc
    return JobRecord(**{k: v for k, v in data.items() if k in _RECORD_KEYS})


_record_text = json.JSONEncoder(sort_keys=True, default=str).encode  # one, not one per call


def write_record(path: Path | str, record: JobRecord) -> None:
    """Write a job record atomically.

    Compact JSON: with ``indent`` the json module falls back to its pure-Python encoder, which
    cost more per task than running a trivial task. `jobspec-do status --json` pretty-prints.
    """
    atomic_write(path, _record_text({k: getattr(record, k) for k in _RECORD_FIELDS}))


class UnitState:
    """The records of one task or group: its folder (logs, done.json) and its journal lines.

    Slotted and without cached Paths: a 100,000-task run keeps one of these per unit."""

    __slots__ = (
        "_made",
        "dir_str",
        "done_str",
        "journal",
        "key",
        "listeners",
        "spec_name",
        "unit",
        "written",
    )

    def __init__(self, root: Path, unit: Unit, spec_name: str = "",
                 listeners: list[Listener] | None = None,
                 journal: Journal | None = None) -> None:
        kind = "groups" if unit.is_group else "tasks"
        self.unit = unit
        self.spec_name = spec_name
        self.listeners = listeners if listeners is not None else []
        self.journal = journal if journal is not None else Journal(root)
        # Plain strings: a 10,000-task plan builds these for every unit, and Path objects
        # cost microseconds each; Paths are made when asked for.
        self.key = f"{kind}/{folder_name(unit.name)}"
        self.dir_str = f"{root}/{self.key}"
        self.done_str = self.dir_str + "/done.json"
        self._made = 0  # 1: the folder exists; 2: this process created it (it held nothing)
        self.written = 0  # the highest attempt this process wrote a status line for

    @property
    def dir(self) -> Path:
        return Path(self.dir_str)

    @property
    def done(self) -> Path:
        return Path(self.done_str)

    def ensure(self) -> bool:
        """Make the unit's folder; True if this call created it (so it holds no files)."""
        if self._made:
            return False
        # Replicas of one task ensure their folder from several threads at once: _made only
        # once the folder exists, and "fresh" for whoever saw it missing.
        try:
            os.mkdir(self.dir_str)
        except FileExistsError:
            check_real_dir(self.dir_str, "task folder")  # a planted link is not followed
            self._made = 1
            return False
        except FileNotFoundError:
            os.makedirs(self.dir_str, exist_ok=True)
            check_real_dir(os.path.dirname(self.dir_str), "tasks folder")
        self._made = 2
        return True

    def stdout(self, attempt: int, replica: int | None = None) -> Path:
        suffix = f".{replica}" if replica is not None else ""
        return Path(f"{self.dir_str}/stdout.{attempt}{suffix}")

    def stderr(self, attempt: int, replica: int | None = None) -> Path:
        suffix = f".{replica}" if replica is not None else ""
        return Path(f"{self.dir_str}/stderr.{attempt}{suffix}")

    def _log(self) -> UnitLog | None:
        return self.journal.unit(self.key)

    def read_job(self, replica: int | None = None) -> JobRecord:
        """The unit's (or a replica's) current job record; an empty one if it never had one."""
        log = self._log()
        data = log.records.get(replica) if log is not None else None
        if not data:
            return JobRecord()
        return JobRecord(**{k: v for k, v in data.items() if k in _RECORD_KEYS})

    def write_job(self, record: JobRecord, replica: int | None = None) -> None:
        """Record ``record`` as the current attempt (of ``replica``), with no status change."""
        entry: dict[str, Any] = {"u": self.key, "rec": _record_data(record)}
        if replica is not None:
            entry["r"] = replica
        self.journal.append(entry)

    def last_attempt(self) -> int:
        """The highest attempt number in the history (0 if the unit never ran)."""
        log = self._log()
        if log is None:
            return 0
        return max((h[1] for h in log.history), default=0)

    def append_status(self, attempt: int, state: str, info: str = "",
                      job_id: str | None = None, exit_code: int | None = None,
                      record: JobRecord | None = None, replica: int | None = None) -> None:
        """Record a state change (and, given ``record``, the job record it leaves): one line
        of the journal, so the two land together or not at all."""
        now = time.time()
        entry: dict[str, Any] = {"u": self.key, "t": round(now, 3), "a": attempt, "s": state,
                                 "i": info.replace(chr(10), " ")[:500]}
        if record is not None:
            entry["rec"] = _record_data(record)
            if replica is not None:
                entry["r"] = replica
        self.journal.append(entry)
        self.written = max(self.written, attempt)
        if self.listeners:
            event = StatusEvent(self.spec_name, self.unit.name,
                                "group" if self.unit.is_group else "task", attempt, state, info,
                                job_id, exit_code, now)
            for listener in self.listeners:
                listener(event)

    def history(self) -> list[dict[str, str]]:
        """Every recorded state change, oldest first: timestamp, attempt, state, info."""
        log = self._log()
        if log is None:
            return []
        return [{"timestamp": f"{t:.3f}", "attempt": str(a), "state": s, "info": i}
                for t, a, s, i in log.history]

    def ended(self, attempt: int, replica: int | None = None) -> tuple[int, str] | None:
        """(exit code, signature) a task's waiter recorded for ``attempt``; None if none did
        (read afresh: the waiter of a killed run may have written it a moment ago)."""
        self.journal.refresh()
        log = self._log()
        return log.exits.get((attempt, replica)) if log is not None else None

    def write_done(self, record: JobRecord, replica: int | None = None) -> None:
        """Write the completion record: doit's target, what dependents' file_dep reads.

        Its content changes on every run (times, token), so dependents re-run."""
        path = self.done_str if replica is None else f"{self.dir_str}/done.r{replica}.json"
        if replica is not None:
            atomic_write(path, json.dumps({"replica": replica, "attempt": record.attempt,
                                           "finished": record.finished}))
            return
        write_record(path, record)


def _record_data(record: JobRecord) -> dict[str, Any]:
    """A record as a journal line carries it: without its definition (done.json keeps that),
    and without the fields still at their defaults."""
    out = {}
    for k in _RECORD_FIELDS:
        v = getattr(record, k)
        if k != "definition" and v != _DEFAULTS[k]:
            out[k] = v
    return out


_DEFAULTS = {k: (f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
                 else f.default) for k, f in JobRecord.__dataclass_fields__.items()}


class StateDir:
    """A spec's state directory."""

    def __init__(self, root: Path, spec: Spec) -> None:
        self.root = root
        self.spec = spec
        self.db = root / "doit.sqlite3"
        self._units: dict[str, UnitState] = {}
        self.journal = Journal(root)
        self.listeners: list[Listener] = []  # called on every recorded state change

    def unit(self, node: Unit) -> UnitState:
        st = self._units.get(node.key)
        if st is None:
            st = self._units[node.key] = UnitState(self.root, node, self.spec.name,
                                                   self.listeners, self.journal)
        return st

    def ensure(self) -> None:
        """Make the folder (0700), refusing a link or someone else's folder in its place,
        and links where its tasks/ and groups/ folders belong."""
        try:
            make_state_dir(self.root)
            for sub in ("tasks", "groups"):
                check_real_dir(self.root / sub, f"{sub} folder")
        except OSError as exc:
            raise unusable(self.root, exc) from None
        self.journal.refresh()  # a link in its place is refused here, before anything runs

    def maintain(self) -> None:
        """Holding the lock, before a run appends: bring an older jobspec-do's per-unit
        records into the journal, and compact a journal most of which later lines replaced."""
        try:
            if import_legacy(self.root):
                self.journal.reopen()
            compact(self.journal)
        except OSError as exc:
            raise unusable(self.root, exc) from None

    def reserve(self) -> None:
        """Keep RESERVE bytes of the folder's disk in a file (StateError if the disk is full
        already). A run that finds the disk full frees them: the ends of the tasks that were
        running still get recorded, so nothing that completed runs again."""
        path = os.fspath(self.root / RESERVE_FILE)
        try:
            if os.path.getsize(path) >= RESERVE:
                return
        except OSError:
            pass
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | NOFOLLOW, 0o644)
            try:
                try:
                    os.posix_fallocate(fd, 0, RESERVE)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    os.pwrite(fd, bytes(RESERVE), 0)  # a file system without fallocate
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise unusable(self.root, exc) from None

    def release_reserve(self) -> bool:
        """Free the reserve (the disk is full); True if this call freed it."""
        try:
            os.unlink(self.root / RESERVE_FILE)
        except OSError:
            return False
        return True

    def check_owner(self) -> None:
        """StateError if another spec file keeps its state here (see ``check_owner``)."""
        check_owner(self.root, self.spec.path)

    def claim(self) -> None:
        """Record which spec file this state belongs to (a run does, holding the lock)."""
        mine = str(self.spec.path.resolve())
        path = self.root / OWNER
        try:
            if path.read_text(encoding="utf-8").strip() == mine:
                return
        except (OSError, ValueError):
            pass
        atomic_write(path, mine + "\n")


OWNER = "spec"  # the file in a state directory naming the spec file it belongs to
RUNS_LOG = "runs.jsonl"  # one line per run that took the lock: when, the command line


def record_run(root: Path, command: str, transformer: str) -> None:
    """Append this run to the state directory's runs log (one O_APPEND write: whole or absent).

    Called by a run holding the lock, so every line is a run that really went ahead. A run
    like the one before it (a cron tick) adds no line: the log keeps when such a series began,
    and stays small."""
    path = root / RUNS_LOG
    runs = read_runs(root, tail=4096)
    if runs and runs[-1].get("command") == command and \
            runs[-1].get("transformer") == transformer:
        return
    line = json.dumps({"time": round(time.time(), 3), "command": command,
                       "transformer": transformer}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_runs(root: Path, tail: int | None = None) -> list[dict[str, Any]]:
    """The runs log, oldest first (only its last ``tail`` bytes' lines when given); a line cut
    by a power loss is skipped."""
    try:
        with os.fdopen(os.open(root / RUNS_LOG, os.O_RDONLY | NOFOLLOW), "rb") as fh:
            if tail is not None:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - tail))
            data = fh.read()
    except OSError:
        return []
    return parse_lines(data)

RESERVE_FILE = "reserve"  # space kept for the records of a run that fills the disk
RESERVE = 256 * 1024  # bytes: what the tasks in flight need to record their ends, and more


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the disk or the quota is full."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def check_owner(root: Path, spec_path: Path) -> None:
    """StateError if another spec file that still exists keeps its state in ``root``.

    The default folder is named after the spec's stem: p.yaml and p.yml beside each other
    would share it, and each run would take (or `clean` delete) the other's records. A spec
    that was renamed or moved leaves no owner behind, and takes the folder over."""
    try:
        owner = (root / OWNER).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return
    mine = str(spec_path.resolve())
    if owner and owner != mine and os.path.exists(owner):
        raise StateError(f"{root} keeps the state of {owner}, not of {mine}: pass "
                         "--state-dir DIR to give this spec a folder of its own (or "
                         "rename one of the two spec files)")


def lock_holder(root: Path) -> int | None:
    """The pid of the run holding ``root``'s lock now, or None when no run holds it.

    Read from /proc/locks, never by taking the lock: even a moment's hold could turn away a run
    starting then (a cron entry, say). The pid written in the lock file is not enough: it
    stays after its run ends, and the pid may belong to another process since. OSError where
    /proc/locks cannot be read (not Linux)."""
    try:
        st = os.stat(root / "lock")
    except FileNotFoundError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as fh:
        for line in fh:
            # "1: FLOCK  ADVISORY  WRITE 4699 fe:00:2170964 0 EOF"; a waiter's line has "->"
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == key:
                return int(parts[4])
    return None


WATCHDOG_GRACE = 10.0  # seconds a killed run's watchdog may hold the lock while it works


def _gone(pid_text: str) -> bool:
    """Whether the run whose pid the lock file names has exited. Its lock may then still be
    held for a moment by its watchdog, stopping the tasks the run left behind."""
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):
        return False
    return False


def _wait_for(fd: int, seconds: float) -> bool:
    """Take the lock on ``fd`` within ``seconds``; False if it is still held then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            continue
    return False


def unusable(root: Path, exc: OSError) -> StateError:
    """The one-line error for a state folder that cannot be made or written, with the fix."""
    what = {errno.EROFS: "is on a read-only file system",
            errno.EEXIST: f"cannot be a folder: {exc.filename} is a file",
            errno.ENOTDIR: f"cannot be a folder: a part of {exc.filename} is a file",
            errno.EACCES: f"is not writable ({exc.filename}: permission denied)",
            errno.EPERM: f"is not writable ({exc.filename}: operation not permitted)",
            errno.ENOSPC: "is full (no space left on its device)",
            errno.EDQUOT: "is full (disk quota exceeded)"}.get(
                exc.errno or 0, f"cannot be used ({exc.strerror}: {exc.filename})")
    return StateError(f"state folder {root} {what}: pass --state-dir DIR (or state_dir: in "
                      "jobspec-do.yaml) naming a writable folder, or fix that one")


@contextmanager
def locked(root: Path, wait: bool = False) -> Iterator[int]:
    """Hold the state directory's lock (yields its descriptor); LockedError if another run
    holds it, StateError if the folder cannot be made or written.

    flock is released by the kernel when its holder dies, however it dies, so a lock left by
    a killed run is simply taken over: there is no stale-lock file to clean up by hand.
    """
    path = root / "lock"
    try:
        make_state_dir(root)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"{path} is a symlink: jobspec-do does not follow links in its "
                             "state folder; remove it") from None
        raise unusable(root, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            if not _gone(holder) or not _wait_for(fd, WATCHDOG_GRACE):
                raise LockedError(f"another jobspec-do run (pid {holder}) is using {root}; "
                                  "wait for it, or pass --wait-lock to queue behind it"
                                  ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)
