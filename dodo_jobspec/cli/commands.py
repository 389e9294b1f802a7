"""Sub-commands that drive the engine: run, plan, status, logs, clean, cancel."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from .discover import add_spec_args


def _whole_number(least: int, meaning: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``least``; else a usage error (exit 2)."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"must be {meaning}, not {value!r}")
        return number
    return parse


_JOBS = _whole_number(1, "a positive number of parallel jobs")
_CHOICE = _whole_number(0, "0 or more (alternatives count from 0)")
_ATTEMPT = _whole_number(1, "1 or more (attempts count from 1)")


def add_engine_commands(sub: Any, transformer_arg: Callable[[argparse.ArgumentParser], None]
                        ) -> None:
    """Register the engine's sub-commands on the `jobspec-do` parser."""
    p = sub.add_parser(
        "run", help="run what is out of date (the default: `jobspec-do SPEC`)",
        description="Run every task of SPEC that is not up to date, in dependency order. A "
                    "task is up to date when it completed before, its definition is unchanged, "
                    "its inputs are unchanged, its outputs exist and nothing upstream re-ran.")
    add_spec_args(p, note_stderr=True)  # where its progress goes
    transformer_arg(p)
    p.add_argument("-j", "--jobs", type=_JOBS, metavar="N",
                   help="run at most N tasks at once (default: the number of cores locally, "
                        "64 jobs in flight on a scheduler)")
    p.add_argument("-k", "--keep-going", action="store_true",
                   help="after a failure, keep running what does not depend on it")
    p.add_argument("--resume", action="store_true",
                   help="after a failure or a kill: re-attach to jobs a killed run left queued "
                        "or running, re-run what failed, skip what is done")
    p.add_argument("--force", action="append", default=[], metavar="TASK",
                   help="run TASK (and so its dependents) even if up to date; repeatable")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="say what would run and why; run nothing")
    p.add_argument("--no-wait", action="store_true",
                   help="submit what can be submitted now (scheduler dependencies for the "
                        "rest), record job ids and return; the next call advances the spec. "
                        "Needs a scheduler: -t slurm or -t flux")
    p.add_argument("--cron", action="store_true",
                   help="for a crontab: silent unless something changed or failed, and a run "
                        "still holding the lock is a quiet success; on a scheduler it is "
                        "--no-wait, locally the spec runs through")
    p.add_argument("--wait-lock", action="store_true",
                   help="if another run holds the state directory, wait for it (default: "
                        "exit 75 at once)")
    p.add_argument("--resources-choice", type=_CHOICE, metavar="I",
                   help="for `a|b` resources, use alternative I (0-based) where it exists")
    p.add_argument("--allow-shared-outputs", action="store_true",
                   help="run even if another spec in this folder writes one of the files this "
                        "one writes (by default that is refused: each would overwrite the "
                        "other's file)")
    p.add_argument("--stager", help="how staged paths reach the nodes: shared (default), ssh, "
                                    "flux-archive, sbcast (inside the Slurm job)")
    p.add_argument("--nodes", help="comma-separated nodes for the ssh stager")
    _burst_arg(p)
    _state_args(p)
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only failures and a closing line (nothing when nothing ran)")
    p.add_argument("-v", "--verbose", action="store_true", help="also print up-to-date tasks")
    p.add_argument("--report", action="store_true",
                   help="when the run ends, write the HTML report to <state dir>/report.html")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="what would run, where and why; runs nothing")
    add_spec_args(p)
    transformer_arg(p)
    p.add_argument("--resources-choice", type=_CHOICE, metavar="I",
                   help="for `a|b` resources, use alternative I (0-based) where it exists")
    p.add_argument("--json", action="store_true", help="machine-readable plan")
    _burst_arg(p)
    _state_args(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("status", help="each task's state, attempts, exit code, logs")
    add_spec_args(p)
    p.add_argument("--json", action="store_true", help="stable JSON (see README)")
    _state_args(p)
    p.set_defaults(func=cmd_status)

    _add_report_command(sub)

    p = sub.add_parser("logs", help="print a task's stdout and stderr")
    add_spec_args(p, short=False)  # -f is --follow here, as in tail
    p.add_argument("task", metavar="TASK")
    p.add_argument("--attempt", type=_ATTEMPT, help="which attempt (default: the last)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing as it grows")
    _state_args(p)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("clean", help="forget all recorded state of SPEC")
    add_spec_args(p)
    _state_args(p)
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("cancel", help="cancel every queued or running job of SPEC",
                       description="Cancel every queued or running job of SPEC on its "
                       "scheduler. On the local default the jobs are processes of the run "
                       "itself: cancel stops that run as Ctrl-C would, and waits for it.")
    add_spec_args(p)
    transformer_arg(p)
    _state_args(p)
    p.set_defaults(func=cmd_cancel)


def _add_report_command(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="a self-contained HTML report: timeline, graph, every attempt",
        description="Write one HTML file (no network needed to open it) showing what the runs "
                    "of SPEC did: a summary, a timeline of every attempt, the dependency graph "
                    "and every task with its logs. It reads the records only, so it can be made "
                    "while a run is going.")
    add_spec_args(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="where to write it (default: <state dir>/report.html)")
    p.add_argument("--json", action="store_true",
                   help="print the report's data as JSON instead (\"format\": 1, like status)")
    p.add_argument("--graph", choices=("auto", "dot", "layered"), default="auto",
                   help="who draws the graph: Graphviz dot when installed (auto), or "
                        "jobspec-do's own layered layout")
    _state_args(p)
    p.set_defaults(func=cmd_report)


def _burst_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--burst", metavar="NAME[,NAME]",
                   help="burstable tasks may move to these bursters, tried in this order "
                        "(entries of the config's `burst:` list, or plugin names)")


