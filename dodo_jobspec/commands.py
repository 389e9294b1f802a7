"""Sub-commands that drive the engine: run, plan, status, logs, clean, cancel."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_engine_commands(sub: Any, transformer_arg: Callable[[argparse.ArgumentParser], None]
                        ) -> None:
    """Register the engine's sub-commands on the `jobspec-do` parser."""
