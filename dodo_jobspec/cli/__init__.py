"""The command line: argument parsing, the commands, the watch-folder service.

Nothing below ``dodo_jobspec.cli`` is imported by the rest of the package: the CLI sits on top
of the pipeline (spec -> plan -> engine -> transformers/stagers -> records) and only calls it.

``main`` and ``console`` are imported on first use: the console script's quick no-op answer
(quick.py) lives in this package and must not pay for argparse and the commands.
"""

from __future__ import annotations

__all__ = ["console", "main"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'dodo_jobspec.cli' has no attribute {name!r}")
