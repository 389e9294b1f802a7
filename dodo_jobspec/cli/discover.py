"""Which spec a command means when none is named, the way `make` finds its Makefile.

Looked for in the current folder, in this order:

1. ``jobspec.yaml`` or ``jobspec.yml``. Both there (and not one file under two names) is
   ambiguous: they would share one state folder, and picking one would be a guess.
2. When neither exists: the spec file whose state folder ``.jobspec-do/<stem>/`` a run used
   last, i.e. the run a plain ``jobspec-do --resume`` most likely means. Every run rewrites
   the folder's ``lock`` file (its pid), so the lock's mtime says when.

Nothing else is ever taken for a spec: a CI configuration or any other YAML file beside the
spec is not, unless a jobspec-do run has recorded it as its spec. Two candidates of the same
rank (rank 2: the same last-use time) are an error listing both, never a guess.

Everything under ``.jobspec-do/`` is untrusted: a state folder counts only if neither it
nor its ``spec`` file is a symlink, and that file names, by absolute path, a regular file (no
symlink) in this folder whose stem is the state folder's name (the folder a run of that file
really uses). Any other folder is passed over without a word from its contents. A ``lock``
that is not a regular file gives no time: the claim's is used.

This module runs before every spec command, the no-op fast path included: only the standard
library, a few stats when ``jobspec.yaml`` is there.
"""

from __future__ import annotations

import argparse
import os
import shlex
import stat
import sys
from pathlib import Path
from typing import NamedTuple

from ..errors import JobspecError

NAMES = ("jobspec.yaml", "jobspec.yml")
STATE = ".jobspec-do"  # records.state.default_state_dir: beside the spec, one folder per stem
OWNER = "spec"  # records.state.OWNER: the file naming the spec a state folder belongs to
_MAX_OWNER = 4096  # bytes read from an owner file: a path, not a dump of anything
_SHOWN = 6  # YAML files named in the hint when nothing is found


class Found(NamedTuple):
    """The spec chosen for a command that named none, and why it was chosen.

    A NamedTuple, not a dataclass: this module is imported by every call, the no-op fast
    path's included, and a frozen dataclass takes several times longer to create."""

    path: Path  # relative to the current folder: how the user would have typed it
    why: str


def add_spec_args(p: argparse.ArgumentParser, many: bool = False, note_stderr: bool = False,
                  short: bool = True) -> None:
    """The optional positional SPEC (``SPEC...`` with ``many``) and ``-f/--file SPEC``.

    ``note_stderr``: the line naming a found spec goes to stderr, where `run` prints its
    progress, or because stdout is data (`graph` for `dot`); else to stdout with the rest.
    ``short``: whether ``-f`` is free (`logs -f` is --follow)."""
    flags = ("-f", "--file") if short else ("--file",)
    hint = " (default: found in the current folder, see `jobspec-do --help`)"
    if many:
        p.add_argument("specs", nargs="*", metavar="SPEC", help="spec files" + hint)
        p.add_argument(*flags, dest="file", action="append", default=[], type=str,
                       metavar="SPEC", help="a spec file, as the positional SPEC; repeatable")
    else:
        p.add_argument("spec", nargs="?", type=Path, metavar="SPEC", help="the spec file" + hint)
        p.add_argument(*flags, dest="file", type=Path, metavar="SPEC",
                       help="the spec file, as the positional SPEC")
    p.set_defaults(spec_many=many, spec_note_stderr=note_stderr)


def choose(args: argparse.Namespace, typed: list[str]) -> Found | None:
    """Fill in ``args.spec`` (``args.specs``) from -f or, when no spec was named, from the
    current folder; print the line naming a found spec. ``typed``: the command line as the
    user typed it, for the hint that picks one of several candidates."""
    if not hasattr(args, "spec_many"):
        return None  # a command that takes no spec (schema, plugins, watch)
    if args.spec_many:
        if args.specs or args.file:
            args.specs = [*args.specs, *args.file]
            return None
    elif args.spec is not None or args.file is not None:
        if args.spec is not None and args.file is not None and args.spec != args.file:
            raise JobspecError(f"two specs named: {args.spec} and --file {args.file}; "
                               "name one (SPEC or -f SPEC)")
        args.spec = args.file if args.spec is None else args.spec
        return None
    _check_logs_task(args)
    found = find(Path.cwd(), typed)
    if args.spec_many:
        args.specs = [str(found.path)]
    else:
        args.spec = found.path
    _announce(args, found)
    return found


def _check_logs_task(args: argparse.Namespace) -> None:
    """`jobspec-do logs spec.yaml` is a spec without its TASK, not a task named spec.yaml.
    (A task may well share its name with a file it writes: only a spec-like name counts.)"""
    task = getattr(args, "task", None)
    if task is not None and task.endswith((".yaml", ".yml", ".json")) and os.path.isfile(task):
        raise JobspecError(f"'{task}' is a file, and logs needs a TASK: "
                           f"jobspec-do logs {shlex.quote(task)} TASK")


