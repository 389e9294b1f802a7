"""`jobspec-do clean`: delete a spec's state folder, and nothing that is not one.

A state folder is recognised by what is in it: only names jobspec-do writes. A folder given
by mistake (`--state-dir ~`), one that another spec keeps, a link planted in its place, or
one holding anything else is refused with nothing deleted: `clean` must never be the way a
typo empties a home directory."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..errors import StateError
from ..paths import check_real_dir
from .state import OWNER, check_owner, locked

# Everything jobspec-do itself puts at the top of a state folder (temporaries aside: a
# hidden name ending in .tmp, left by a killed writer).
KNOWN = frozenset({
    "lock", OWNER, "doit.sqlite3", "doit.sqlite3-wal", "doit.sqlite3-shm",
    "doit.sqlite3-journal", "tasks", "groups", "outbox", "callbacks.log", "noop.manifest",
    "runs.jsonl", "report.html", "reserve", "writes.json", "journal.jsonl",
})


def _known(name: str) -> bool:
    return name in KNOWN or (name.startswith(".") and name.endswith(".tmp"))


def forget(root: Path, spec_path: Path) -> bool:
    """Delete the state folder ``root`` of ``spec_path``; False if there was none.

    StateError (nothing deleted) when ``root`` is a link or someone else's folder, keeps
    another spec's state, or holds anything jobspec-do does not write."""
    if root.parent.name == ".jobspec-do":
        check_real_dir(root.parent)  # a planted `.jobspec-do` link is not followed either
    if not check_real_dir(root):
        return False
    check_owner(root, spec_path)  # not another spec's records
    strange = sorted(n for n in os.listdir(root) if not _known(n))
    if strange:
        shown = ", ".join(strange[:5]) + (f" and {len(strange) - 5} more"
                                          if len(strange) > 5 else "")
        raise StateError(f"{root} does not look like a jobspec-do state folder: it holds "
                         f"{shown}, which jobspec-do never writes there. Nothing was deleted; "
                         "check the folder (and --state-dir), and remove it yourself if it "
                         "is really meant to go")
    with locked(root):
        for name in os.listdir(root):
            if name == "lock":
                continue
            path = root / name
            # lstat, not is_dir(): a link is removed as a link, never followed.
            if stat.S_ISDIR(os.lstat(path).st_mode):
                shutil.rmtree(path)  # itself never follows links inside the tree
            else:
                os.unlink(path)
    os.unlink(root / "lock")
    root.rmdir()
    return True
