"""Stage with Slurm's ``sbcast``, from inside the job, to every node of its allocation.

On a scheduler the nodes are known only once the job starts, so this stager does not send
anything before submission. It writes a bash script (:meth:`SbcastStager.job_script`) that the
Slurm transformer runs in the batch script before the task's command:

1. one ``srun`` step with one task per node runs ``sha256sum -c`` on a manifest of every
   destination file: what is missing or different on any node is what gets sent;
2. ``srun mkdir -p`` makes the destination folders on every node (sbcast does not);
3. ``sbcast --force --preserve`` sends each of those files to every node of the allocation
   (times and modes kept).

Nothing is sent when every node already holds every file. What was sent and what was unchanged
is appended to a record file in the unit's state folder. The sources are read on the batch
host, so they must be on a filesystem it sees (the spec's folder, as for the batch script).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .base import StageItem, Stager, StageReport, StagerSettings, StagingError, walk

#: The report key of :meth:`SbcastStager.put`: sbcast reaches every node of the allocation.
ALLOCATION = "allocation"


@dataclass(frozen=True, slots=True)
class Transfer:
    """One file to broadcast: where it is here, where it goes on each node, its sha256."""

    local: Path
    dest: str
    sha256: str
    size: int


class SbcastStager(Stager):
    """``sbcast`` inside the job; only files some node lacks or holds in another version."""

    name: ClassVar[str] = "sbcast"
    in_job: ClassVar[bool] = True

    def __init__(self, settings: StagerSettings | None = None) -> None:
        super().__init__(settings or StagerSettings())

    def put(self, items: Sequence[StageItem]) -> StageReport:
        """Stage now: only inside a Slurm allocation (``salloc``, a batch job)."""
        if not os.environ.get("SLURM_JOB_ID"):
            raise StagingError("the sbcast stager sends files to the nodes of a Slurm job, and "
                               "this is not inside one; run with -t slurm (it stages in the "
                               "job), or use the ssh stager with a `nodes:` list")
        record = Path(os.environ.get("TMPDIR", "/tmp")) / f"jobspec-do-sbcast.{os.getpid()}"
        try:
            proc = subprocess.run(["bash", "-c", self.job_script(items, str(record))],
                                  capture_output=True, text=True, check=False,
                                  stdin=subprocess.DEVNULL)
            text = record.read_text() if record.exists() else ""
        finally:
            record.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise StagingError(f"sbcast staging failed: {(proc.stderr or proc.stdout).strip()}",
                               node=ALLOCATION)
        report = StageReport()
        node = report.node(ALLOCATION)
        sizes = {t.dest: t.size for t in self.transfers(items)}
        for line in text.splitlines():
            verb, _, dest = line.partition(" ")
            if verb == "sent":
                node.sent.append(dest)
                node.bytes_sent += sizes.get(dest, 0)
            elif verb == "unchanged":
                node.skipped.append(dest)
        return report

    def get(self, items: Sequence[StageItem]) -> StageReport:
        """Not possible: sbcast only sends to the nodes."""
        raise StagingError("the sbcast stager cannot copy files back from the nodes (sbcast "
                           "only broadcasts); have the task write results to a shared folder")

    def transfers(self, items: Sequence[StageItem]) -> list[Transfer]:
        """Every file of ``items`` with its destination path on the nodes."""
        out = []
        for item in items:
            if not item.source.exists():
                raise StagingError(f"stage source not found: {item.source}")
            root = self._dest(item)
            for local, rel, is_dir in walk(item.source):
                if not is_dir:
                    dest = posixpath.join(root, rel) if rel else root
                    out.append(Transfer(local.resolve(), dest, _sha256(local),
                                        local.stat().st_size))
        return out

    def job_script(self, items: Sequence[StageItem], record: str) -> str:
        """The bash script the job runs first (see the module docstring)."""
        transfers = self.transfers(items)
        manifest = "".join(f"{t.sha256}  {t.dest}\n" for t in transfers)
        dirs = sorted({posixpath.dirname(t.dest) for t in transfers} - {"", "/"})
        q = shlex.quote
        lines = [
            "#!/bin/bash",
            "# Written by jobspec-do (sbcast stager): run inside a Slurm job.",
            f"record={q(record)}",
            # One task per node, one CPU each; --input=all gives every task the manifest.
            'each=(srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" '
            "--ntasks-per-node=1 --cpus-per-task=1)",
            f"manifest={q(manifest)}",
            # sha256sum --quiet prints only what is missing or different ('PATH: FAILED...');
            # each node then says it checked, so a check that could not run sends everything.
            'checked=$(printf %s "$manifest" | "${each[@]}" --input=all /bin/sh -c '
            "'sha256sum --quiet -c - 2>/dev/null; echo __jsd_checked')",
            'if [ "$(grep -c "^__jsd_checked$" <<<"$checked")" -eq "$SLURM_JOB_NUM_NODES" ]; then',
            "    stale=$(sed -n 's/: FAILED.*$//p' <<<\"$checked\" | sort -u)",
            "else",
            "    stale=$(sed 's/^[0-9a-f]*  //' <<<\"$manifest\")",
            "fi",
            'if [ -n "$stale" ]; then',
            f'    "${{each[@]}}" mkdir -p -- {" ".join(map(q, dirs))} || exit 1'
            if dirs else "    :",
            "fi",
            "sent=0 same=0",
        ]
        for t in transfers:
            lines += [
                f"if grep -qxF -- {q(t.dest)} <<<\"$stale\"; then",
                f"    sbcast --force --preserve {q(str(t.local))} {q(t.dest)} || exit 1",
                f"    echo sent {q(t.dest)} >> \"$record\"; sent=$((sent + 1))",
                "else",
                f"    echo unchanged {q(t.dest)} >> \"$record\"; same=$((same + 1))",
                "fi",
            ]
        lines.append('echo "# $SLURM_JOB_NODELIST: $sent sent, $same unchanged" >> "$record"')
        return "\n".join(lines) + "\n"

    def _dest(self, item: StageItem) -> str:
        """The item's path on every node: ``dest`` (relative ones under ``remote_root``)."""
        if "{host}" in item.dest or "{host}" in self.settings.remote_root:
            raise StagingError("the sbcast stager sends one path to every node: `{host}` in a "
                               "destination cannot be filled in; remove it")
        dest = item.dest or str(item.source.resolve())
        root = self.settings.remote_root
        if root and not posixpath.isabs(dest):
            joined = posixpath.normpath(posixpath.join(root, dest))
            base = posixpath.normpath(root)
            if joined != base and not joined.startswith(base.rstrip("/") + "/"):
                raise StagingError(f"'{dest}' escapes the remote root {root}: use a relative "
                                   "path inside it")
            return joined
        if not posixpath.isabs(dest):
            raise StagingError(f"the sbcast stager needs an absolute destination or a "
                               f"remote_root, not '{dest}': sbcast has no working folder on the "
                               "nodes")
        return posixpath.normpath(dest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