def _state_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="where records live (default: .jobspec-do/<spec name>/ beside SPEC)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="configuration file (default: jobspec-do.yaml beside SPEC, else "
                        "~/.config/jobspec-do/config.yaml)")


def _request(args: argparse.Namespace) -> Any:
    """A RunRequest from the command line over the configuration file."""
    from .. import config
    from ..engine.run import RunRequest
    from ..tasks.steps import StageConfig

    cfg = config.load(args.spec, args.config)
    nodes = tuple(n for n in (getattr(args, "nodes", None) or "").split(",") if n)
    return RunRequest(
        config=args.config,
        spec=args.spec, transformer=config.transformer_name(getattr(args, "transformer", None),
                                                     cfg.transformer),
        jobs=getattr(args, "jobs", None) or cfg.jobs,
        keep_going=getattr(args, "keep_going", False),
        resume=getattr(args, "resume", False), force=tuple(getattr(args, "force", ())),
        dry_run=getattr(args, "dry_run", False), state_dir=args.state_dir or cfg.state_dir,
        quiet=getattr(args, "quiet", False) or getattr(args, "cron", False),
        verbose=getattr(args, "verbose", False),
        wait_lock=getattr(args, "wait_lock", False),
        no_wait=getattr(args, "no_wait", False) or getattr(args, "cron", False),
        cron=getattr(args, "cron", False), no_wait_asked=getattr(args, "no_wait", False),
        resources_choice=getattr(args, "resources_choice", None),
        command=_command_line(args) if args.func is cmd_run else "",
        burst=tuple(n.strip() for n in (getattr(args, "burst", None) or "").split(",")
                    if n.strip()),
        allow_shared_outputs=getattr(args, "allow_shared_outputs", False),
        stage=StageConfig(getattr(args, "stager", None) or cfg.stager or "shared",
                          nodes or cfg.nodes, dict(cfg.ssh)))


