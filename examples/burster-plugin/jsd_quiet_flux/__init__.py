"""`quiet-flux`: burst to a Flux instance, but only while fewer than ``max_pending`` jobs wait
in its queue: bursting into a queue as long as the primary's would gain nothing.

    burst:
    - {plugin: quiet-flux, uri: "local:///run/flux/local", max_pending: 2, after: 1m}

Everything else (submitting, polling, cancelling, finding by token, taking a job back) is the
built-in `flux` burster's.
"""

from __future__ import annotations

from dataclasses import dataclass

from dodo_jobspec.bursters.flux import FluxBurster, FluxSettings
from dodo_jobspec.errors import PluginError
from dodo_jobspec.spec.model import ResourceRequest


@dataclass(frozen=True)
class QuietFluxSettings(FluxSettings):
    """The built-in flux settings (uri, after, name), plus how short the queue must be."""

    max_pending: int = 0


class QuietFluxBurster(FluxBurster):
    """A Flux instance that takes work only while its queue is short."""

    name = "quiet-flux"
    description = "a Flux instance by URI, while fewer than max_pending jobs wait there"
    Settings = QuietFluxSettings
    settings: QuietFluxSettings

    def refuses(self, req: ResourceRequest | None) -> str | None:
        reason = super().refuses(req)
        if reason is not None:
            return reason
        rc, out, err = self.run(["flux", "jobs", "--filter=pending", "-no", "{id}"])
        if rc != 0:
            raise PluginError(f"flux jobs at {self.uri()}: {err.strip()}")
        pending = len(out.split())
        if pending > self.settings.max_pending:
            return f"{pending} job(s) already wait there (max_pending: {self.settings.max_pending})"
        return None
