"""What a Flux instance offers, enough to refuse a request it could never run.

Asked once per run, before anything is submitted: its queues (``flux config get queues``) and
its resources (``flux resource R``, the resource set every job is carved from). An instance
that cannot be asked (no flux, no FLUX_URI) is ``None``: then nothing is checked, as with
Slurm when ``sinfo`` does not answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..spec.model import Counts

Runner = Callable[[Sequence[str]], tuple[int, str, str]]


@dataclass(frozen=True)
class InstanceInfo:
    """The queues and the nodes of one instance (cores and gpus per node, by rank)."""

    queues: tuple[str, ...]  # empty: the instance has no named queues
    cores: tuple[int, ...]  # per node
    gpus: tuple[int, ...]  # per node, same order

    @classmethod
    def ask(cls, runner: Runner) -> InstanceInfo | None:
        """Ask the instance through ``runner`` (argv -> rc, out, err); None if it does not say."""
        rc, out, _err = runner(["flux", "resource", "R"])
        if rc != 0:
            return None
        nodes = _nodes(out)
        if nodes is None:
            return None
        rc, out, _err = runner(["flux", "config", "get", "--default={}", "queues"])
        queues = _queues(out) if rc == 0 else None
        if queues is None:
            return None
        return cls(tuple(queues), tuple(c for c, _ in nodes), tuple(g for _, g in nodes))

    def unfit(self, counts: Counts) -> str | None:
        """Why no placement on this instance's nodes can satisfy ``counts``, or None."""
        if not self.cores:
            return "the instance has no nodes"
        n, cores, gpus = len(self.cores), max(self.cores), max(self.gpus)
        if counts.nodes > n:
            return f"{counts.nodes} nodes asked, the instance has {n}"
        if counts.cores_per_slot > cores:
            return f"{counts.cores_per_slot} cores per slot asked, the largest node has {cores}"
        per_node = counts.cores_per_slot * math.ceil(counts.slots / max(counts.nodes, 1))
        if counts.nodes and per_node > cores:
            return f"{per_node} cores per node asked, the largest node has {cores}"
        if not counts.nodes and counts.cores > sum(self.cores):
            return f"{counts.cores} cores asked, the instance has {sum(self.cores)}"
        if counts.gpus_per_slot > gpus:
            return (f"{counts.gpus_per_slot} gpus per slot asked, "
                    + (f"the most on one node is {gpus}" if gpus else "the instance has none"))
        return None

    def describe_queues(self) -> str:
        """The queues, in words."""
        if not self.queues:
            return "it has no queues configured"
        return "its queues are " + ", ".join(f"'{q}'" for q in self.queues)


def _nodes(text: str) -> list[tuple[int, int]] | None:
    """(cores, gpus) of every rank in an R document (RFC 20, R_lite)."""
    try:
        lite = json.loads(text)["execution"]["R_lite"]
        nodes = []
        for entry in lite:
            children = entry.get("children", {})
            per = (len(idset(children.get("core", ""))), len(idset(children.get("gpu", ""))))
            nodes += [per] * len(idset(str(entry["rank"])))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return nodes


def _queues(text: str) -> list[str] | None:
    try:
        data: Any = json.loads(text or "{}")
    except ValueError:
        return None
    return sorted(data) if isinstance(data, Mapping) else None


def idset(text: str) -> list[int]:
    """The members of an RFC 22 idset such as ``0-3,7`` (brackets allowed)."""
    out: list[int] = []
    for part in text.strip().strip("[]").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out
