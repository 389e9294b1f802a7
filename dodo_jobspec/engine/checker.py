"""doit's file checker, taught that an input may be a directory."""

from __future__ import annotations

import os
import stat
from typing import Any

from doit.dependency import MD5Checker as DoitMD5Checker

from .. import trees


class MD5Checker(DoitMD5Checker):  # type: ignore[misc]
    """doit's MD5 checker for files; a directory is the digest of everything under it.

    Named as doit's class on purpose: doit stores the checker's class name with every task and
    re-runs each task whose stored name differs, so a new name would re-run everything once.

    One rule for files and folders: the content decides. As doit looks at a file's mtime
    first and reads it only when that changed, a folder's state is (the digest of its
    entries' sizes and mtimes, 0, the digest of their contents): a `touch` reads the files
    once and finds no change.
    """

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        if stat.S_ISDIR(file_stat.st_mode):
            if state[0] == trees.digest(file_path):
                return False
            return bool(state[2] != trees.content_digest(file_path))
        return bool(super().check_modified(file_path, file_stat, state))

    def get_state(self, dep: str, current_state: Any) -> Any:
        if os.path.isdir(dep):
            quick = trees.digest(dep)
            if current_state and current_state[0] == quick:
                return None
            return quick, 0, trees.content_digest(dep)
        return super().get_state(dep, current_state)
