"""`jobspec-do watch`'s arguments, apart from the service itself (`watch.py`).

Every invocation builds the whole parser, the no-op re-run too: registering `watch` must not
import the service, which pulls in the records and the spec model (~20 ms of a no-op's
start-up). The service is imported only when `watch` is the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SETTLE = 1.0  # seconds a file's size and mtime must stay unchanged


def _seconds(value: str) -> float:
    from ..spec.resolve import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {value!r} (for example 60, 60s, 5m)") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than zero: {value!r}")
    return seconds


def add_watch_command(sub: Any) -> None:
    """Register `jobspec-do watch` on the parser's sub-commands."""
    p = sub.add_parser(
        "watch", help="run every JobSpec file put in DIR (a watch-folder service)",
        description="Watch DIR: each *.yaml, *.yml or *.json JobSpec put there is validated\n"
                    "(invalid ones move to DIR/invalid/ with the error beside them), run or\n"
                    "advanced in its own state directory (a --no-wait step on a scheduler), and\n"
                    "reported; finished ones move to DIR/done/, failed ones to DIR/failed/.\n"
                    "Write files under a dotfile name and rename them into DIR when complete.\n"
                    "SIGTERM stops it cleanly (exit 0); the next start carries on.",
        epilog="crontab, one cycle every 5 minutes:\n"
               "  */5 * * * * jobspec-do watch --once -t slurm /data/inbox >>/data/watch.log 2>&1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, metavar="DIR")
    p.add_argument("--every", type=_seconds, default=60.0, metavar="DURATION",
                   help="time between cycles: 60, 60s, 5m (default 60s)")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (for cron)")
    p.add_argument("-t", "--transformer",
                   help="workload manager: local (default), slurm, flux, or a plugin's name; "
                        "default from the config file, else $JOBSPEC_DO_TRANSFORMER, else local")
    p.add_argument("--state-root", type=Path, metavar="DIR",
                   help="where each spec's state directory <stem>/ lives "
                        "(default: DIR/.jobspec-do/)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="configuration file (default: DIR/jobspec-do.yaml, else "
                        "~/.config/jobspec-do/config.yaml)")
    p.add_argument("--settle", type=_seconds, default=SETTLE, metavar="DURATION",
                   help="a file is picked up once unchanged for this long (default 1s)")
    p.set_defaults(func=_cmd_watch)


def _cmd_watch(args: argparse.Namespace) -> int:
    from .watch import cmd_watch

    return cmd_watch(args)
