"""The default stager: every node sees the same filesystem, so nothing has to move."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from .base import StageItem, Stager, StageReport, StagerSettings, StagingError, walk


class SharedStager(Stager):
    """Staging on a shared filesystem: checks that each path exists and reports it present.

    An item whose ``dest`` is another path than its ``source`` is copied there (once, since
    every node sees the copy), skipping files whose content is already the same.
    """

    name: ClassVar[str] = "shared"

    def __init__(self, settings: StagerSettings | None = None) -> None:
        super().__init__(settings or StagerSettings())

    def put(self, items: Sequence[StageItem]) -> StageReport:
        """Verify every source exists; copy it where ``dest`` differs; report per node."""
        report = StageReport()
        for item in items:
            self._copy(item.source, item.dest, "stage source", report)
        return report

    def get(self, items: Sequence[StageItem]) -> StageReport:
        """The reverse of :meth:`put`: ``dest`` must exist; copied to ``source`` if elsewhere."""
        report = StageReport()
        for item in items:
            self._copy(Path(item.dest), str(item.source), "staged path", report)
        return report

    def _copy(self, src: Path, dest: str, what: str, report: StageReport) -> None:
        if not src.exists():
            raise StagingError(f"{what} not found: {src}")
        names = self.settings.nodes or ("shared",)
        target = Path(dest) if dest else src
        same = target.resolve() == src.resolve()
        for local, rel, is_dir in walk(src):
            there = target / rel if rel else target
            if same:
                if not is_dir:
                    for n in names:
                        report.node(n).skipped.append(str(there))
                continue
            if is_dir:
                there.mkdir(parents=True, exist_ok=True)
                os.chmod(there, local.stat().st_mode & 0o7777)
                continue
            if there.is_file() and _same_content(local, there):
                for n in names:
                    report.node(n).skipped.append(str(there))
                continue
            there.parent.mkdir(parents=True, exist_ok=True)
            tmp = there.with_name(f".{there.name}.jobspec-do.part")
            shutil.copy2(local, tmp)  # copy2 keeps mode and mtime
            os.replace(tmp, there)  # readers never see a half-copied file
            size = local.stat().st_size
            for i, n in enumerate(names):
                node = report.node(n)
                node.sent.append(str(there))
                if i == 0:  # one copy serves every node
                    node.bytes_sent += size


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return _sha256(a) == _sha256(b)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
