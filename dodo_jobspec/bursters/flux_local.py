"""`flux-local`: a Flux instance on this machine, started when a task first goes there and shut
down when the run ends with no job of it left there (the flux-burst-local idea, on one host).

Settings: ``size``, the number of brokers (``flux start --test-size``; each is this machine).
The instance lives in its own session, so a kill -9 of jobspec-do leaves it and its jobs
running: its URI is kept in ``<state dir>/bursters/<name>/uri`` and the next run (or
`status`, `cancel`) finds it there. Asking about jobs never starts an instance: a job on one
that is gone is lost, as on any scheduler that lost it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PluginError
from .base import Capacity, env_with
from .flux import FluxBurster, FluxSettings

START_WAIT = 60.0  # seconds for a new instance to answer
ALIVE_TTL = 3.0  # seconds an instance that answered is taken to be still up


@dataclass(frozen=True)
class FluxLocalSettings(FluxSettings):
    """How big an instance to start."""

    size: int = 2


class FluxLocalBurster(FluxBurster):
    """Jobs go to a Flux instance this burster starts here on demand."""

    name = "flux-local"
    description = "a Flux instance started on this machine on demand (flux start --test-size)"
    Settings = FluxLocalSettings
    settings: FluxLocalSettings

    def __init__(self, settings: FluxLocalSettings | None = None,
                 state_dir: Path | None = None) -> None:
        super().__init__(settings, state_dir)
        self._start_lock = threading.Lock()
        self._seen: dict[str, float] = {}  # URI -> when it last answered

    def folder(self) -> Path:
        """Where this instance's URI and log are kept."""
        base = self.state_dir or Path.cwd() / ".jobspec-do"
        return base / "bursters" / self.label

    def uri(self) -> str:
        """The running instance's URI, or "" when none runs (nothing is started here)."""
        try:
            uri = (self.folder() / "uri").read_text().strip()
        except OSError:
            return ""
        if not uri:
            return ""
        # Every flux command asks first: one `flux uptime` per URI every few seconds will do.
        seen = self._seen.get(uri)
        if seen is not None and time.monotonic() - seen < ALIVE_TTL:
            return uri
        if not self._answers(uri):
            return ""
        self._seen[uri] = time.monotonic()
        return uri

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        if list(argv[:2]) in (["flux", "submit"], ["flux", "batch"]):
            self.start()
        elif not self.uri():
            return 1, "", f"no {self.label} instance is running"
        return super().run(argv)

    def capacity(self) -> Capacity | None:
        if self.uri():
            return super().capacity()
        return Capacity(self.settings.size, os.cpu_count() or 1)  # what start() would make

    def start(self) -> str:
        """The instance's URI, starting it first if none runs."""
        with self._start_lock:
            uri = self.uri()
            if uri:
                return uri
            folder = self.folder()
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be starting it too
                uri = self.uri()
                if uri:
                    return uri
                (folder / "uri").unlink(missing_ok=True)
                script = f"echo \"$FLUX_URI\" > {folder}/uri.tmp && mv {folder}/uri.tmp " \
                         f"{folder}/uri && exec sleep inf"
                with open(folder / "log", "ab") as log:
                    subprocess.Popen(
                        ["flux", "start", f"--test-size={self.settings.size}", "bash", "-c",
                         script], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                        start_new_session=True, env=env_with(FLUX_URI=None))
                deadline = time.monotonic() + START_WAIT
                while time.monotonic() < deadline:
                    uri = self.uri()
                    if uri:
                        return uri
                    time.sleep(0.2)
            raise PluginError(f"{self.label}: flux start --test-size={self.settings.size} did "
                              f"not answer within {START_WAIT:g}s (see {folder / 'log'})")

    def close(self, needed: bool) -> None:
        """Shut the instance down when no job of the run is left on it."""
        uri = self.uri()
        if uri and not needed:
            subprocess.run(["flux", "shutdown", "--quiet"], env=env_with(FLUX_URI=uri),
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                           check=False)
            (self.folder() / "uri").unlink(missing_ok=True)
            self._seen.clear()

    def describe(self) -> str:
        return (f"{self.label} (a {self.settings.size}-broker Flux instance started here on "
                "demand)")

    @staticmethod
    def _answers(uri: str) -> bool:
        if uri.startswith("local://") and not os.path.exists(uri[len("local://"):]):
            return False  # its socket is gone: no need to wait for a timeout
        try:
            return subprocess.run(["flux", "uptime"], env=env_with(FLUX_URI=uri),
                                  capture_output=True, stdin=subprocess.DEVNULL, timeout=10,
                                  check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False