def _announce(args: argparse.Namespace, found: Found) -> None:
    """Name the chosen spec first, so no one wonders which spec ran. Not under --json (the
    JSON names it), -q or --cron (quiet is quiet)."""
    if getattr(args, "json", False) or getattr(args, "quiet", False) \
            or getattr(args, "cron", False):
        return
    out = sys.stderr if args.spec_note_stderr else sys.stdout
    print(f"jobspec-do: using {found.path} ({found.why})", file=out, flush=True)


def find(folder: Path, typed: list[str]) -> Found:
    """The spec in ``folder`` a command without one means (see the module's docstring);
    JobspecError (exit 2) when there is none, or more than one of the same rank."""
    named = [n for n in NAMES if os.path.isfile(folder / n)]
    if len(named) == 2 and os.path.samefile(folder / named[0], folder / named[1]):
        named = named[:1]  # jobspec.yml a link to jobspec.yaml: one spec, two names
    if len(named) == 1:
        return Found(Path(named[0]), "no SPEC named; the default name")
    if named:
        raise _ambiguous(folder, named, "both default names are there", typed)
    runs, passed_over = _recorded_specs(folder)
    if not runs:
        raise _none(folder, passed_over)
    newest = max(t for t, _ in runs)
    last = sorted(name for t, name in runs if t == newest)
    if len(last) > 1:
        raise _ambiguous(folder, last, "their state folders were last used at the same time",
                         typed)
    return Found(Path(last[0]), f"no SPEC named; the spec run last here, "
                                f"per {STATE}/{Path(last[0]).stem}/")


def _recorded_specs(folder: Path) -> tuple[list[tuple[int, str]], int]:
    """(last-use time, file name) of every spec in ``folder`` with a valid state folder, and
    how many state folders were passed over."""
    base = folder / STATE
    try:
        if not stat.S_ISDIR(os.lstat(base).st_mode):
            return [], 0
        entries = list(os.scandir(base))
    except OSError:
        return [], 0
    here = os.path.realpath(folder)
    runs, passed_over = [], 0
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        found = _owner(entry.path, here, entry.name)
        if found is None:
            passed_over += 1
        else:
            runs.append(found)
    return runs, passed_over


def _owner(state: str, here: str, stem: str) -> tuple[int, str] | None:
    """(last-use time, spec file name) if ``state`` is the state folder of a spec in
    ``here``, else None."""
    try:
        fd = os.open(os.path.join(state, OWNER), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a fifo or a device would block or never end
        raw = os.read(fd, _MAX_OWNER + 1)
        owned = os.fstat(fd).st_mtime_ns
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        owner = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if len(raw) > _MAX_OWNER or "\n" in owner or not os.path.isabs(owner):
        return None
    parent, name = os.path.split(owner)
    if parent != here or os.path.splitext(name)[0] != stem:
        return None  # another folder's spec, or a folder a run of this spec would not use
    try:
        # A run records its spec's real path; here is real too, so a regular file (no link)
        # of that name is that spec. A link now (to a file elsewhere) keeps its state there.
        if not stat.S_ISREG(os.lstat(owner).st_mode):
            return None
        lock = os.lstat(os.path.join(state, "lock"))
    except FileNotFoundError as exc:
        if exc.filename == owner:
            return None  # gone: renamed, moved or deleted since
        return owned, name  # claimed but its lock is gone: as old as its claim
    except OSError:
        return None
    return (lock.st_mtime_ns if stat.S_ISREG(lock.st_mode) else owned), name


def _pick_hint(names: list[str], typed: list[str]) -> str:
    lines = [shlex.join(["jobspec-do", *typed, "-f" if _short_f(typed) else "--file", n])
             for n in names]
    return "pick one:\n" + "\n".join(f"        {line}" for line in lines)


def _short_f(typed: list[str]) -> bool:
    return not typed or typed[0] != "logs"  # `logs -f` is --follow


def _ambiguous(folder: Path, names: list[str], why: str, typed: list[str]) -> JobspecError:
    return JobspecError(f"no SPEC named, and {len(names)} specs in {folder} fit equally "
                        f"({why}): {', '.join(names)}\n    hint: {_pick_hint(names, typed)}")


def _none(folder: Path, passed_over: int) -> JobspecError:
    looked = (f"looked for {NAMES[0]}, {NAMES[1]}, then a spec run here before (its state "
              f"folder under {STATE}/)")
    if passed_over:
        looked += (f"; {passed_over} state folder(s) there name no spec file of this folder "
                   "(moved, renamed or deleted since)")
    hint = "name the spec: jobspec-do SPEC, or -f SPEC"
    try:
        yamls = sorted(e.name for e in os.scandir(folder)
                       if e.name.endswith((".yaml", ".yml")) and not e.name.startswith(".")
                       and e.name != "jobspec-do.yaml" and e.is_file())
    except OSError:
        yamls = []
    if yamls:
        more = f" and {len(yamls) - _SHOWN} more" if len(yamls) > _SHOWN else ""
        hint += f" (YAML files here: {', '.join(yamls[:_SHOWN])}{more})"
    return JobspecError(f"no SPEC named, and none found in {folder}: {looked}\n"
                        f"    hint: {hint}")
