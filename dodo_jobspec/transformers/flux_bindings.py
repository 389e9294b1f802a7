"""Finding Flux's Python bindings the ways users have them, and checking they fit the instance.

Three ways, tried in order (once per process):

1. ``import flux`` just works: ``flux python``, a PYTHONPATH already set, or the PyPI package
   ``flux-python`` (``pip install 'jobspec-do[flux]'``) with ``LD_LIBRARY_PATH`` naming the
   libflux-core it was built for.
2. The PyPI package without ``LD_LIBRARY_PATH``: its compiled modules cannot find
   ``libflux-core.so``. The libraries of the Flux on PATH (``<prefix>/lib``) are loaded first,
   by full path, so the dynamic linker finds them already there by their soname.
3. The instance's own bindings: the folder ``flux env`` puts on PYTHONPATH (what ``flux
   python`` uses), added to ``sys.path``. It needs this interpreter's Python version, and cffi,
   ply and pyyaml (the extra brings the first two).

Bindings must match the libflux-core they load and the instance they talk to: ``mismatch``
says, in words, when they do not.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The libraries the bindings' compiled modules link against (_core, _idset, _hostlist).
_LIBRARIES = ("libflux-core.so.2", "libflux-idset.so.1", "libflux-hostlist.so.1")


@dataclass(frozen=True)
class Bindings:
    """Importable bindings: the ``flux`` package, where it came from, and its version."""

    module: Any
    origin: str  # how they were found, for messages
    version: str | None  # the bindings' own version (flux-python's, else libflux-core's)
    library: str | None  # the version of the libflux-core they loaded


@dataclass
class _Found:
    done: bool = False
    origin: str | None = None
    reason: str = ""


_found = _Found()


def find() -> Bindings | None:
    """The flux bindings, or None (see :func:`why_missing`).

    The search (and what it changes: sys.path, loaded libraries) happens once per process;
    the module itself is taken from ``sys.modules`` on every call.
    """
    if _found.done and _found.origin is not None and _try_import() is not None:
        _found.done = False  # found once, but they no longer import (a stand-in went away)
    if not _found.done:
        _found.done = True
        _found.origin, _found.reason = _search()
    if _found.origin is None:
        return None
    import flux  # type: ignore[import-not-found]

    return Bindings(flux, _found.origin, _package_version(flux), _library_version())


def why_missing() -> str:
    """Why :func:`find` found no bindings (empty when it did)."""
    find()
    return _found.reason


def reset() -> None:
    """Forget what :func:`find` found (for tests that change PATH or the environment)."""
    _found.done, _found.origin, _found.reason = False, None, ""


def mismatch(bindings: Bindings, instance_version: str | None) -> str | None:
    """Why these bindings must not be used with this instance, or None when they fit."""
    ours = bindings.version
    if ours and bindings.library and ours != bindings.library:
        return (f"the flux Python bindings ({bindings.origin}) are version {ours} but loaded "
                f"libflux-core {bindings.library}: install flux-python=={bindings.library}")
    if ours and instance_version and ours != instance_version:
        return (f"the flux Python bindings ({bindings.origin}) are version {ours} but the "
                f"Flux instance at $FLUX_URI runs flux-core {instance_version}: "
                f"pip install 'flux-python=={instance_version}', or use the flux command "
                "(JOBSPEC_DO_FLUX_API=cli)")
    return None


# -- the search ----------------------------------------------------------------------------
def _search() -> tuple[str | None, str]:
    """How the bindings were made importable (None: they were not), and why not."""
    error = _try_import()
    if error is None:
        return "import flux", ""
    prefix = _prefix()
    if prefix is None:
        return None, f"import flux failed ({error}) and no flux command is on PATH"
    if "libflux" in error and _preload(prefix / "lib"):
        again = _try_import()
        if again is None:
            return f"flux-python with {prefix / 'lib'}", ""
        error = again
    for folder in _instance_pythonpath():
        if folder not in sys.path and os.path.isdir(folder):
            sys.path.append(folder)
            again = _try_import()
            if again is None:
                return f"the instance's own, {folder}", ""
            sys.path.remove(folder)
            error = again
    return None, f"import flux failed: {error}"


def _try_import() -> str | None:
    """Import flux and flux.job; the error text, or None when they import."""
    try:
        importlib.import_module("flux")
        importlib.import_module("flux.job")
    except ImportError as exc:
        # A half-imported package would stay in sys.modules and hide the next attempt.
        for name in [n for n in sys.modules if n in ("flux", "_flux")
                     or n.startswith(("flux.", "_flux."))]:
            del sys.modules[name]
        return str(exc)
    return None


def _package_version(module: Any) -> str | None:
    """flux-python's version when these are its files; else the library's (same build)."""
    try:
        dist = importlib.metadata.distribution("flux-python")
    except importlib.metadata.PackageNotFoundError:
        return _library_version()
    mine = Path(str(dist.locate_file("flux/__init__.py"))).resolve()
    where = getattr(module, "__file__", None)
    if where and Path(where).resolve() == mine:
        return dist.version
    return _library_version()


def _library_version() -> str | None:
    try:
        from _flux._core import ffi, lib  # type: ignore[import-not-found]

        return str(ffi.string(lib.flux_core_version_string()).decode())
    except (ImportError, AttributeError):
        return None


def _prefix() -> Path | None:
    """The installation prefix of the flux command on PATH."""
    found = shutil.which("flux")
    return Path(os.path.realpath(found)).parent.parent if found else None


def _preload(libdir: Path) -> bool:
    """Load Flux's libraries by path so the bindings' modules find them by soname."""
    loaded = False
    for name in _LIBRARIES:
        path = libdir / name
        if path.exists():
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                loaded = True
            except OSError:
                return False
    return loaded


def _instance_pythonpath() -> list[str]:
    """The PYTHONPATH ``flux env`` gives its commands: where ``flux python`` finds flux."""
    try:
        proc = subprocess.run(["flux", "env", "sh", "-c", 'printf %s "$PYTHONPATH"'],
                              capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [p for p in proc.stdout.split(os.pathsep) if p] if proc.returncode == 0 else []
