"""The command line: argument parsing, the commands, the watch-folder service.

Nothing below ``dodo_jobspec.cli`` is imported by the rest of the package: the CLI sits on top
of the pipeline (spec -> plan -> engine -> transformers/stagers -> records) and only calls it.
"""

from .app import console, main

__all__ = ["console", "main"]
