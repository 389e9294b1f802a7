"""Find transformers and stagers through entry points; built-ins register the same way.

A plugin that fails to import is recorded, and its error is raised only when that plugin is
asked for, so one broken out-of-tree package never stops the others from working.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from .errors import PluginError, suggest

TRANSFORMERS = "dodo_jobspec.transformers"
STAGERS = "dodo_jobspec.stagers"

_registered: dict[str, dict[str, type]] = {TRANSFORMERS: {}, STAGERS: {}}


@dataclass(frozen=True)
class PluginInfo:
    """What `jobspec-do plugins` shows for one plugin."""

    group: str
    name: str
    target: str
    origin: str
    error: str | None


@cache
def _entries(group: str) -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=group)}


def register(group: str, name: str, cls: type) -> None:
    """Register a plugin class directly (tests and embedding programs)."""
    _registered[group][name] = cls


def names(group: str) -> list[str]:
    """Every plugin name known in ``group``."""
    return sorted({*_entries(group), *_registered[group]})


def load(group: str, name: str) -> Any:
    """The plugin class called ``name``; PluginError naming the fix if unknown or broken."""
    if name in _registered[group]:
        return _registered[group][name]
    entries = _entries(group)
    kind = "transformer" if group == TRANSFORMERS else "stager"
    if name not in entries:
        near = suggest(name, entries)
        hint = f"did you mean '{near}'?" if near else f"known: {', '.join(sorted(entries))}"
        raise PluginError(f"unknown {kind} '{name}' ({hint})")
    module_name, _, attr = entries[name].partition(":")
    try:
        import importlib

        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise PluginError(f"{kind} '{name}' could not be loaded: {exc}") from exc
    return cls


def info(group: str) -> list[PluginInfo]:
    """Every plugin in ``group`` with its origin and, if it fails to load, why."""
    out = []
    entries = _entries(group)
    for name in names(group):
        target = entries.get(name, "registered in-process")
        origin = "built-in" if target.startswith("dodo_jobspec.") else "external"
        error = None
        try:
            load(group, name)
        except PluginError as exc:
            error = str(exc)
        out.append(PluginInfo(group, name, target, origin, error))
    return out
