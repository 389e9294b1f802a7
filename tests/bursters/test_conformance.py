"""The conformance module (dodo_jobspec/bursters/conformance.py), run against the built-in
bursters on real places: a Flux instance, a flux-local instance this test lets the burster
start (and stops), and this machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dodo_jobspec.bursters.base import Burster
from dodo_jobspec.bursters.conformance import *  # noqa: F403
from dodo_jobspec.bursters.flux import FluxBurster, FluxSettings
from dodo_jobspec.bursters.flux_local import FluxLocalBurster, FluxLocalSettings
from dodo_jobspec.bursters.local import LocalBurster
from tests.bursters.fluxes import FluxInstance


@pytest.fixture(params=["flux", "flux-local", "local"])
def burster(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Burster]:
    if request.param == "local":
        yield LocalBurster(None, tmp_path / "state")
        return
    target: FluxInstance = request.getfixturevalue("flux_target")
    monkeypatch.setenv("PATH", target.env()["PATH"])
    if request.param == "flux":
        yield FluxBurster(FluxSettings(name="conf", uri=target.uri), tmp_path / "state")
        return
    b = FluxLocalBurster(FluxLocalSettings(name="conf-local", size=1), tmp_path / "state")
    try:
        yield b
    finally:
        b.close(needed=False)  # shut down what the tests started
        assert b.uri() == ""