def cmd_run(args: argparse.Namespace) -> int:
    """`jobspec-do [run] SPEC`"""
    if args.no_wait:
        _check_no_wait(args)  # before the no-op answer: refused whether or not work is left
    if args.dry_run:
        return _dry_run(args)
    rc = _run(args)
    if args.report:  # a failed run's report is the one most wanted
        from ..records.report_html import write
        from ..records.status import open_state

        state = open_state(args.spec, _state_dir(args))
        write(state.spec, state.root, state.root / "report.html")
    return rc


def _run(args: argparse.Namespace) -> int:
    if not args.force:
        units = _noop(args)
        if units is not None:
            _deliver_outbox(args)  # a run that runs nothing still sends what is left
            return EXIT_OK
    from ..engine.run import run

    return run(_request(args))


# Run options as (attribute, flag): the command line a run records, as it was understood.
_FLAGS = (("transformer", "-t"), ("jobs", "-j"), ("resources_choice", "--resources-choice"),
          ("stager", "--stager"), ("nodes", "--nodes"), ("state_dir", "--state-dir"),
          ("config", "--config"))
_SWITCHES = (("keep_going", "-k"), ("resume", "--resume"), ("no_wait", "--no-wait"),
             ("cron", "--cron"), ("wait_lock", "--wait-lock"), ("quiet", "-q"),
             ("verbose", "-v"), ("report", "--report"),
             ("allow_shared_outputs", "--allow-shared-outputs"))


def _command_line(args: argparse.Namespace) -> str:
    """The `run` command line in its canonical spelling, for the runs log and the report."""
    import shlex

    words = ["jobspec-do"]
    words += [flag for name, flag in _SWITCHES if getattr(args, name, False)]
    for name, flag in _FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            words += [flag, str(value)]
    for task in getattr(args, "force", ()):
        words += ["--force", task]
    return shlex.join([*words, str(args.spec)])


def _check_no_wait(args: argparse.Namespace) -> None:
    """--no-wait needs a transformer that leaves work in a queue (PluginError otherwise)."""
    from .. import config, plugins
    from ..errors import PluginError

    cfg = config.load(args.spec, args.config)
    name = config.transformer_name(args.transformer, cfg.transformer)
    if not plugins.load(plugins.TRANSFORMERS, name).polled:
        raise PluginError(f"--no-wait needs a scheduler: the {name} transformer runs tasks "
                          "as children of jobspec-do (use -t slurm or -t flux)")


def _noop(args: argparse.Namespace) -> int | None:
    """The fast path: everything up to date, known from one stat per file (see noop.py)."""
    from .. import config, noop
    from ..records.folder import default_state_dir

    if not args.spec.is_file():
        return None
    cfg_file = config.find(args.spec, args.config)
    cfg = config.load(args.spec, args.config) if cfg_file else config.Config()
    root = args.state_dir or cfg.state_dir or default_state_dir(args.spec)
    name = config.transformer_name(args.transformer, cfg.transformer)
    units = noop.check(root, noop.key(args.spec, name, cfg_file))
    if units is not None:
        noop.report(units, args.quiet or args.cron)
    return units


def _dry_run(args: argparse.Namespace) -> int:
    """`run --dry-run`: what `run` does with it (engine/run.py), with the no-op key `run`
    would check, taken before the spec was loaded (not with --force, which `run` never
    answers from the manifest).

    `plan` and `--dry-run` build a large graph of objects that all live until they print:
    automatic garbage collections would walk it again and again for nothing."""
    from ..engine import shared_outputs
    from ..engine.run import prepare
    from ..engine.why import print_dry_run
    from ..spec.source import paused_gc

    with paused_gc():
        req = _request(args)
        prep = prepare(req)
        shared_outputs.warn(shared_outputs.problems(prep.spec, prep.state.root))
        return print_dry_run(prep, noop_key=None if req.force else prep.noop_key,
                             force=req.force)


