"""The `jobspec-do` command line: parse arguments, dispatch, map errors to exit codes.

A re-run with nothing to do goes through here and `commands._noop` alone, so everything a
command needs beyond parsing is imported inside that command (tests/cli/test_noop_imports.py
lists what the no-op path must not import).
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .. import JSON_FORMAT, __version__
from ..errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    JobspecError,
    Problem,
    SpecError,
    format_path,
    suggest,
)
from .discover import add_spec_args, choose

DESCRIPTION = """\
Run a JobSpec the way Make runs a Makefile.

jobspec-do validates SPEC, turns every task and group into a unit of work with inputs and
outputs, and runs what is out of date on the local machine, Slurm or Flux, in dependency order.
A second run skips everything already done; after a failure, fix the task and run
`jobspec-do --resume`: only what failed and what depends on it runs again.
"""

EPILOG = """\
examples:
  jobspec-do examples/build-run.yaml            run on this machine (the default)
  jobspec-do -t slurm -j 8 spec.yaml            run on Slurm, 8 jobs in flight
  jobspec-do --resume                           after a failure or a kill: finish the work
  jobspec-do plan spec.yaml                     what would run, where, and why
  jobspec-do validate spec.yaml                 check a spec; errors name file, line, path
  jobspec-do status spec.yaml --json            per-task state for scripts

no SPEC named: every command that takes one uses jobspec.yaml or jobspec.yml in the current
folder, else the spec whose state folder (.jobspec-do/<stem>/) a run used last. Both names,
two state folders used at the same moment, or nothing found is an error (exit 2), never a
guess. The chosen file is named first. -f/--file SPEC names one as SPEC does.

exit codes:
  0 everything done   1 a task failed   2 invalid spec or usage
  75 another run holds the state directory   130 interrupted

