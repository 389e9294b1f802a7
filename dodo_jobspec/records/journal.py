"""The journal: every state change of every unit of a state folder, in one append-only file.

A task's history, its current job record and its waiter's exit code were three files of its
own (status.csv, job.json, exit.N). Creating a file costs more than a trivial task's whole
bookkeeping on a busy disk, and every run of every task made them; now each change is one line
appended to ``journal.jsonl`` through a descriptor the run keeps open, and the per-unit views
(history, record, exit) are derived from it when read.

Each line is one ``write()`` on an O_APPEND descriptor: a kill -9 leaves it whole or absent,
and writers (the run's threads, a killed run's task waiters) never interleave inside a line.
A line cut by a power loss or a full disk is skipped by readers, and the next line written by
this process starts on a fresh line, so a cut line never swallows a good one.

Line shapes (compact JSON; unknown keys are ignored, so older readers survive newer lines):

    {"u": KEY, "t": time, "a": attempt, "s": state, "i": info}        a status change
    ... + "rec": {JobRecord fields but its definition}, "r": replica  and the record it left
    {"u": KEY, "a": attempt, "r": replica, "x": exit code, "g": sig}   a waiter saw it end

KEY is ``tasks/<folder>`` or ``groups/<folder>``, the unit's folder relative to the state
folder (see records/state.py), so a unit keeps its identity across renames of nothing.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import NOFOLLOW

NAME = "journal.jsonl"

Replica = int | None

# One encoder for every line: json.dumps with any option builds a new one per call, a few
# microseconds of every state change of every task.
line_text = json.JSONEncoder(separators=(",", ":"), default=str).encode


@dataclass(slots=True)
class UnitLog:
    """What the journal says of one unit: its history, latest records and waiters' ends."""

    history: list[tuple[float, int, str, str]] = field(default_factory=list)
    records: dict[Replica, dict[str, Any]] = field(default_factory=dict)
    exits: dict[tuple[int, Replica], tuple[int, str]] = field(default_factory=dict)


