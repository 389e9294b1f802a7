"""The no-op fast path: answer "everything is up to date" with one stat per file.

A re-run with nothing to do is the most common run of a Make-style tool (cron calls it every
minute). After a run that leaves every unit done, the engine writes a manifest: the size and
mtime of every file doit's up-to-date check reads (the spec, the config file, every file_dep
and target). The next invocation stats those files before importing YAML or doit; if every
one matches, doit would find every task up to date too (doit's md5 checker treats an
unchanged mtime as unchanged content), so there is nothing to do. Any difference — an edited
spec, a changed input, a missing output, an upstream record rewritten — falls through to the
full check. A run deletes the manifest before it executes anything, so a run killed half-way
can never leave a manifest that claims more than is true.

This module imports only the standard library: it runs before everything else.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import stat
import sys
from pathlib import Path
from typing import Any

FORMAT = 3  # 3: folders listed, and specs checked for duplicate keys since
NAME = "noop.manifest"


def key(spec: Path, transformer: str, config_file: Path | None) -> tuple[object, ...]:
    """What must be the same for a recorded no-op to apply: spec, config, transformer."""
    from . import __version__

    parts: list[object] = [FORMAT, __version__, transformer, str(spec.resolve())]
    for path in (spec, config_file):
        if path is not None:
            st = os.stat(path)
            parts += [str(path), st.st_size, st.st_mtime_ns]
    return tuple(parts)


def check(state_dir: Path, k: tuple[object, ...]) -> int | None:
    """The number of units if everything is still up to date, else None."""
    found = match(state_dir, k)
    return None if found is None else found[0]


def _load(state_dir: Path) -> tuple[Any, ...] | None:
    try:
        with open(state_dir / NAME, "rb") as fh:
            saved = marshal.load(fh)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return saved if isinstance(saved, tuple) and len(saved) == 5 else None


def saved_attempts(state_dir: Path) -> dict[str, int] | None:
    """Each unit's last attempt as the manifest recorded it, unchecked (None: no manifest).

    A run reads this before it drops the manifest: units it does not run keep these."""
    saved = _load(state_dir)
    return None if saved is None else saved[4]


def match(state_dir: Path, k: tuple[object, ...]) -> tuple[int, dict[str, int]] | None:
    """(number of units, each unit's last attempt) if everything is still up to date."""
    saved = _load(state_dir)
    if saved is None:
        return None
    saved_key, units, paths, stats, attempts = saved
    if saved_key != k:
        return None
    stat_of = os.stat
    try:
        for path, (size, mtime) in zip(paths, stats, strict=True):
            st = stat_of(path)
            if st.st_size != size or st.st_mtime_ns != mtime:
                return None
    except (OSError, ValueError):
        return None
    return int(units), attempts


def record(state_dir: Path, k: tuple[object, ...], units: int, files: list[str],
           attempts: dict[str, int], scanned: list[str] | None = None) -> None:
    """Write the manifest after a run that left every unit done.

    ``attempts``: each unit's last attempt by unit key; `plan` prints the next one's log
    paths, and would otherwise read every unit's history to know it. A folder in ``files``
    is recorded with everything under it (trees.py); a folder in ``scanned`` (one a glob
    lists) by itself: its mtime changes when an entry comes or goes."""
    from . import trees

    found: dict[str, os.stat_result] = {}
    for path in set(files):
        found[path] = st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            for entry in trees.entries(path):
                with contextlib.suppress(FileNotFoundError):  # gone since it was listed
                    found[entry] = os.stat(entry)
    found.update((path, os.stat(path)) for path in scanned or ())
    paths = sorted(found)
    stats = [(found[path].st_size, found[path].st_mtime_ns) for path in paths]
    tmp = state_dir / f".{NAME}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        marshal.dump((k, units, paths, stats, attempts), fh)
    os.replace(tmp, state_dir / NAME)


def forget(state_dir: Path) -> None:
    """Drop the manifest: called before a run executes anything."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_dir / NAME)


def report(units: int, quiet: bool) -> None:
    """The same closing line a full no-op run prints."""
    if not quiet:
        import time

        stamp = "" if sys.stderr.isatty() else time.strftime("%H:%M:%S ")
        sys.stderr.write(f"{stamp}ok: 0 ran, {units} up to date, 0 failed\n")
