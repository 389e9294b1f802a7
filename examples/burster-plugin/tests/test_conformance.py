"""jobspec-do's burster conformance tests, run against quiet-flux on a real Flux instance
(`flux start --test-size=1`, started here; the test fails if flux is not on PATH)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsd_quiet_flux import QuietFluxBurster, QuietFluxSettings

from dodo_jobspec.bursters.conformance import *  # noqa: F403


@pytest.fixture(scope="module")
def flux_uri() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="quiet-flux-"))
    proc = subprocess.Popen(
        ["flux", "start", "--test-size=1", "bash", "-c",
         f'echo "$FLUX_URI" > {folder}/u.tmp && mv {folder}/u.tmp {folder}/uri && sleep inf'],
        start_new_session=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (folder / "uri").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "flux start failed"
        time.sleep(0.1)
    try:
        yield (folder / "uri").read_text().strip()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def burster(flux_uri: str, tmp_path: Path) -> QuietFluxBurster:
    return QuietFluxBurster(QuietFluxSettings(uri=flux_uri, max_pending=5), tmp_path)


def test_a_long_queue_is_refused(flux_uri: str, tmp_path: Path) -> None:
    strict = QuietFluxBurster(QuietFluxSettings(uri=flux_uri, max_pending=0), tmp_path)
    held = strict.run(["flux", "submit", "--urgency=hold", "true"])[1].strip()
    try:
        assert "1 job(s) already wait there" in (strict.refuses(None) or "")
    finally:
        strict.run(["flux", "cancel", held])
    assert strict.refuses(None) is None
