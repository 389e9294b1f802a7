"""A directory named as an input stands for everything under it.

A directory's own mtime changes when an entry is added, removed or renamed directly in it, not
when a file deeper down is edited, and doit's MD5 checker cannot read a directory at all. So a
directory's state is a digest of every entry below it, and the no-op manifest lists them all.
Hidden entries (a leading dot) are left out, as glob's ``**`` leaves them out: a tool's
own folders (.git, .jobspec-do) are not inputs.
"""

from __future__ import annotations

import hashlib
import os


def entries(root: str) -> list[str]:
    """Every directory and file under ``root`` (itself included), hidden ones left out."""
    out = [root]
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(folder, d) for d in dirs]
        out += [os.path.join(folder, f) for f in sorted(files) if not f.startswith(".")]
    return out


def digest(root: str) -> str:
    """A digest of the names, kinds, sizes and mtimes of everything under ``root``."""
    h = hashlib.md5(usedforsecurity=False)
    for path in entries(root):
        try:
            st = os.stat(path)
        except FileNotFoundError:  # removed while we looked: the next look sees the change
            continue
        rel = os.path.relpath(path, root)
        h.update(f"{rel}\0{st.st_mode >> 12}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
