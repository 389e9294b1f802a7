"""A small tmpfs for tests of full and read-only state folders (needs root to mount)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.services import need_service


@contextmanager
def tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``where`` (made if missing) for the block; unmount after."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        need_service(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_read_only(where: Path) -> None:
    """Make the tmpfs on ``where`` read-only."""
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
