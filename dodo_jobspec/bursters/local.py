"""`local`: run the task here, as a process of this run (the local transformer).

For a task the primary scheduler can never take (it asks for more than its nodes have) but
this machine can. This machine has no queue, so a task never moves *from* here, and a job
left by a killed run is not re-attached: like any local task, it is stopped and runs again.
"""

from __future__ import annotations

import os

from ..transformers.base import Transformer, TransformerOptions
from ..transformers.local import LocalTransformer
from .base import Burster, Capacity


class LocalBurster(Burster):
    """Jobs run as processes on this machine."""

    name = "local"
    description = "this machine, as local processes"

    def make_transformer(self) -> Transformer:
        return LocalTransformer(TransformerOptions(state_dir=self.state_dir))

    def capacity(self) -> Capacity | None:
        return Capacity(1, os.cpu_count() or 1)

    def describe(self) -> str:
        return f"{self.label} (this machine, {os.cpu_count() or 1} cores)"
