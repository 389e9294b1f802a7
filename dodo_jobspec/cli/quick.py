"""The `jobspec-do` console script's first step: answer a plain no-op re-run before argparse.

A re-run with nothing to do is the command cron calls every minute, and at 10,000 tasks it
was measured against GNU make's no-op (issue #23). Python's own start is ~18 ms; argparse,
pathlib, dataclasses and the rest of the command line cost as much again. So this module
reads the command line itself, for the common shapes only, and asks the no-op manifest
(noop.py) with nothing else imported. Anything it does not recognise, and every answer
other than "all up to date", goes to the full command line (app.py), which decides as it
always did: this path can only ever say what that one would say, never something else.

Recognised: ``[run] [-q] [-v] [-k] [--resume] [--cron] [--wait-lock] [-j N] [-t NAME] SPEC``
(long spellings and ``--opt=value`` too), SPEC an existing file, with no configuration file
for it and no undelivered webhook events. tests/cli/test_quick.py holds it to app.py's answer.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs this path ~4 ms
    from typing import NoReturn

# Options that change nothing on a no-op (the full path ignores them there too).
_SWITCHES = {"-q": "quiet", "--quiet": "quiet", "--cron": "quiet", "-v": "", "--verbose": "",
             "-k": "", "--keep-going": "", "--resume": "", "--wait-lock": ""}
_VALUED = {"-j": "jobs", "--jobs": "jobs", "-t": "transformer", "--transformer": "transformer"}


def parse(argv: list[str]) -> tuple[str, str | None, bool] | None:
    """(SPEC, -t NAME or None, quiet) of a plain `run`, or None for anything else."""
    words = argv[1:] if argv[:1] == ["run"] else argv
    spec = transformer = None
    quiet = False
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word in _SWITCHES:
            quiet = quiet or _SWITCHES[word] == "quiet"
            continue
        name, eq, value = word.partition("=")
        if not eq and word[:2] in ("-j", "-t") and len(word) > 2:  # -j2, -tslurm
            name, value, eq = word[:2], word[2:], "="
        if name in _VALUED:
            if not eq:
                if i == len(words):
                    return None
                value, i = words[i], i + 1
            if not value or value.startswith("-"):
                return None  # argparse's error, or an option taken for a value: its call
            if _VALUED[name] == "jobs":
                if not (value.isascii() and value.isdigit()) or int(value) < 1:
                    return None  # the usage error is app.py's to word
            else:
                transformer = value
            continue
        if word.startswith("-") or spec is not None:
            return None  # another option, `--`, a second positional: app.py's to read
        spec = word
    if spec is None or spec in _COMMANDS or not os.path.isfile(spec):
        return None
    return spec, transformer, quiet


# app.COMMANDS, repeated so this module need not import app.py (a test keeps them equal).
_COMMANDS = ("run", "validate", "graph", "schema", "plan", "status", "logs", "clean", "cancel",
             "plugins", "watch", "report")


def state_dir(spec: str) -> str | None:
    """records.folder.default_state_dir as a string, or None where it needs more (a stem of
    dots gets a digest name: paths.state_folder_name)."""
    name = os.path.basename(spec)
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name  # pathlib's PurePath.stem
    if not stem.strip(".") or "\0" in stem:
        return None
    return os.path.join(os.path.dirname(os.path.realpath(spec)), ".jobspec-do", stem)


def config_file(spec: str) -> bool:
    """Whether a configuration file applies (config.find): then app.py reads it."""
    beside = os.path.join(os.path.dirname(os.path.realpath(spec)), "jobspec-do.yaml")
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".config")
    return os.path.isfile(beside) or os.path.isfile(
        os.path.join(home, "jobspec-do", "config.yaml"))


def _outbox_pending(root: str) -> bool:
    try:
        return any(n.endswith(".json") and not n.startswith(".")
                   for n in os.listdir(os.path.join(root, "outbox")))
    except OSError:
        return False


def answer(argv: list[str]) -> bool:
    """Print the no-op line and return True if ``argv`` is a run with nothing to do."""
    parsed = parse(argv)
    if parsed is None:
        return False
    spec, transformer, quiet = parsed
    root = state_dir(spec)
    if root is None or config_file(spec) or _outbox_pending(root):
        return False
    from .. import noop

    name = transformer or os.environ.get("JOBSPEC_DO_TRANSFORMER") or "local"
    try:
        units = noop.check(root, noop.key(spec, name, None))
    except (OSError, ValueError):
        return False
    if units is None:
        return False
    noop.report(units, quiet)
    return True


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def console() -> NoReturn:
    """The `jobspec-do` console script: the quick answer, else app.console."""
    import _signal  # signal.py would import enum (~3 ms); app.console installs the same

    _signal.signal(_signal.SIGTERM, _interrupt)
    _signal.signal(_signal.SIGHUP, _interrupt)
    try:
        done = answer(sys.argv[1:])
        sys.stderr.flush()
    except KeyboardInterrupt:
        sys.stderr.write("jobspec-do: interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    except OSError:  # the line could not be said (a closed pipe): app.py's exit status
        os._exit(1)
    if not done:
        from .app import console as full

        full()
    os._exit(0)  # as app.console: the kernel frees the process at once


if __name__ == "__main__":  # pragma: no cover
    console()
