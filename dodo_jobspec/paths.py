"""Path containment: what the tool reads or writes on a user's behalf stays inside the folder
it belongs to."""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from pathlib import Path

from .errors import JobspecError, StateError


class OutsideError(JobspecError):
    """A path leads outside the folder it must stay in."""


def check_inside(root: Path, path: str) -> Path:
    """Return ``root / path`` resolved, or raise OutsideError if it escapes ``root``.

    Both ``..`` components and symlinks (anywhere along the path) are followed before the
    comparison, so neither can lead outside ``root``.
    """
    base = root.resolve()
    target = (base / path).resolve()
    if target == base or target.is_relative_to(base):
        return target
    lexical = Path(posixpath.normpath((base / path).as_posix()))
    if Path(path).is_absolute():
        why = "it is an absolute path"
    elif not (lexical == base or lexical.is_relative_to(base)):
        why = "its `..` components lead outside"
    else:
        why = f"a symlink leads outside (it resolves to {target})"
    raise OutsideError(f"'{path}' escapes the staging directory {base}: {why}; "
                       "use a relative path inside it")


# --- State folders -----------------------------------------------------------------------
# A state folder is written and, by `clean`, emptied: a link planted where it (or a file in
# it) should be would send those writes and deletions to the link's target. Everything below
# refuses links instead of following them.

NOFOLLOW = os.O_NOFOLLOW  # open() flag for every file the tool creates in its own folders
STATE_MODE = 0o700  # records hold the spec's environment values: the owner's, like ~/.ssh


class UnsafeStateError(StateError):
    """A state folder that is a link, not a folder, or someone else's."""


def state_folder_name(spec_path: Path) -> str:
    """The name of a spec's folder under ``.jobspec-do/``: its stem, when that is a name.

    ``...yaml`` has the stem ``..`` and ``..yaml`` the stem ``.``: taken as they are, the first
    names the project folder itself (which `clean` would then empty) and the second the folder
    shared by every spec. A stem that is only dots (or empty) gets a name made from the whole
    file name instead, stable and unlike any ordinary stem."""
    stem = spec_path.stem
    if stem.strip(".") and "/" not in stem and "\0" not in stem:
        return stem
    import hashlib  # only here: loading OpenSSL costs a no-op re-run ~3 ms

    digest = hashlib.sha256(spec_path.name.encode(errors="surrogateescape")).hexdigest()[:8]
    return f"dots-{digest}"


def check_real_dir(path: Path | str, what: str = "state folder") -> bool:
    """False if ``path`` does not exist; True if it is a real folder owned by this user.

    Raises UnsafeStateError when it is a symlink, not a folder, or owned by someone else
    (root may use any folder: it owns none it did not make, yet is trusted with all)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeStateError(
            f"{path} is a symlink (to {os.readlink(path)}): jobspec-do does not follow links "
            f"for its {what}; remove the link, or pass --state-dir to use a real folder")
    if not stat.S_ISDIR(st.st_mode):
        # Worded like records.state.unusable: one shape for every unusable state folder.
        raise UnsafeStateError(f"{what} {path} cannot be a folder: {path} is a file: pass "
                               "--state-dir DIR naming a folder, or move that file away")
    uid = os.getuid()
    if uid != 0 and st.st_uid != uid:
        raise UnsafeStateError(f"{path} belongs to uid {st.st_uid}, not to you (uid {uid}): "
                               f"jobspec-do keeps its {what} only in folders you own; pass "
                               "--state-dir to use one of yours")
    return True


def make_state_dir(root: Path) -> None:
    """Create ``root`` (mode 0700) and any missing parents, refusing links along the way.

    Parents that already exist are the user's business (a state dir under /scratch/me); the
    folder itself, and a default ``.jobspec-do`` above it, must be real folders of this user."""
    parent = root.parent
    if parent.name == ".jobspec-do":
        parent.parent.mkdir(parents=True, exist_ok=True)
        _make_one(parent)
    else:
        parent.mkdir(parents=True, exist_ok=True)
    _make_one(root)


def _make_one(path: Path) -> None:
    if check_real_dir(path):
        return
    with contextlib.suppress(FileExistsError):  # made meanwhile by another run: checked below
        os.mkdir(path, STATE_MODE)
    check_real_dir(path)
