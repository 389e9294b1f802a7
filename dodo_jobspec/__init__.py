"""jobspec-do: a Make-style runner for JobSpec files.

The public API is small: ``load(path) -> Spec`` reads, validates and resolves a spec file.
Names are imported on first use, so the command line's no-op fast path starts quickly.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs the no-op re-run ~4 ms
    from typing import Any

__version__ = "0.1.0"

#: The "format" of every --json output (status, plan, errors): fields are only ever added
#: within one format.
JSON_FORMAT = 1

__all__ = ["Group", "JobspecError", "Problem", "Spec", "SpecError", "Task", "__version__", "load"]

_WHERE = {"load": ".spec.resolve", "Spec": ".spec.model", "Task": ".spec.model",
          "Group": ".spec.model",
          "JobspecError": ".errors", "Problem": ".errors", "SpecError": ".errors"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module 'dodo_jobspec' has no attribute {name!r}")
