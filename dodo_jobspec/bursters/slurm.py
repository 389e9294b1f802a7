"""`slurm`: burst to a Slurm cluster given by its ``SLURM_CONF`` (the slurm transformer, aimed
there). As the primary (``-t slurm``), it is what takes a queued job back for a move.

Settings (``burst: [{plugin: slurm, conf: /etc/slurm-big/slurm.conf}]``): ``conf``, the
cluster's slurm.conf (empty: the one in this process's environment, i.e. the primary's).

Taking a queued job back (``withdraw``) relies on Slurm's rule that ``scontrol hold`` applies
only to a pending job ("Job is no longer pending execution" otherwise): a held job is never
started, so it is cancelled, and its end must show no node ever given to it.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from ..errors import PluginError
from ..spec.model import ResourceRequest
from ..transformers.base import Transformer, TransformerOptions
from ..transformers.slurm import SlurmTransformer
from .base import Burster, BurstSettings, Capacity, env_with

WAIT_END = 30.0  # seconds for a cancelled pending job to leave the queue's live states


@dataclass(frozen=True)
class SlurmSettings(BurstSettings):
    """Which Slurm cluster."""

    conf: str = ""


class SlurmBurster(Burster):
    """Jobs go to the Slurm cluster of ``conf`` through the slurm transformer."""

    name = "slurm"
    description = "another Slurm cluster, by its SLURM_CONF (sbatch there)"
    Settings = SlurmSettings
    settings: SlurmSettings

    def env(self) -> dict[str, str]:
        """The environment of this cluster's commands."""
        return env_with(SLURM_CONF=self.settings.conf) if self.settings.conf else env_with()

    def make_transformer(self) -> Transformer:
        transformer = SlurmTransformer(TransformerOptions(state_dir=self.state_dir))
        if self.settings.conf:
            transformer.env = self.env()
        return transformer

    def capacity(self) -> Capacity | None:
        cluster = self._slurm().cluster
        nodes = cluster.partition(None) if cluster else []
        if not nodes:
            return None
        return Capacity(len(nodes), max(n.cpus for n in nodes), max(n.gpus for n in nodes))

    def refuses(self, req: ResourceRequest | None) -> str | None:
        if self._slurm().cluster is None:
            return f"{self.label} does not answer (sinfo)"
        return self.cannot_take(req)

    def cannot_take(self, req: ResourceRequest | None) -> str | None:
        cluster = self._slurm().cluster
        return None if cluster is None or req is None else cluster.unfit(req.counts, None)

    def withdraw(self, job_id: str) -> bool:
        proc = self._run(["scontrol", "hold", job_id])
        try:
            return self._withdraw_held(job_id, proc)
        except PluginError:
            if proc.returncode == 0:  # a job left held would never run anywhere
                self._run(["scontrol", "release", job_id])
            raise

    def _withdraw_held(self, job_id: str, proc: subprocess.CompletedProcess[str]) -> bool:
        state, nodes = self._state(job_id)
        if proc.returncode != 0 and state in ("PENDING", None):
            raise PluginError(f"scontrol hold {job_id}: {proc.stderr.strip()}")
        if state != "PENDING" and nodes:
            if proc.returncode == 0:
                self._run(["scontrol", "release", job_id])
            return False  # it has (or had) nodes: it started, it stays
        if state == "PENDING":
            self._run(["scancel", job_id])
        deadline = time.monotonic() + WAIT_END
        while state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"):
            if time.monotonic() > deadline:
                raise PluginError(f"job {job_id} was cancelled but is still {state} after "
                                  f"{WAIT_END:g}s")
            time.sleep(0.2)
            state, nodes = self._state(job_id)
        return not nodes

    def describe(self) -> str:
        return f"{self.label} (Slurm, SLURM_CONF={self.settings.conf or '$SLURM_CONF'})"

    def _slurm(self) -> SlurmTransformer:
        transformer = self.transformer()
        assert isinstance(transformer, SlurmTransformer)
        return transformer

    def _state(self, job_id: str) -> tuple[str | None, str]:
        """(state, nodes it was given) of ``job_id``; nodes is "" for one that never ran."""
        proc = self._run(["squeue", "-t", "all", "-h", "-j", job_id, "-o", "%T|%N"])
        line = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
        if proc.returncode != 0 or "|" not in line:
            return None, ""
        state, _, nodes = line.partition("|")
        return state.strip(), nodes.strip()

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(argv, capture_output=True, text=True, env=self.env(),
                                  stdin=subprocess.DEVNULL, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PluginError(f"{argv[0]}: {exc}") from exc
