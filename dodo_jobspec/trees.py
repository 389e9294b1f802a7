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
import stat
import sys

# An input folder with more entries than this is walked on every plan and run (/usr: ~17 s):
# worth a word, once per folder and process, since it is rarely what was meant.
HUGE = 50_000
_warned: set[str] = set()


def entries(root: str) -> list[str]:
    """Every directory and file under ``root`` (itself included), hidden ones and broken
    links left out. Linked folders are followed (as glob's ``**`` follows them), once."""
    out = [root]
    seen = {os.path.realpath(root)}
    for folder, dirs, files in os.walk(root, followlinks=True):
        kept = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(folder, d))
            if not d.startswith(".") and real not in seen:  # a link back up: once is enough
                seen.add(real)
                kept.append(d)
        dirs[:] = kept
        out += [os.path.join(folder, d) for d in dirs]
        out += [path for f in sorted(files) if not f.startswith(".")
                and os.path.exists(path := os.path.join(folder, f))]
    if len(out) > HUGE and root not in _warned:
        _warned.add(root)
        print(f"jobspec-do: warning: input folder {root} holds {len(out)} entries, and every "
              "plan and run walks them all to see whether it changed: name the files (or a "
              "glob) the task really reads", file=sys.stderr)
    return out


def digest(root: str) -> str:
    """A digest of the names of everything under ``root`` and its files' sizes and mtimes.

    A folder's own mtime is left out: it changes when a hidden entry (an editor's swap file)
    comes or goes, and the entries that count are all listed anyway."""
    h = hashlib.md5(usedforsecurity=False)
    for path in entries(root):
        try:
            st = os.stat(path)
        except FileNotFoundError:  # removed while we looked: the next look sees the change
            continue
        rel = os.path.relpath(path, root)
        if stat.S_ISDIR(st.st_mode):
            h.update(f"{rel}/\n".encode())
        else:
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def content_digest(root: str) -> str:
    """A digest of the names of everything under ``root`` and its files' contents: what
    decides whether a folder input changed (as doit's MD5 decides for a file), so that a
    `touch` is no change. ``digest`` is the cheap first look: unchanged, nothing is read."""
    h = hashlib.md5(usedforsecurity=False)
    for path in entries(root):
        rel = os.path.relpath(path, root)
        if os.path.isdir(path):
            h.update(f"{rel}/\n".encode())
            continue
        file_hash = hashlib.md5(usedforsecurity=False)
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 16):
                    file_hash.update(chunk)
        except (FileNotFoundError, IsADirectoryError):  # gone while we looked
            continue
        h.update(f"{rel}\0{file_hash.hexdigest()}\n".encode())
    return h.hexdigest()
