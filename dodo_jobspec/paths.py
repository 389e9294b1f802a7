"""Path containment: what the tool reads or writes on a user's behalf stays inside the folder
it belongs to."""

from __future__ import annotations

import posixpath
from pathlib import Path

from .errors import JobspecError


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
