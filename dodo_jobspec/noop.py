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

This module imports only the standard library's built-in parts (no pathlib, no typing): the
console script runs it before anything else (cli/quick.py), and at 10,000 tasks every
millisecond of a no-op re-run shows against make's.

The manifest is packed for that reading: one marshal'd tuple holding the paths as one
``\\0``-joined bytes string (relative to the spec's folder when inside it, so each stat walks
two or three path components from an open folder instead of the whole absolute path), their
sizes and mtimes as one array of int64, and each unit's last attempt marshal'd apart (only
`plan` and a run read those). 20,000 paths as Python strings and tuples cost the no-op ~10 ms
to unmarshal; as three bytes objects, nothing.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # the annotations only: importing typing costs a no-op ~4 ms
    from typing import Any

FORMAT = 4  # 4: packed paths/stats, relative to the spec's folder; 3: tuples of strings
NAME = "noop.manifest"
_SAVED = 6  # the fields of a saved manifest


def key(spec: str | os.PathLike[str], transformer: str,
        config_file: str | os.PathLike[str] | None) -> tuple[object, ...]:
    """What must be the same for a recorded no-op to apply: spec, config, transformer.

    Paths as ``os.path.realpath`` has them, so the console script's quick path (plain strings)
    and a run (Path objects) make the same key."""
    from . import __version__

    parts: list[object] = [FORMAT, __version__, transformer]
    for path in (spec, config_file):
        if path is not None:
            st = os.stat(path)
            parts += [os.path.realpath(path), st.st_size, st.st_mtime_ns]
        else:
            parts.append(None)  # "no config file" is not "a config file at the spec's path"
    return tuple(parts)


def check(state_dir: str | os.PathLike[str], k: tuple[object, ...]) -> int | None:
    """The number of units if everything is still up to date, else None."""
    saved = _load(state_dir)
    if saved is None or saved[0] != k or not _unchanged(saved[2], saved[3], saved[4]):
        return None
    return int(saved[1])


def _load(state_dir: str | os.PathLike[str]) -> tuple[Any, ...] | None:
    try:
        with open(os.path.join(state_dir, NAME), "rb") as fh:
            saved = marshal.load(fh)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return saved if isinstance(saved, tuple) and len(saved) == _SAVED else None


def _unchanged(base: str, names: bytes, packed: bytes) -> bool:
    """Whether every path listed still has its recorded size and mtime."""
    try:
        values = memoryview(packed).cast("q")  # no import: array would bring collections
        folder = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError, TypeError):
        return False
    stat_of = os.stat
    pairs = iter(values)
    try:
        # zip(pairs, pairs): consecutive (size, mtime). An absolute name ignores dir_fd.
        for name, size, mtime in zip(names.split(b"\0") if names else (), pairs, pairs,
                                     strict=True):
            st = stat_of(name, dir_fd=folder)
            if st.st_size != size or st.st_mtime_ns != mtime:
                return False
    except (OSError, ValueError):
        return False
    finally:
        os.close(folder)
    return True


def _attempts(saved: tuple[Any, ...]) -> dict[str, int] | None:
    try:
        attempts = marshal.loads(saved[5])
    except (ValueError, EOFError, TypeError):
        return None
    return attempts if isinstance(attempts, dict) else None


def saved_attempts(state_dir: str | os.PathLike[str]) -> dict[str, int] | None:
    """Each unit's last attempt as the manifest recorded it, unchecked (None: no manifest).

    A run reads this before it drops the manifest: units it does not run keep these."""
    saved = _load(state_dir)
    return None if saved is None else _attempts(saved)


def match(state_dir: str | os.PathLike[str], k: tuple[object, ...]
          ) -> tuple[int, dict[str, int]] | None:
    """(number of units, each unit's last attempt) if everything is still up to date."""
    saved = _load(state_dir)
    if saved is None or saved[0] != k or not _unchanged(saved[2], saved[3], saved[4]):
        return None
    attempts = _attempts(saved)
    return None if attempts is None else (int(saved[1]), attempts)


def record(state_dir: str | os.PathLike[str], k: tuple[object, ...], units: int,
           files: list[str], attempts: dict[str, int], scanned: list[str] | None = None
           ) -> None:
    """Write the manifest after a run that left every unit done.

    ``attempts``: each unit's last attempt by unit key; `plan` prints the next one's log
    paths, and would otherwise read every unit's history to know it. A folder in ``files``
    is recorded with everything under it (trees.py); a folder in ``scanned`` (one a glob
    lists) by itself: its mtime changes when an entry comes or goes."""
    import contextlib
    from array import array

    from . import trees

    state = os.path.abspath(state_dir)
    wanted = {_absolute(path) for path in files}
    # (size, mtime) pairs, not stat results: at 10,000 tasks 20,000 of those were 4 MB of
    # a run's peak memory, and this runs at its end.
    found: dict[str, tuple[int, int]] = {}
    for path in wanted:
        st = os.stat(path)
        found[path] = (st.st_size, st.st_mtime_ns)
        if stat.S_ISDIR(st.st_mode):
            for entry in trees.entries(path):
                with contextlib.suppress(FileNotFoundError):  # gone since it was listed
                    st = os.stat(entry)
                    found[_absolute(entry)] = (st.st_size, st.st_mtime_ns)
    for path in scanned or ():
        st = os.stat(path)
        found[_absolute(path)] = (st.st_size, st.st_mtime_ns)
    spec = k[3] if len(k) > 3 and isinstance(k[3], str) else state
    base = os.path.dirname(spec)
    inside = base.rstrip("/") + "/"
    names, values = [], array("q")
    for path in sorted(found):
        names.append(os.fsencode(path[len(inside):] if path.startswith(inside) else path))
        values.extend(found[path])
    saved = (k, units, base, b"\0".join(names), values.tobytes(), marshal.dumps(attempts))
    tmp = os.path.join(state, f".{NAME}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        marshal.dump(saved, fh)
    os.replace(tmp, os.path.join(state, NAME))


def _absolute(path: str) -> str:
    # Relative paths are the current folder's: kept absolute, a later no-op from another
    # folder stats the same files. Absolute ones as they are (no new string per path).
    return path if path.startswith("/") else os.path.abspath(path)


def forget(state_dir: str | os.PathLike[str]) -> None:
    """Drop the manifest: called before a run executes anything."""
    import contextlib

    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(state_dir, NAME))


def report(units: int, quiet: bool) -> None:
    """The same closing line a full no-op run prints."""
    if not quiet:
        import time

        stamp = "" if sys.stderr.isatty() else time.strftime("%H:%M:%S ")
        sys.stderr.write(f"{stamp}ok: 0 ran, {units} up to date, 0 failed\n")
