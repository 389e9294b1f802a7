"""The burst tests' Flux instances (see fluxes.py)."""

from tests.bursters.fluxes import fluxes, full  # noqa: F401
