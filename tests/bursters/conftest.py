"""The burst tests' Flux instances (see fluxes.py)."""

from tests.bursters.fluxes import flux_target, fluxes, full  # noqa: F401