def cmd_plan(args: argparse.Namespace) -> int:
    """`jobspec-do plan SPEC`"""
    from ..engine import shared_outputs
    from ..engine.run import prepare
    from ..engine.why import print_plan
    from ..spec.source import paused_gc

    with paused_gc():
        req = _request(args)
        prep = prepare(req)
        shared_outputs.warn(shared_outputs.problems(prep.spec, prep.state.root))
        if not args.json:
            return print_plan(prep, noop_key=prep.noop_key)
        import contextlib
        import io
        import json

        from .. import JSON_FORMAT

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = print_plan(prep, as_json=True, noop_key=prep.noop_key)
        # The same "format" key as `status --json` and the error object, first.
        print(json.dumps({"format": JSON_FORMAT, **json.loads(out.getvalue())}, indent=2))
        return rc


OUTBOX_BUDGET = 2.0  # seconds an invocation that runs nothing spends sending old events


def _deliver_outbox(args: argparse.Namespace) -> None:
    """Send the webhook events earlier invocations left undelivered (the README's promise:
    the next invocation of any kind sends them first), within a quiet cron tick's budget.
    One listing of the outbox when there is nothing to send; never an error."""
    from ..records.folder import default_state_dir

    root = _state_dir(args) or default_state_dir(args.spec)
    outbox = root / "outbox"
    try:
        if not any(n.endswith(".json") and not n.startswith(".") for n in os.listdir(outbox)):
            return
    except OSError:
        return
    try:
        from .. import config
        from ..records import callbacks
        from ..spec.resolve import load
        from ..transformers.local import LocalTransformer

        spec = load(args.spec, default_resources=LocalTransformer.default_resources)
        url = callbacks.callback_url(spec, config.load(args.spec, args.config).callback)
        if not url:
            return
        hook = callbacks.Webhook(url, callbacks.secret_from_env(), outbox)
        hook.flush(OUTBOX_BUDGET)
        hook.close(0.5)
    except Exception:  # a webhook never fails a command; the next invocation tries again
        return


def cmd_status(args: argparse.Namespace) -> int:
    """`jobspec-do status SPEC`"""
    from ..records.status import print_status

    _deliver_outbox(args)
    return print_status(args.spec, _state_dir(args), as_json=args.json, upstream=_upstream)


def _upstream(spec: Any) -> dict[str, list[str]]:
    """Each unit's dependencies as a run sees them (explicit and inferred), the plan's order."""
    from ..plan import build

    return {pu.node.key: [d.key for d in pu.deps] for pu in build(spec, False)}


def cmd_report(args: argparse.Namespace) -> int:
    """`jobspec-do report [SPEC]`"""
    from ..records.status import open_state

    state = open_state(args.spec, _state_dir(args))
    if args.json:
        import json

        from ..records.report import build

        print(json.dumps(build(state.spec, state.root).to_json(), indent=2))
        return EXIT_OK
    from ..records.report_html import write

    dest = args.output or state.root / "report.html"
    if args.output is None:
        state.root.mkdir(parents=True, exist_ok=True)
    print(f"report: {write(state.spec, state.root, dest, args.graph)}")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    """`jobspec-do logs SPEC TASK`"""
    from ..records.status import print_logs

    return print_logs(args.spec, _state_dir(args), args.task, args.attempt, args.follow)


def cmd_clean(args: argparse.Namespace) -> int:
    """`jobspec-do clean SPEC`"""
    from ..records.clean import forget
    from ..records.folder import default_state_dir

    root = _state_dir(args) or default_state_dir(args.spec)
    if not forget(root, args.spec):
        print(f"nothing to clean: {root} does not exist")
        return EXIT_OK
    print(f"forgot all state of {args.spec} ({root})")
    return EXIT_OK


def _state_dir(args: argparse.Namespace) -> Path | None:
    from .. import config

    return args.state_dir or config.load(args.spec, args.config).state_dir


def cmd_cancel(args: argparse.Namespace) -> int:
    """`jobspec-do cancel SPEC`"""
    from .cancel import cancel_all

    return cancel_all(_request(args))
