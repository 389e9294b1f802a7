"""Real Flux instances for the burst tests: a small primary kept full by a blocker job, and a
bigger target. Each is ``flux start --test-size=N`` in its own session; stopped at the end.

Outside CI a missing flux skips; with CI=true it fails (need_service).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import need_service

FLUX_BIN = Path("/opt/flux-core/bin")


def flux_path() -> str:
    """PATH with Flux's bin folder first (where the shared build installs it)."""
    return f"{FLUX_BIN}:{os.environ.get('PATH', '')}" if FLUX_BIN.is_dir() \
        else os.environ.get("PATH", "")


@dataclass
class FluxInstance:
    """One running test instance."""

    uri: str
    size: int
    proc: subprocess.Popen[bytes]
    blocker: str = ""  # the job keeping it full, while one does

    def env(self) -> dict[str, str]:
        return {**os.environ, "PATH": flux_path(), "FLUX_URI": self.uri,
                "FLUX_F58_FORCE_ASCII": "1"}

    def flux(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(["flux", *args], env=self.env(), capture_output=True, text=True,
                              timeout=60, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"flux {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def block(self) -> str:
        """Fill every node with a job that sleeps until cancelled; its id."""
        jid = self.flux("submit", f"-N{self.size}", "-x", "sleep", "3600").strip()
        deadline = time.monotonic() + 30
        while "alloc" not in self.flux("job", "eventlog", jid):
            assert time.monotonic() < deadline, "the blocker job never started"
            time.sleep(0.1)
        return jid

    def events(self, jid: str) -> list[str]:
        return [ln.split()[1] for ln in self.flux("job", "eventlog", jid).splitlines()
                if len(ln.split()) > 1]

    def jobs_named(self, name: str) -> list[str]:
        out = self.flux("jobs", "-a", f"--name={name}", "-no", "{id}")
        return out.split()

    def cancel_all(self) -> None:
        self.flux("cancel", "--all", "-q", check=False)


def start_instance(size: int) -> FluxInstance:
    """A new ``flux start --test-size=size`` instance (needs flux; skip or fail if missing)."""
    if shutil.which("flux", path=flux_path()) is None:
        need_service("flux is not installed (see ../shared/flux/README.md)")
    folder = Path(tempfile.mkdtemp(prefix="jsd-burst-flux-"))
    uri_file = folder / "uri"
    proc = subprocess.Popen(
        ["flux", "start", f"--test-size={size}", "bash", "-c",
         f'echo "$FLUX_URI" > {uri_file}.tmp && mv {uri_file}.tmp {uri_file} && '
         "exec sleep infinity"],
        env={**os.environ, "PATH": flux_path()}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not uri_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            need_service(f"flux start --test-size={size} did not come up")
        time.sleep(0.1)
    return FluxInstance(uri_file.read_text().strip(), size, proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop an instance this module started (its whole session)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def fluxes() -> Iterator[tuple[FluxInstance, FluxInstance]]:
    """(primary: 1 node, target: 2 nodes), started for the module."""
    primary = start_instance(1)
    try:
        target = start_instance(2)
    except BaseException:
        stop(primary.proc)
        raise
    try:
        yield primary, target
    finally:
        stop(primary.proc)
        stop(target.proc)


@pytest.fixture
def full(fluxes: tuple[FluxInstance, FluxInstance]) -> Iterator[tuple[FluxInstance,
                                                                       FluxInstance]]:
    """The two instances, the primary kept full by a blocker for the test's duration."""
    primary, target = fluxes
    primary.blocker = primary.block()
    try:
        yield primary, target
    finally:
        primary.cancel_all()
        target.cancel_all()


@pytest.fixture(scope="module")
def flux_target() -> Iterator[FluxInstance]:
    """One 2-node instance, a target for a primary that is not Flux."""
    target = start_instance(2)
    try:
        yield target
    finally:
        stop(target.proc)
