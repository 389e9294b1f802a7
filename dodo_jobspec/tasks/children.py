"""What a group job's script left behind for each task it ran: how, where and when.

A group submitted whole (Slurm: one allocation with an srun step per child; Flux: `flux
batch`, its children jobs of the sub-instance) is one job to the workload manager, polled as
one. So each child's own end is told by the script, in the child's folder:

- ``exit.N``: its exit code, renamed into place once it ended (its mtime is that end);
- ``place.N``: one line per step or job of it that began to run, written from where it ran
  (Slurm: the step itself; Flux: the group's script, asking its instance) before ``exit.N``.

Read once, when the group job has ended: no query per child, and none while it runs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from ..records.status import started_note
from ..transformers.base import Transformer


@dataclass(frozen=True)
class ChildEnd:
    """How one task inside a group job ended, as its group's script recorded it."""

    exit_code: int | None  # None: it never ran (a sibling it waits for failed), or was cut off
    nodes: str = ""  # where it ran, named as the transformer names a job's nodes
    run_start: float | None = None  # when it began to run
    ended: float | None = None  # when its exit code was written

    @property
    def state(self) -> str:
        """Its end state, as its status line says it."""
        if self.exit_code is None:
            return "not run"
        return "completed" if self.exit_code == 0 else "failed"

    def info(self, job_id: str | None, group: str) -> str:
        """Its status line: the group's job and where it ran first (``job ID on NODES``, as a
        job's end line, so that `status` and `report` read both alike), then when it began."""
        parts = []
        if self.exit_code is not None and job_id:
            parts.append(f"job {job_id}" + (f" on {self.nodes}" if self.nodes else ""))
            if self.run_start is not None:
                parts.append(started_note(self.run_start))
        parts.append(f"in group {group}")
        if self.exit_code:
            parts.append(f"exit {self.exit_code}")
        return "; ".join(parts)


def child_end(folder: str, attempt: int, transformer: Transformer, group_nodes: str,
              direct: bool) -> ChildEnd:
    """Read ``exit.<attempt>`` and ``place.<attempt>`` in a child's ``folder``. ``group_nodes``:
    where the group job ran; ``direct``: the child is the group's own, not a nested group's."""
    exit_file = f"{folder}/exit.{attempt}"
    try:
        with open(exit_file) as fh:
            code = int(fh.read().strip())
        ended: float | None = os.stat(exit_file).st_mtime
    except (OSError, ValueError):
        return ChildEnd(None)
    lines: list[str] = []
    with contextlib.suppress(OSError), open(f"{folder}/place.{attempt}") as fh:
        lines = fh.read().splitlines()
    nodes, start = transformer.child_place(lines, group_nodes, direct)
    if start is not None and ended is not None and start > ended:
        start = ended  # clocks of different nodes: a start is never after the end
    return ChildEnd(code, nodes, start, ended)
