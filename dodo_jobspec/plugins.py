"""Find transformers, stagers and bursters through entry points; built-ins register the same way.

A plugin that fails to import is recorded, and its error is raised only when that plugin is
asked for, so one broken out-of-tree package never stops the others from working.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

from .errors import PluginError, suggest

TRANSFORMERS = "dodo_jobspec.transformers"
STAGERS = "dodo_jobspec.stagers"
BURSTERS = "dodo_jobspec.bursters"
GROUPS = (TRANSFORMERS, STAGERS, BURSTERS)
_KIND = {TRANSFORMERS: "transformer", STAGERS: "stager", BURSTERS: "burster"}

_registered: dict[str, dict[str, type]] = {g: {} for g in GROUPS}


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
    return _all_entries().get(group, {})


@cache
def _all_entries() -> dict[str, dict[str, str]]:
    """Every group's entry points, remembered under a key of the installed distributions.

    importlib.metadata costs ~15 ms per command here (its import, then reading every
    distribution's metadata), a tenth of a no-op run. The key covers every directory on
    sys.path and the entry_points.txt of every distribution in it (name, size, mtime), so an
    install, removal, upgrade or edit of any package is a new key."""
    key = _installed_key()
    cache_file = _cache_file()
    if cache_file is not None:
        try:
            with open(cache_file, "rb") as fh:
                saved = json.loads(fh.read())
            if saved.get("key") == key and set(GROUPS) <= set(saved["entries"]):
                return {g: dict(v) for g, v in saved["entries"].items()}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            pass
    from importlib.metadata import entry_points

    found = entry_points()
    out = {g: {ep.name: ep.value for ep in found.select(group=g)} for g in GROUPS}
    if cache_file is not None:
        try:
            os.makedirs(os.path.dirname(cache_file), exist_ok=True)
            tmp = f"{cache_file}.{os.getpid()}"
            with open(tmp, "w") as fh:
                json.dump({"key": key, "entries": out}, fh)
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a cache that cannot be written is skipped
    return out


def _cache_file() -> str | None:
    if os.environ.get("JOBSPEC_DO_CACHE", "1") == "0":
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jobspec-do", "entry-points.json")


def _installed_key() -> str:
    h = hashlib.sha256(f"{sys.executable}|{sys.version}".encode())
    for folder in sys.path:
        try:
            names = sorted(os.listdir(folder or "."))
        except OSError:  # a zip file, or a folder that does not exist
            try:
                st = os.stat(folder)
                h.update(f"{folder}|file|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{folder}|missing\n".encode())
            continue
        h.update(f"{folder}|dir\n".encode())
        for name in names:
            if name.endswith((".dist-info", ".egg-info", ".egg-link", ".pth")):
                try:
                    st = os.stat(os.path.join(folder, name, "entry_points.txt")
                                 if not name.endswith((".egg-link", ".pth"))
                                 else os.path.join(folder, name))
                    h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
                except OSError:
                    h.update(f"{name}|-\n".encode())
    return h.hexdigest()


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
    kind = _KIND[group]
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
