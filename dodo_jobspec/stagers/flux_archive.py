"""Stage through the Flux KVS: ``flux archive create`` once, extract on every broker rank.

This needs to run inside a Flux instance as its owner (``flux archive create`` is
instance-owner only), i.e. in a batch job or allocation, or in a ``flux start`` instance.
"""

from __future__ import annotations

import posixpath
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from .base import StageItem, Stager, StageReport, StagerSettings, StagingError, walk

#: Runs one command: argv -> (exit code, stdout, stderr). Injectable for tests.
Runner = Callable[[Sequence[str]], tuple[int, str, str]]

#: The report key: flux exec reaches every broker rank, which are not named individually.
ALL_RANKS = "all ranks"


def run_command(argv: Sequence[str]) -> tuple[int, str, str]:
    """The default runner: run ``argv`` without a shell and capture its output."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: command not found"
    return proc.returncode, proc.stdout, proc.stderr


class FluxArchiveStager(Stager):
    """``flux archive create`` + ``flux exec -r all flux archive extract``, removed after.

    Items are grouped by (local parent directory, destination directory); each group is one
    archive. ``flux archive`` stores paths relative to ``-C``, so an item cannot be renamed on
    the way: the destination's last component must equal the source's.
    """

    name: ClassVar[str] = "flux-archive"

    def __init__(self, settings: StagerSettings | None = None, runner: Runner | None = None,
                 ranks: str = "all") -> None:
        super().__init__(settings or StagerSettings())
        self.runner: Runner = runner or run_command
        self.ranks = ranks
        self.archive_name: Callable[[], str] = lambda: f"jobspec-do-{uuid.uuid4().hex[:16]}"

    def put(self, items: Sequence[StageItem]) -> StageReport:
        """Broadcast every item to every rank (files are always sent: no checksums here)."""
        report = StageReport()
        node = report.node(ALL_RANKS)
        for (src_dir, dest_dir), group in self._groups(items).items():
            name = self.archive_name()
            try:
                self._run(["flux", "archive", "create", "--name", name, "-C", str(src_dir),
                           *(i.source.name for i in group)], "create the archive")
                self._run(["flux", "exec", "-r", self.ranks, "mkdir", "-p", "--", dest_dir],
                          "create the destination directory on every rank")
                # --overwrite: on a shared filesystem every rank extracts into the same
                # directory, and all but the first would fail with "Attempt to overwrite
                # existing file". --waitcreate: the KVS is eventually consistent, so a rank
                # may not see the archive that was just created without waiting for it.
                self._extract(name, dest_dir)
            finally:
                # Always: an archive left behind holds KVS space and blocks reusing the name.
                self._remove(name)
            for item in group:
                for local, rel, is_dir in walk(item.source):
                    if not is_dir:
                        dest = posixpath.join(dest_dir, item.source.name, rel) if rel else \
                            posixpath.join(dest_dir, item.source.name)
                        node.sent.append(dest)
                        node.bytes_sent += local.stat().st_size
        return report

    def get(self, items: Sequence[StageItem]) -> StageReport:
        """Copy each ``dest`` back from rank 0: archived there, extracted here."""
        report = StageReport()
        node = report.node("rank 0")
        for item in items:
            dest_dir, base = posixpath.split(posixpath.normpath(item.dest))
            if base != item.source.name:
                raise StagingError(self._rename_hint(item))
            item.source.parent.mkdir(parents=True, exist_ok=True)
            name = self.archive_name()
            try:
                self._run(["flux", "exec", "-r", "0", "flux", "archive", "create", "--name",
                           name, "-C", dest_dir or ".", base], "archive the path on rank 0")
                self._run(["flux", "archive", "extract", "--name", name, "--overwrite", "-C",
                           str(item.source.parent), "--waitcreate"], "extract it here")
            finally:
                self._remove(name)
            for local, _, is_dir in walk(item.source):
                if not is_dir:
                    node.sent.append(str(local))
                    node.bytes_sent += local.stat().st_size
        return report

    # -- helpers ----------------------------------------------------------------------------
    def _groups(self, items: Sequence[StageItem]) -> dict[tuple[Path, str], list[StageItem]]:
        groups: dict[tuple[Path, str], list[StageItem]] = {}
        for item in items:
            if not item.source.exists():
                raise StagingError(f"stage source not found: {item.source}")
            dest = posixpath.normpath(item.dest) if item.dest else str(item.source.resolve())
            dest_dir, base = posixpath.split(dest)
            if base != item.source.name:
                raise StagingError(self._rename_hint(item))
            groups.setdefault((item.source.resolve().parent, dest_dir or "."), []).append(item)
        return groups

    @staticmethod
    def _rename_hint(item: StageItem) -> str:
        return (f"flux-archive cannot rename while staging: {item.source} -> {item.dest}; "
                f"give the destination the same last name ({item.source.name})")

    def _run(self, argv: list[str], what: str) -> str:
        rc, out, err = self.runner(argv)
        if rc != 0:
            detail = (err or out).strip() or f"exit {rc}"
            hint = ""
            if rc == 127 and shutil.which("flux") is None:
                hint = " (flux is not on PATH: run inside a Flux instance)"
            raise StagingError(f"flux-archive: could not {what}: `{' '.join(argv)}` failed: "
                               f"{detail}{hint}", node=ALL_RANKS,
                               transient=False)
        return out

    def _extract(self, name: str, dest_dir: str) -> None:
        """Extract on every rank at once; if that fails, rank by rank.

        Ranks that share a filesystem extract into one directory at the same moment, and
        --overwrite then races ("Can't unlink already-existing object"). One rank after
        the other cannot race; a rank that really fails still fails there, by name.
        """
        extract = ["flux", "archive", "extract", "--name", name, "--overwrite", "-C",
                   dest_dir, "--waitcreate"]
        everywhere = ["flux", "exec", "-r", self.ranks, *extract]
        rc, _out, _err = self.runner(everywhere)
        if rc == 0:
            return
        size = self.runner(["flux", "getattr", "size"])[1].strip()
        ranks = list(range(int(size))) if self.ranks == "all" and size.isdigit() else \
            _idset(self.ranks)
        if not ranks:  # cannot go rank by rank: the first failure is the answer
            self._run(everywhere, "extract the archive on every rank")
        for rank in ranks:
            self._run(["flux", "exec", "-r", str(rank), *extract],
                      f"extract the archive on rank {rank}")

    def _remove(self, name: str) -> None:
        # Best effort: if create failed there is nothing to remove, and a failed removal must
        # not hide the error that brought us here; names are unique, so a leftover archive
        # only costs KVS space, which the warning lets someone reclaim.
        rc, out, err = self.runner(["flux", "archive", "remove", "--name", name])
        if rc != 0 and "No such file" not in err + out:
            print(f"jobspec-do: warning: `flux archive remove --name {name}` failed: "
                  f"{(err or out).strip() or f'exit {rc}'}", file=sys.stderr)


def _idset(text: str) -> list[int]:
    """The ranks of an idset such as ``0-3,7``."""
    out: list[int] = []
    for part in text.strip("[]").split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            out += range(int(lo), int(hi or lo) + 1)
    return out