class Journal:
    """A state folder's journal: appended to by a run, read (whole, once) by anyone."""

    def __init__(self, root: Path | str) -> None:
        self.path = os.path.join(os.fspath(root), NAME)
        self._fd: int | None = None
        self._torn = False  # a write was cut short: the next line must start afresh
        self._lock = threading.Lock()
        self._index: dict[str, UnitLog] | None = None
        self._read_to = 0  # bytes of the file the index has seen
        # Where this process's own lines start, by unit, not yet in the index: a run reads
        # few of them back, and 10,000 parsed records would cost it ~12 MB to keep.
        self._own: dict[str, list[int]] = {}

    # -- writing -------------------------------------------------------------------------------
    def append(self, entry: dict[str, Any]) -> None:
        """Append one line; OSError (e.g. a full disk) if it could not be written whole."""
        data = (line_text(entry) + "\n").encode()
        with self._lock:
            fd = self._open()
            if self._torn:
                data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):
                # The disk filled in the middle: the part written is a cut line, which the
                # next line (after the reserve is freed) must not continue.
                self._torn = True
                raise OSError(errno.ENOSPC, "No space left on device", self.path)
            self._torn = False
            # An O_APPEND write leaves the descriptor's offset at the end of what it wrote,
            # whoever else appended meanwhile: the line is read back from there if asked.
            start = os.lseek(fd, 0, os.SEEK_CUR) - len(data) + (data[0] == 10)
            self._own.setdefault(entry["u"], []).append(start)

    def _open(self) -> int:
        if self._fd is None:
            # Read-write, to look at the last byte: a line cut by a power loss or a full disk
            # is not continued, what is appended starts afresh.
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
            size = os.fstat(fd).st_size
            self._torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            self._fd = fd
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def reopen(self) -> None:
        """Forget what was read and the descriptor: the file was replaced."""
        self.close()
        with self._lock:
            self._index, self._read_to, self._own = None, 0, {}

    # -- reading -------------------------------------------------------------------------------
    def unit(self, key: str) -> UnitLog | None:
        """What the journal says of unit ``key`` (None: nothing)."""
        index = self._index
        if index is None:
            index = self.refresh()
        if key in self._own:
            self._take_own(key)
        return index.get(key)

    def _take_own(self, key: str) -> None:
        """Put this process's lines of ``key`` into the index, read back from the file."""
        with self._lock:
            starts = self._own.pop(key, ())
            if self._index is None or not starts:
                return
            fd = os.open(self.path, os.O_RDONLY | NOFOLLOW | os.O_CLOEXEC)
            try:
                for start in starts:
                    chunk = os.pread(fd, 4096, start)
                    while chunk and b"\n" not in chunk:  # a long line (a burst's record)
                        more = os.pread(fd, 65536, start + len(chunk))
                        if not more:
                            break
                        chunk += more
                    for entry in parse_lines(chunk.split(b"\n", 1)[0]):
                        self._apply(entry)
            finally:
                os.close(fd)

    def refresh(self) -> dict[str, UnitLog]:
        """Read what was appended since the last read (by anyone: a killed run's waiters)."""
        with self._lock:
            first = self._index is None
            if self._index is None:
                self._index, self._read_to = {}, 0
            try:
                fd = os.open(self.path, os.O_RDONLY | NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                return self._index
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    from ..errors import StateError

                    raise StateError(f"{self.path} is a symlink: jobspec-do does not follow "
                                     "links in its state folder; remove it") from None
                raise
            try:
                size = os.fstat(fd).st_size
                chunks = []
                at = self._read_to
                while at < size:
                    chunk = os.pread(fd, min(size - at, 1 << 22), at)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    at += len(chunk)
            finally:
                os.close(fd)
            data = b"".join(chunks)
            end = data.rfind(b"\n") + 1  # a last line without its newline: not whole yet
            # Once read, the index takes this process's own lines as it appends them; what
            # others append meanwhile is a killed run's task waiters' ends (a run holds the
            # lock), so a writer takes only those from the file, not its own lines twice.
            own = not first and self._fd is not None
            self._read_to += end
            for entry in parse_lines(data[:end]):
                if not own or "x" in entry:
                    self._apply(entry)
            if first:
                self._own.clear()  # read with the rest of the file
            return self._index

    def units(self) -> dict[str, UnitLog]:
        """Every unit the journal names."""
        index = self._index if self._index is not None else self.refresh()
        for key in list(self._own):
            self._take_own(key)
        return index

    def _apply(self, entry: dict[str, Any]) -> None:
        key = entry.get("u")
        if not isinstance(key, str):
            return
        assert self._index is not None
        log = self._index.get(key)
        if log is None:
            log = self._index[key] = UnitLog()
        replica = entry.get("r")
        if replica is not None and not isinstance(replica, int):
            return
        if "x" in entry:
            attempt, code, sig = entry.get("a"), entry.get("x"), entry.get("g")
            if isinstance(attempt, int) and isinstance(code, int) and isinstance(sig, str):
                log.exits[(attempt, replica)] = (code, sig)
            return
        state = entry.get("s")
        attempt = entry.get("a")
        if isinstance(state, str) and isinstance(attempt, int):
            t = entry.get("t")
            info = entry.get("i")
            log.history.append((float(t) if isinstance(t, (int, float)) else 0.0, attempt,
                                state, info if isinstance(info, str) else ""))
        rec = entry.get("rec")
        if isinstance(rec, dict):
            log.records[replica] = rec


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines text (the journal, the runs log); a damaged line is
    skipped, never fatal."""
    if not data:
        return []
    try:  # one call into the C parser for the common, undamaged case
        items = json.loads(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]")
        return [e for e in items if isinstance(e, dict)]
    except ValueError:
        pass
    out = []
    for line in data.split(b"\n"):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def exit_line_prefix(key: str, attempt: int, replica: Replica) -> str:
    """The start of the line a task's waiter appends when its command ends: the waiter (a
    shell) adds the exit code and the signature, then ``}`` (see transformers/local.py)."""
    head: dict[str, Any] = {"u": key, "a": attempt}
    if replica is not None:
        head["r"] = replica
    return line_text(head)[:-1] + ',"x":'


COMPACT_AT = 8 << 20  # bytes: below this a journal is read faster than it is rewritten


def compact(journal: Journal) -> bool:
    """Rewrite ``journal`` without the records later ones replaced; True if it did.

    Called by a run holding the lock, before it appends: each attempt's record is written
    two to four times as it goes (submitted, queued, ended) and only the last one is read,
    so a journal that many runs appended to is mostly superseded records. Every history line
    stays. A task waiter left by a killed run that appends while the file is replaced loses
    its line, and that task runs again (at least once, as after any kill)."""
    try:
        size = os.stat(journal.path).st_size
    except FileNotFoundError:
        return False
    if size < COMPACT_AT:
        return False
    journal.refresh()
    index = journal.units()
    out = []
    for key, log in index.items():
        for t, a, s, i in log.history:
            out.append({"u": key, "t": t, "a": a, "s": s, "i": i})
        for replica, rec in log.records.items():
            out.append({"u": key, "rec": rec} | ({"r": replica} if replica is not None else {}))
        for (attempt, replica), (code, sig) in log.exits.items():
            latest = log.records.get(replica, {}).get("attempt", 0)
            if isinstance(latest, int) and attempt > latest:  # an end not yet recorded
                out.append({"u": key, "a": attempt, "x": code, "g": sig}
                           | ({"r": replica} if replica is not None else {}))
    data = "".join(line_text(e) + "\n" for e in out)
    if len(data) > size * 0.75:
        return False
    from .state import atomic_write  # state imports this module

    journal.close()
    atomic_write(journal.path, data)
    journal.reopen()
    return True


def import_legacy(root: Path | str) -> int:
    """Bring the records an older jobspec-do kept per unit (status.csv, job.json, job.R.json
    in each unit's folder) into a new journal; the number of lines written. Done once, by a
    run holding the lock, when there is no journal yet: upgrading loses no history."""
    root = os.fspath(root)
    path = os.path.join(root, NAME)
    if os.path.lexists(path):
        return 0
    entries: list[dict[str, Any]] = []
    for kind in ("tasks", "groups"):
        try:
            names = sorted(os.listdir(os.path.join(root, kind)))
        except OSError:
            continue
        for name in names:
            entries += _legacy_unit(os.path.join(root, kind, name), f"{kind}/{name}")
    if not entries:
        return 0
    from .state import atomic_write

    atomic_write(path, "".join(line_text(e) + "\n" for e in entries))
    return len(entries)


def _legacy_unit(folder: str, key: str) -> list[dict[str, Any]]:
    import csv
    import io
    import re

    entries: list[dict[str, Any]] = []
    text = _read_nofollow(os.path.join(folder, "status.csv"))
    if text is not None:
        for row in csv.DictReader(io.StringIO(text.decode(errors="replace"))):
            try:
                entries.append({"u": key, "t": float(row["timestamp"]),
                                "a": int(row["attempt"]), "s": row["state"],
                                "i": row.get("info") or ""})
            except (KeyError, TypeError, ValueError):
                continue  # a line cut by a power loss
    try:
        files = os.listdir(folder)
    except OSError:
        return entries
    for file in sorted(files):
        m = re.fullmatch(r"job(?:\.(\d+))?\.json", file)
        data = _read_nofollow(os.path.join(folder, file)) if m else None
        if data is None:
            continue
        try:
            rec = json.loads(data)
        except ValueError:
            continue
        if isinstance(rec, dict):
            rec.pop("definition", None)
            entry: dict[str, Any] = {"u": key, "rec": rec}
            if m and m.group(1) is not None:
                entry["r"] = int(m.group(1))
            entries.append(entry)
    return entries


def _read_nofollow(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            return fh.read(64 << 20)
    except OSError:
        return None
