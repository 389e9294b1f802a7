"""`flux`: burst to a Flux instance given by its URI (the flux transformer, aimed there).

Settings (``burst: [{plugin: flux, uri: ..., after: 30s}]``): ``uri``, the instance's
``FLUX_URI`` (empty: the one in this process's environment, i.e. the primary's own).

Taking a queued job back (``withdraw``) relies on one Flux rule: a job's urgency cannot be
changed once resources are allocated to it. So ``flux job urgency ID hold`` either holds a
job that has not started, which the scheduler then never starts, or fails because it already
has its resources and stays. A held job is cancelled, and its eventlog must then show it
ended (``clean``) with no ``alloc`` event: it never ran.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import PluginError
from ..transformers.base import Transformer, TransformerOptions
from ..transformers.flux import FluxTransformer
from .base import Burster, BurstSettings, Capacity, env_with

WAIT_END = 30.0  # seconds for a cancelled job to reach its end (a held job ends at once)


@dataclass(frozen=True)
class FluxSettings(BurstSettings):
    """Where the Flux instance is."""

    uri: str = ""


class FluxBurster(Burster):
    """Jobs go to the Flux instance at ``uri`` through the flux transformer."""

    name = "flux"
    description = "a Flux instance by URI (flux submit / flux batch there)"
    Settings = FluxSettings
    settings: FluxSettings

    def make_transformer(self) -> Transformer:
        transformer = FluxTransformer(TransformerOptions(settings={"api": "cli"},
                                                         state_dir=self.state_dir))
        transformer.runner = self.run  # every flux command goes to this instance
        return transformer

    def uri(self) -> str:
        """The instance's URI ("" means the environment's)."""
        return self.settings.uri

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        """Run a flux command against this instance: (exit code, stdout, stderr)."""
        uri = self.uri()
        env = env_with(FLUX_F58_FORCE_ASCII="1", **({"FLUX_URI": uri} if uri else {}))
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, env=env,
                                  stdin=subprocess.DEVNULL, check=False, timeout=60)
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: not found on PATH"
        except subprocess.TimeoutExpired:
            return 124, "", f"{' '.join(argv)}: no answer within 60s"
        return proc.returncode, proc.stdout, proc.stderr

    def capacity(self) -> Capacity | None:
        rc, out, err = self.run(["flux", "resource", "list", "-s", "all", "-no",
                                 "{nnodes} {ncores} {ngpus}"])
        if rc != 0:
            raise PluginError(f"flux resource list at {self.uri() or '$FLUX_URI'}: "
                              f"{err.strip() or f'exit {rc}'}")
        try:
            nodes, cores, gpus = (int(x) for x in out.split()[:3])
        except ValueError:
            return None
        if nodes < 1:
            return None
        return Capacity(nodes, cores // nodes, gpus // nodes)

    def withdraw(self, job_id: str) -> bool:
        ids = [j for j in job_id.split(",") if j]  # a replicated task is several jobs
        held, started = [], []
        for jid in ids:
            rc, _out, err = self.run(["flux", "job", "urgency", jid, "hold"])
            if rc == 0:
                held.append(jid)
                continue
            events = self._events(jid)  # refused: allocated already, or already ended
            if "alloc" in events:
                started.append(jid)
            elif "clean" not in events:  # neither: something else is wrong
                self._release(held)
                raise PluginError(f"flux job urgency {jid} hold: {err.strip() or f'exit {rc}'}")
        if started:  # the task began here: none of it moves
            self._release(held)
            return False
        try:
            self._cancel_held(held)
        except PluginError:
            self._release(held)  # a job left held would never run anywhere
            raise
        # A held job is never given resources; this only makes sure of it.
        return not any("alloc" in self._events(jid) for jid in ids)

    def _cancel_held(self, held: list[str]) -> None:
        if not held:
            return
        rc, _out, err = self.run(["flux", "cancel", *held])
        if rc != 0:
            raise PluginError(f"flux cancel {' '.join(held)}: {err.strip() or f'exit {rc}'}")
        for jid in held:
            rc, _out, err = self.run(["flux", "job", "wait-event", f"--timeout={WAIT_END:g}",
                                      jid, "clean"])
            if rc != 0:
                raise PluginError(f"job {jid} was cancelled but did not end within "
                                  f"{WAIT_END:g}s: {err.strip()}")

    def _events(self, jid: str) -> set[str]:
        """The names of the events in ``jid``'s eventlog."""
        rc, out, err = self.run(["flux", "job", "eventlog", jid])
        if rc != 0:
            raise PluginError(f"flux job eventlog {jid}: {err.strip() or f'exit {rc}'}")
        return {parts[1] for line in out.splitlines() if len(parts := line.split()) > 1}

    def _release(self, held: list[str]) -> None:
        for jid in held:
            self.run(["flux", "job", "urgency", jid, "default"])

    def describe(self) -> str:
        return f"{self.label} (Flux, FLUX_URI={self.uri() or '$FLUX_URI'})"