The transformer comes from -t, else the config file (jobspec-do.yaml beside the spec or
~/.config/jobspec-do/config.yaml), else $JOBSPEC_DO_TRANSFORMER, else `local`.
"""

COMMANDS = ("run", "validate", "graph", "schema", "plan", "status", "logs", "clean", "cancel",
            "plugins", "watch", "report")

# A word that could be a mistyped command rather than a spec file: no dot, no slash.
_COMMAND_LIKE = re.compile(r"[A-Za-z][A-Za-z_-]*")


def _transformer_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--transformer",
                   help="workload manager: local (default), slurm, flux, or a plugin's name; "
                        "default from the config file, else $JOBSPEC_DO_TRANSFORMER, else local")


class _Unused:
    """Stands for the parser of a command this invocation does not run: takes its arguments
    and drops them."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        """Dropped."""

    def set_defaults(self, **kwargs: object) -> None:
        """Dropped."""


class _OneCommand:
    """The sub-commands of one invocation: every command is listed (for `--help` and the
    "invalid choice" error), but only the one that runs gets its arguments.

    Building every command's arguments cost a no-op re-run several milliseconds of its
    ~50 (each `add_argument` makes a help formatter); the others are never parsed."""

    def __init__(self, sub: Any, only: str | None) -> None:
        self.sub, self.only = sub, only

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        """The real parser of the command that runs (or of every command, ``only`` None)."""
        if self.only is None or name == self.only:
            return self.sub.add_parser(name, **kwargs)
        self.sub.add_parser(name, help=kwargs.get("help"))
        return _Unused()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per verb; with ``only``, the arguments of
    that command alone (``""``: of none, for the top-level `--help` and `--version`)."""
    top = argparse.ArgumentParser(
        prog="jobspec-do", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"jobspec-do {__version__}")
    sub = _OneCommand(top.add_subparsers(dest="command", metavar="COMMAND"), only)

    p = sub.add_parser("validate", help="check specs and report every problem",
                       description="Check each SPEC; print `SPEC: ok` or every problem found.")
    add_spec_args(p, many=True)
    p.add_argument("--strict", action="store_true",
                   help="accept only the current upstream spec (no older-draft conveniences "
                        "or jobspec-do extensions)")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    _transformer_arg(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("graph", help="print the task/group dependency graph")
    add_spec_args(p, note_stderr=True)
    p.add_argument("--format", choices=("text", "dot", "mermaid"), default="text")
    _transformer_arg(p)
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("schema", help="print the JSON Schema (point your editor at it)")
    p.add_argument("--strict", action="store_true", help="the upstream-only schema")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("plugins", help="list transformers and stagers, and any load error")
    p.set_defaults(func=cmd_plugins)

    from .commands import add_engine_commands

    add_engine_commands(sub, _transformer_arg)
    from .watch_args import add_watch_command

    add_watch_command(sub)
    return top


def _default_resources(transformer: str | None):  # type: ignore[no-untyped-def]
    from .. import config, plugins

    name = config.transformer_name(transformer)
    return plugins.load(plugins.TRANSFORMERS, name).default_resources


def cmd_validate(args: argparse.Namespace) -> int:
    """`jobspec-do validate SPEC...`"""
    from ..engine import shared_outputs
    from ..plan import build
    from ..records.state import default_state_dir
    from ..spec.resolve import load

    default = _default_resources(args.transformer)
    results = {}
    warnings: dict[str, list[dict[str, object]]] = {}
    rc = EXIT_OK
    for spec in args.specs:
        try:
            loaded = load(spec, default_resources=default, strict=args.strict, digests=False)
            build(loaded, submits_groups=False)  # what `run` refuses: inputs, shared outputs
            results[spec] = []
            # Another spec of the folder writing one of its files: `run` refuses that.
            shared = shared_outputs.problems(loaded, default_state_dir(loaded.path))
            warnings[spec] = [_problem_dict(p) for p in shared]
            shared_outputs.warn(shared)
            if not args.json:
                print(f"{spec}: ok")
        except SpecError as exc:
            rc = EXIT_USAGE
            exc = with_file_hints(exc)
            results[spec] = [_problem_dict(p) for p in exc.problems]
            if not args.json:
                print(exc, file=sys.stderr)
    if args.json:
        import json

        print(json.dumps({s: {"ok": not ps, "problems": ps,
                              **({"warnings": warnings[s]} if warnings.get(s) else {})}
                          for s, ps in results.items()}, indent=2, default=str))
    return rc


def _problem_dict(p: Problem) -> dict[str, object]:
    return {"file": p.file, "line": p.line, "column": p.column, "path": format_path(p.path),
            "message": p.message, "hint": p.hint}


def with_file_hints(exc: SpecError) -> SpecError:
    """``exc`` with a hint on each "file not found" naming a sibling file whose name is
    close (`hello.yml` when `hello.yaml` exists)."""
    problems = [_file_hint(p) for p in exc.problems]
    if problems == exc.problems:
        return exc
    return SpecError(problems)


def _file_hint(p: Problem) -> Problem:
    import dataclasses

    if p.message != "file not found" or p.hint or not p.file:
        return p
    folder, base = os.path.split(p.file)
    try:
        with os.scandir(folder or ".") as entries:
            siblings = [e.name for e in entries if e.name != base and e.is_file()]
    except OSError:
        return p
    specs = [n for n in siblings if n.endswith((".yaml", ".yml", ".json"))]
    near = suggest(base, specs) or suggest(base, siblings)
    # A shared suffix alone (`nope.yaml`, `hello.yaml`) is no likeness: the stems must be too.
    stem, near_stem = os.path.splitext(base)[0], os.path.splitext(near or "")[0]
    if near is None or (stem != near_stem and suggest(stem, [near_stem]) is None):
        return p
    return dataclasses.replace(p, hint=f"did you mean '{os.path.join(folder, near)}'?")


def _print_json_error(args: argparse.Namespace, exit_code: int, message: str,
                      problems: Sequence[Problem] = ()) -> None:
    """With `--json`, a failed command still gives scripts an object to parse on stdout
    (the human text goes to stderr as always)."""
    if not getattr(args, "json", False):
        return
    error = {"exit_code": exit_code, "message": message,
             "problems": [_problem_dict(p) for p in problems]}
    out: dict[str, object] = {"format": JSON_FORMAT, "ok": False}
    if getattr(args, "spec", None) is not None:  # named or found: which, as `status` says it
        out["spec"] = str(args.spec)
    import json

    print(json.dumps({**out, "error": error}, indent=2, default=str))


def cmd_graph(args: argparse.Namespace) -> int:
    """`jobspec-do graph SPEC`"""
    from ..plan import inferred_edges
    from ..spec.graph import render
    from ..spec.resolve import load

    spec = load(args.spec, default_resources=_default_resources(args.transformer))
    print(render(spec, args.format, inferred_edges(spec)))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """`jobspec-do schema`"""
    import json

    from ..spec.validate import load_schema

    print(json.dumps(load_schema(args.strict), indent=2))
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    """`jobspec-do plugins`"""
    from .. import plugins

    for group in plugins.GROUPS:
        print(f"{group.rsplit('.', 1)[1]}:")
        for item in plugins.info(group):
            state = f"ERROR: {item.error}" if item.error else "ok"
            print(f"  {item.name:<14} {item.origin:<9} {item.target}  [{state}]")
    return EXIT_OK


def _with_default_command(argv: list[str],
                          parser: Callable[[], argparse.ArgumentParser]) -> list[str]:
    """`jobspec-do [opts] [SPEC]` means `jobspec-do run [opts] [SPEC]` (plain `jobspec-do`
    too, as plain `make` does); a first word that is no file and is close to a command's name
    is a usage error naming the command."""
    if argv and argv[0] in ("-h", "--help", "--version"):
        return argv
    if not argv:
        return ["run"]
    first = argv[0]
    if first in COMMANDS:
        return argv
    if _COMMAND_LIKE.fullmatch(first) and not os.path.exists(first):
        near = suggest(first, COMMANDS)
        if near is not None:
            parser().error(f"unknown command '{first}'; did you mean '{near}'?")
    return ["run", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jobspec-do` console script."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the command got under way (parsing its arguments)
        print("jobspec-do: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    typed = list(sys.argv[1:] if argv is None else argv)
    words = _with_default_command(typed, build_parser)
    parser = build_parser(words[0] if words[0] in COMMANDS else "")
    args = parser.parse_args(words)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        choose(args, typed)
        return func(args)
    except SpecError as exc:
        exc = with_file_hints(exc)
        print(exc, file=sys.stderr)
        _print_json_error(args, EXIT_USAGE, str(exc), exc.problems)
        return EXIT_USAGE
    except JobspecError as exc:
        print(f"jobspec-do: error: {exc}", file=sys.stderr)
        _print_json_error(args, exc.exit_code, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print("jobspec-do: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_FAILED
    except OSError as exc:
        # What the commands do not turn into a clearer error themselves (the state folder's
        # are): still one line naming the file, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"jobspec-do: error: {exc.strerror or exc}{where}", file=sys.stderr)
        _print_json_error(args, EXIT_USAGE, f"{exc.strerror or exc}{where}")
        return EXIT_USAGE


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def console() -> NoReturn:
    """The `jobspec-do` console script: ``main()``, then exit without freeing the heap.

    Python's own exit frees every object one by one: 0.35 s of a 10,000-task run, and more
    than the rest of `plan` at 100,000. The kernel frees a process at once. What a normal
    exit would do that matters still happens first: atexit handlers, flushed streams. Only
    when no other thread is still running (the run stops its own): otherwise Python's exit,
    which waits for them."""
    # A SIGTERM before a run has set up its own handling (while the spec loads, say) is a
    # Ctrl-C too: exit 130 with a word, not killed with 143 (a run then turns it into the
    # same, and stops its tasks first).
    # SIGHUP (the terminal or the ssh session went away) likewise.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    code = main()
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    if others:
        raise SystemExit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):  # a closed pipe: nothing more to say to it
        code = code or EXIT_FAILED
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()
