"""What a burster is: another place a task can run when the primary cannot take it.

A burster is a transformer with settings (which Flux instance, which Slurm cluster) plus the
two questions a move needs answered:

    ``refuses(request)``  why it cannot take a request (None: it can), asked before anything
                          is submitted to it, from the target's own view of its resources;
    ``withdraw(job_id)``  for a job queued on *this* place: stop it from ever starting, and
                          say whether it ended without having started (True) or had already
                          started and so stays where it is (False).

Everything else (submit, status, cancel, find by token) is its ``transformer()``'s. The
settings are a dataclass filled from the config file (`burst:` entries), so a burster can be
rebuilt from what a task's record saved about where it went (``to_record``/``from_record``):
`status`, `cancel` and `--resume` follow a moved task without the config that sent it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import PluginError
from ..spec.model import ResourceRequest
from ..transformers.base import Transformer

CAPACITY_TTL = 10.0  # seconds a place's answer about its size is used


@dataclass(frozen=True)
class Capacity:
    """What a place has: its nodes and the biggest node's cores and gpus."""

    nodes: int
    cores_per_node: int
    gpus_per_node: int = 0

    def refuses(self, req: ResourceRequest | None) -> str | None:
        """Why ``req`` can never run here (None: it fits an empty instance)."""
        if req is None:
            return None
        c = req.counts
        if c.nodes > self.nodes:
            return f"it asks for {c.nodes} node(s), this has {self.nodes}"
        per_node = c.slots // max(c.nodes, 1) if c.nodes else 1
        if c.nodes and per_node * c.cores_per_slot > self.cores_per_node:
            return (f"it asks for {per_node * c.cores_per_slot} core(s) per node, the "
                    f"biggest node has {self.cores_per_node}")
        if c.cores > self.nodes * self.cores_per_node:
            return f"it asks for {c.cores} core(s), this has {self.nodes * self.cores_per_node}"
        if c.cores_per_slot > self.cores_per_node:
            return (f"a slot asks for {c.cores_per_slot} core(s), the biggest node has "
                    f"{self.cores_per_node}")
        if c.gpus > self.nodes * self.gpus_per_node:
            return f"it asks for {c.gpus} gpu(s), this has {self.nodes * self.gpus_per_node}"
        return None


@dataclass(frozen=True)
class BurstSettings:
    """Settings every burster takes; a plugin's own dataclass adds its fields after these.

    ``after``: seconds a selected task may wait in the primary's queue before it moves here
    (None: it moves only when the primary cannot take it at all). ``name``: what the config
    and ``--burst`` call this entry (default: the plugin's name)."""

    name: str = ""
    after: float | None = None


class Burster(ABC):
    """Base class of every burster plugin (entry-point group ``dodo_jobspec.bursters``)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Settings: ClassVar[type[BurstSettings]] = BurstSettings

    def __init__(self, settings: BurstSettings | None = None,
                 state_dir: Path | None = None) -> None:
        settings = settings or self.Settings()
        if not isinstance(settings, self.Settings):
            raise PluginError(f"burster '{self.name}' takes {self.Settings.__name__}, not "
                              f"{type(settings).__name__}")
        self.settings = settings
        self.state_dir = state_dir
        self._transformer: Transformer | None = None
        self._capacity: tuple[float, Capacity | None] | None = None

    @property
    def label(self) -> str:
        """This entry's name: in records, `plan`, `status` and ``--burst``."""
        return self.settings.name or self.name

    # -- the contract --------------------------------------------------------------------------
    def transformer(self) -> Transformer:
        """The transformer that submits, polls, cancels and finds jobs here (made once)."""
        if self._transformer is None:
            self._transformer = self.make_transformer()
        return self._transformer

    @abstractmethod
    def make_transformer(self) -> Transformer:
        """A transformer aimed at this place."""

    @abstractmethod
    def capacity(self) -> Capacity | None:
        """What this place has (None: it cannot be asked right now)."""

    def refuses(self, req: ResourceRequest | None) -> str | None:
        """Why this place cannot take ``req`` (None: it can). Nothing is submitted to ask."""
        try:
            cap = self._known_capacity()
        except PluginError as exc:
            return f"{self.label} cannot be asked: {exc}"
        if cap is None:
            return f"{self.label} does not answer"
        return cap.refuses(req)

    def cannot_take(self, req: ResourceRequest | None) -> str | None:
        """Why ``req`` can never run here as far as this place can tell now (None: it can, or
        it cannot tell). Asked of the primary: a primary that does not answer sends nothing
        elsewhere on that account alone."""
        try:
            cap = self._known_capacity()
        except PluginError:
            return None
        return cap.refuses(req) if cap is not None else None

    def _known_capacity(self) -> Capacity | None:
        """``capacity()``, asked at most every CAPACITY_TTL seconds: every selected task asks
        before it is submitted, and a place's size rarely changes within a run."""
        now = time.monotonic()
        if self._capacity is None or now - self._capacity[0] > CAPACITY_TTL:
            self._capacity = (now, self.capacity())
        return self._capacity[1]

    def withdraw(self, job_id: str) -> bool:
        """Stop queued ``job_id`` here for good. True: it ended without having started;
        False: it had started, and keeps running here. Raise PluginError when unknown."""
        raise PluginError(f"burster '{self.name}' cannot take a queued job back; a task "
                          "queued here cannot move elsewhere")

    def describe(self) -> str:
        """One line for `plan`: where this is."""
        return self.label

    def close(self, needed: bool) -> None:
        """The run is over; ``needed`` says whether a job of it still lives here."""
        return None

    # -- records -------------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """What a task's record keeps to find this place again."""
        return {"plugin": self.name, "settings": dataclasses.asdict(self.settings)}


def from_record(data: dict[str, Any], state_dir: Path | None = None) -> Burster:
    """The burster a record's ``to_record()`` describes."""
    from .. import plugins

    cls = plugins.load(plugins.BURSTERS, str(data.get("plugin")))
    known = {f.name for f in dataclasses.fields(cls.Settings)}
    given = {k: v for k, v in dict(data.get("settings") or {}).items() if k in known}
    return cls(cls.Settings(**given), state_dir)


def env_with(**values: str | None) -> dict[str, str]:
    """This process's environment with ``values`` set (None: removed)."""
    env = dict(os.environ)
    for key, value in values.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
