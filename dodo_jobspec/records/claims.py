"""Which files a spec writes, kept in its state folder, so that another spec of the same
project folder that writes one of them too is told so.

Three 0.0.x files in one folder that all write ``job.sh`` overwrite each other's script on
every run, and each then finds the file changed and writes it again. Nothing in one spec can
see that; the state folders beside it can. A run records what it writes in ``writes.json``
(its task ``outputs:`` and the files its write steps write, by absolute path, with the digest
of what a write step writes); before a spec runs, the other specs' records are read.

Everything under ``.jobspec-do/`` is untrusted input (another user's planted link, a stale
folder, a huge file): a sibling counts only if it is a real folder whose ``spec`` file names,
by absolute path, a spec file that still exists in this folder (a regular file, not a link)
and whose state folder it really is; no link is followed and no read is unbounded. A sibling
that does not fit is passed over without a word: a claim it makes cannot be trusted anyway.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..paths import NOFOLLOW, state_folder_name
from .state import OWNER, atomic_write

CLAIMS = "writes.json"  # in a state folder: {"format": 1, "files": {path: digest or null}}
FORMAT = 1
MAX_CLAIMS = 16 << 20  # bytes read from a sibling's claims: 100,000 outputs fit many times
_MAX_OWNER = 4096  # bytes read from a sibling's owner file: a path, nothing more


@dataclass(frozen=True)
class Claim:
    """Another spec of the project folder that writes a file this one writes."""

    path: str  # the file, absolute
    spec: str  # the other spec file, absolute
    state: str  # its state folder, where its claim is recorded


def record(root: Path, files: dict[str, str | None]) -> None:
    """Record in ``root`` (a state folder, held by a run) the files its spec writes: path ->
    the digest of the content a write step writes, or None (a task's output: unknown).

    Rewritten only when it changed: a cron tick that runs one task costs one read."""
    data = json.dumps({"format": FORMAT, "files": files}, sort_keys=True)
    if _read(os.path.join(root, CLAIMS)) == files:
        return
    atomic_write(root / CLAIMS, data)


def others(spec_path: Path, own_root: Path, files: dict[str, str | None]) -> list[Claim]:
    """The claims of the other specs beside ``spec_path`` on any of ``files`` (same shape as
    for ``record``), in file order. Two write steps that write the same bytes to one path
    are no clash: neither run changes what the other wrote."""
    if not files:
        return []
    folder = os.path.realpath(spec_path.parent)
    base = os.path.join(folder, ".jobspec-do")
    mine = os.path.realpath(spec_path)
    own = os.path.realpath(own_root) if os.path.lexists(own_root) else os.fspath(own_root)
    try:
        if not stat.S_ISDIR(os.lstat(base).st_mode):
            return []
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return []
    found: list[Claim] = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or entry.path == own:
            continue
        owner = _owner(entry.path, folder, entry.name)
        if owner is None or owner == mine:
            continue
        theirs = _read(os.path.join(entry.path, CLAIMS))
        if not theirs:
            continue
        for path, digest in files.items():
            if path not in theirs:
                continue
            if digest is not None and theirs[path] == digest:
                continue  # the same bytes written by both: neither undoes the other
            found.append(Claim(path, owner, entry.path))
    order = {path: i for i, path in enumerate(files)}
    found.sort(key=lambda c: (order[c.path], c.spec))
    return found


def _owner(state: str, folder: str, name: str) -> str | None:
    """The spec file ``state`` keeps the records of, if it is a spec of ``folder`` that still
    exists and ``state`` is the folder its runs use; else None."""
    raw = _bounded(os.path.join(state, OWNER), _MAX_OWNER)
    if raw is None:
        return None
    try:
        owner = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if "\n" in owner or not os.path.isabs(owner) or os.path.dirname(owner) != folder:
        return None
    if state_folder_name(Path(owner)) != name:
        return None  # a folder a run of that spec would not use: left over, or planted
    try:
        if not stat.S_ISREG(os.lstat(owner).st_mode):
            return None  # a link now: its runs keep their state elsewhere
    except OSError:
        return None  # gone: renamed, moved or deleted, and its claims with it
    return owner


def _read(path: str) -> dict[str, str | None] | None:
    """The files a claims file names; None when there is none or it is not one."""
    raw = _bounded(path, MAX_CLAIMS)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    files = data.get("files") if isinstance(data, dict) and data.get("format") == FORMAT \
        else None
    if not isinstance(files, dict):
        return None
    return {k: v for k, v in files.items()
            if isinstance(k, str) and (v is None or isinstance(v, str))}


def _bounded(path: str, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the regular file ``path`` (no link followed, a fifo never
    waited on); None if it is not one, cannot be read, or is larger."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if size > limit else b"".join(chunks)
