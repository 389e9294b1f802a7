"""Run a spec: load, check, plan, lock, hand the task dicts to doit, map the outcome.

Everything a user can get wrong is checked before doit starts (the spec, the transformer's
ability to satisfy every request, inputs that can never exist), so doit's own error path is
never what a user sees. SIGTERM is turned into KeyboardInterrupt so that doit saves its
database and running jobs are cancelled and recorded as interrupted.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config, noop, plugins
from ..errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    LockedError,
    PluginError,
    SpecError,
    UnsatisfiableError,
)
from ..plan import PlannedUnit, build, with_lines
from ..records.state import StateDir, default_state_dir, locked, record_run
from ..spec.model import Spec
from ..spec.resolve import load
from ..tasks.steps import StageConfig, burst_refusal, prologue_problems
from ..transformers.base import Transformer, TransformerOptions
from . import shared_outputs

if TYPE_CHECKING:
    from ..bursters.policy import BurstPolicy
    from ..tasks.unit import Inflight
    from .console import Console, Entry
    from .poller import Poller

BACKEND = "sqlite-inc"


@dataclass
class RunRequest:
    """Everything `jobspec-do run` was asked to do."""

    spec: Path
    transformer: str = "local"
    jobs: int | None = None
    keep_going: bool = False
    resume: bool = False
    force: tuple[str, ...] = ()
    dry_run: bool = False
    state_dir: Path | None = None
    quiet: bool = False
    verbose: bool = False
    wait_lock: bool = False
    no_wait: bool = False
    cron: bool = False  # --no-wait with cron manners: quiet, a held lock is a quiet success
    no_wait_asked: bool = False  # --no-wait itself was given (not only implied by --cron)
    resources_choice: int | None = None
    stage: StageConfig = field(default_factory=StageConfig)
    live: bool | None = None  # None: a live display when stderr is a terminal
    config: Path | None = None  # --config
    command: str = ""  # the command line, for the runs log that `report` shows
    # Called on SIGTERM/SIGHUP: True if the caller takes it as "finish, then stop" (a service
    # such as `watch`), so the run goes on; otherwise the run is interrupted.
    on_stop: Callable[[], bool] | None = None
    burst: tuple[str, ...] = ()  # --burst NAME[,NAME]: only these bursters, in this order
    # --allow-shared-outputs: run even when another spec of the folder writes one of its files
    allow_shared_outputs: bool = False


@dataclass
class Prepared:
    """A spec made ready to run: what `run`, `plan` and `status` all start from."""

    spec: Spec
    transformer: Transformer
    plan: list[PlannedUnit]
    state: StateDir
    # The no-op key of the spec and config files as they were loaded: a run records its
    # manifest under this, so an edit made while it runs is never taken as up to date.
    noop_key: tuple[object, ...] | None = None
    burst: BurstPolicy | None = None  # where selected tasks may go when the primary is full


def prepare(req: RunRequest) -> Prepared:
    """Load, check and plan ``req.spec``; raise before anything runs if it cannot."""
    cls = plugins.load(plugins.TRANSFORMERS, req.transformer)
    root = req.state_dir or default_state_dir(req.spec)
    transformer: Transformer = cls(TransformerOptions(
        jobs=req.jobs, no_wait=req.no_wait, resources_choice=req.resources_choice,
        state_dir=root))
    try:
        noop_key: tuple[object, ...] | None = noop.key(
            req.spec, transformer.name, config.find(req.spec, req.config))
    except OSError:
        noop_key = None  # a missing spec: load says so, with the file name
    spec = load(req.spec, default_resources=cls.default_resources)
    burst = burst_policy(req, transformer, root)
    if burst is not None:  # a burst whose stage steps cannot follow it is refused
        burst.staging = burst_refusal(req.stage)
    problems = transformer.check(spec)
    if problems and burst is not None:  # what a burster can take goes there instead
        problems = burst.takes_over(problems, spec, transformer)
    if problems:
        problems = with_lines(problems, spec)
        raise UnsatisfiableError("\n".join(p.render() for p in problems)
                                 + f"\nnothing was submitted ({req.transformer} transformer)")
    for name in req.force:
        if not spec.find(name):
            raise SpecError([spec_problem(spec, f"--force {name}: no such task or group")])
    planned = build(spec, transformer.submits_groups)
    problems = prologue_problems(planned, req.stage, transformer, spec)
    if problems:
        raise UnsatisfiableError("\n".join(p.render() for p in with_lines(problems, spec))
                                 + f"\nnothing was submitted ({req.transformer} transformer)")
    state = StateDir(root, spec)
    state.check_owner()
    return Prepared(spec, transformer, planned, state, noop_key, burst)


def burst_policy(req: RunRequest, transformer: Transformer, root: Path) -> BurstPolicy | None:
    """The run's bursters (config `burst:` and --burst), or None when it has none. Only a
    scheduler's queued jobs can be moved: on the local transformer there is no queue."""
    cfg = config.load(req.spec, req.config)
    if not (cfg.burst or req.burst):
        return None
    if not transformer.polled:
        if not req.burst:  # a config shared with local runs: bursting is for schedulers
            return None
        raise PluginError(f"bursting moves jobs out of a scheduler's queue; the "
                         f"{transformer.name} transformer has none (use -t flux or -t slurm)")
    from ..bursters.policy import build as build_policy

    return build_policy(cfg.burst, config_path=cfg.path, names=req.burst,
                        selector=cfg.burst_selector, order=cfg.burst_order, state_dir=root)


def spec_problem(spec: Spec, message: str) -> Any:
    from ..errors import Problem

    return Problem(message, (), "see `jobspec-do graph SPEC` for the names", str(spec.path))


def doit_config(state: StateDir, reporter: Any) -> dict[str, Any]:
    from .checker import MD5Checker  # imports doit: `plan` on a clean folder needs none of it

    return {"dep_file": str(state.db), "backend": BACKEND, "reporter": reporter,
            "verbosity": 2, "check_file_uptodate": MD5Checker}


def extra_config(state: StateDir, reporter: Any) -> dict[str, Any]:
    """doit configuration. GLOBAL (not load_doit_config) because doit treats the loader's
    values as defaults that its own option defaults already shadow."""
    return {"BACKEND": {BACKEND: "dodo_jobspec.engine.backend:IncrementalSqliteDB"},
            "GLOBAL": doit_config(state, reporter)}


def run(req: RunRequest) -> int:
    """Run the spec; the exit code follows the README's table."""
    prep = prepare(req)
    if req.cron and not prep.transformer.polled and not req.no_wait_asked:
        # No queue to leave the work in: the spec runs through, with cron manners (quiet; the
        # lock keeps a slow run and the next tick apart).
        req = replace(req, no_wait=False)
    shared = shared_outputs.problems(prep.spec, prep.state.root,
                                     run=not req.dry_run and not req.allow_shared_outputs)
    if req.dry_run:
        from .why import print_dry_run

        shared_outputs.warn(shared)
        return print_dry_run(prep)
    if shared and not req.allow_shared_outputs:
        raise shared_outputs.refuse(shared)
    if not req.quiet:
        shared_outputs.warn(shared)
    why = prep.transformer.unavailable()
    if why is not None:  # before the lock and any record: no failed attempt to show for it
        raise PluginError(f"cannot run on {prep.transformer.name}: {why}; nothing was "
                          "submitted")
    from ..records import callbacks
    from .console import Console

    try:
        lock = locked(prep.state.root, wait=req.wait_lock)
        lock_fd = lock.__enter__()
    except LockedError:
        if req.cron:
            return EXIT_OK  # the previous cron invocation is still at work: that is fine
        raise
    hook = None
    try:
        prep.transformer.hold_lock(lock_fd)
        prep.state.ensure()
        prep.state.maintain()
        prep.state.claim()
        shared_outputs.record(prep.spec, prep.state.root)
        record_run(prep.state.root, req.command, req.transformer)
        configured = config.load(req.spec, req.config).callback
        url = callbacks.callback_url(prep.spec, configured)
        hook = callbacks.attach(prep.state, url, callbacks.signing_secret(
            url, configured, callbacks.secret_from_env()))
        if req.no_wait:
            from .advance import advance

            console = Console(prep.state, len(prep.plan), quiet=req.quiet, verbose=req.verbose,
                              live=False)
            return advance(prep, req, console)
        return _run_locked(req, prep)
    finally:
        if hook is not None:
            # Bounded: undelivered events stay in the outbox for the next invocation.
            hook.flush(2)
            hook.close()
        prep.transformer.close()
        prep.state.journal.close()  # the watch service runs spec after spec in one process
        lock.__exit__(None, None, None)


def _run_locked(req: RunRequest, prep: Prepared) -> int:
    # Imported here: `plan` and `--dry-run` load this module too, and need none of these.
    from doit.doit_cmd import DoitMain

    from ..bursters import policy as bursting
    from ..bursters.move import BurstDriver
    from ..tasks.gate import SlotGate
    from ..tasks.steps import StepRunner
    from ..tasks.unit import STATE_FULL, Inflight, RunOptions, UnitRunner
    from .backend import IncrementalSqliteDB
    from .console import Console, DoitReporter
    from .loader import Loader, slim_dispatch, task_dicts
    from .poller import Poller

    state, transformer = prep.state, prep.transformer
    state.ensure()
    state.reserve()  # before anything runs: a folder full already is refused (exit 2)
    attempts_before = noop.saved_attempts(state.root)
    noop.forget(state.root)  # before anything runs: a killed run leaves no stale claim
    console = Console(state, len(prep.plan), quiet=req.quiet, verbose=req.verbose,
                      live=req.live)
    inflight = Inflight()
    poller = Poller(transformer, transformer.options.poll_interval)
    jobs = req.jobs or (os.cpu_count() or 1 if not transformer.submits_groups else 64)
    gate = None if transformer.polled else SlotGate(jobs)
    inflight.gate = gate
    steps = StepRunner(state, req.stage, console.emit)
    runner = UnitRunner(prep.spec, state, transformer,
                        RunOptions(req.resume, frozenset(req.force), req.no_wait,
                                   retry_failed=req.resume or not req.cron),
                        console.emit, inflight, poller.wait, gate, os.cpu_count() or 1,
                        steps.files)
    if transformer.polled:  # --- burst hook (bursters/move.py)
        # Even with no bursters configured now: a job an earlier run moved is followed.
        runner.burst = BurstDriver(prep.burst or bursting.BurstPolicy([]), transformer,
                                   console.emit, state.root, inflight.interrupted)
    dicts = task_dicts(prep.plan, runner, steps, state,
                       local_replicas=not transformer.submits_groups)
    unit_state = {pu.key: state.unit(pu.node) for pu in prep.plan}
    names = {d["name"]: _shown(d["meta"], unit_state[d["name"].split(":", 1)[0]])
             for d in dicts}
    del unit_state
    _warn_oversized(prep, console)
    if req.force:
        _forget(state, prep, dicts, req.force)
    reporter = DoitReporter(console, names)
    # With the slot gate, a slot is held only while a process runs; doit's extra threads write
    # one task's records while the slots run the next tasks' processes.
    jobs = max(1, jobs)
    threads = jobs if gate is None else jobs + max(1, jobs // 2)  # more: GIL contention
    if jobs == 1 or one_at_a_time(dicts):
        threads = 0  # doit's sequential runner: no thread handoff per task (-14% on a chain)
    transformer.one_thread(threads == 0)
    argv = ["run", "-n", str(threads), "-P", "thread"]
    if req.keep_going:
        argv.append("--continue")
    files = [f for d in dicts for f in (*d.get("file_dep", ()), *d.get("targets", ()))]
    main = DoitMain(Loader(dicts, {}), config_filenames=(),
                    extra_config=extra_config(state, reporter))
    del dicts  # the Loader lets go of them once doit has its tasks: memory at 100k tasks
    DoitMain.BIN_NAME = "jobspec-do"
    interrupted = False
    previous = _sigterm_as_interrupt(req.on_stop)
    IncrementalSqliteDB.on_full = partial(_state_full, inflight, state)
    try:
        with slim_dispatch():  # memory: doit's per-task nodes (engine/loader.py)
            rc = main.run(argv)
    except KeyboardInterrupt:
        interrupted = True
        rc = EXIT_INTERRUPTED
        _interrupt(transformer, inflight, poller)
    finally:
        IncrementalSqliteDB.on_full = None
        _restore(previous)
        poller.stop()
        if runner.burst is not None:
            runner.burst.close(lambda where: _live_on(prep, where))
        gc.unfreeze()  # the loader froze this run's objects; `watch` runs again in-process
    ok = rc == 0 and not console.failures
    if ok and not interrupted and prep.noop_key is not None:
        noop.record(state.root, prep.noop_key, len(prep.plan), [str(f) for f in files],
                    last_attempts(prep, attempts_before),
                    scanned=[str(d) for pu in prep.plan for d in pu.scanned])
    console.summary(ok, interrupted)
    if interrupted:
        return EXIT_INTERRUPTED
    if inflight.reason.startswith(STATE_FULL):
        console.final(f"{inflight.reason}: no space left for its records; nothing more was "
                      "started. Free some space there (or pass --state-dir), then `jobspec-do "
                      "--resume SPEC`: what completed does not run again", force=True)
        return EXIT_FAILED
    return EXIT_OK if ok else EXIT_FAILED


def _state_full(inflight: Inflight, state: StateDir) -> None:
    """doit's database found the disk full: stop as the unit runner does (see _writing)."""
    from ..tasks.unit import STATE_FULL

    inflight.halt(f"{STATE_FULL}: {state.root}")
    state.release_reserve()


def one_at_a_time(dicts: list[dict[str, Any]]) -> bool:
    """True if no two of these doit tasks (in dependency order) can ever run at once: each
    one depends directly on the one before it, so the order is total (a pipeline)."""
    for before, after in itertools.pairwise(dicts):
        made = set(before.get("targets", ()))
        if not any(dep in made for dep in after.get("file_dep", ())):
            return False
    return True


def last_attempts(prep: Prepared, previous: dict[str, int] | None) -> dict[str, int]:
    """Each unit's last attempt after a run that left everything done (for the manifest).

    Known without reading: what this run wrote (attempts only grow; a replicated task's
    replicas count their own, so it is read), and what the previous manifest said for units
    this run did not touch. The history is read only for the rest."""
    out = {}
    for pu in prep.plan:
        node, st = pu.node, prep.state.unit(pu.node)
        if previous is not None and node.key in previous:
            out[node.key] = max(previous[node.key], st.written)
        elif st.written and getattr(node, "replicas", 1) == 1:
            out[node.key] = st.written
        else:
            out[node.key] = st.last_attempt()
    return out


# SIGTERM (a service manager, `jobspec-do cancel`) and SIGHUP (the terminal or ssh session
# went away) stop a run the way Ctrl-C does: running tasks stopped and recorded, a summary.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _sigterm_as_interrupt(on_stop: Callable[[], bool] | None = None) -> dict[int, Any]:
    def handler(signum: int, frame: Any) -> None:
        if on_stop is not None and on_stop():
            return
        raise KeyboardInterrupt
    if threading.current_thread() is threading.main_thread():
        return {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    return {}


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _interrupt(transformer: Transformer, inflight: Inflight, poller: Poller) -> None:
    """Ctrl-C: start nothing more, cancel what this run started, and wait until its threads
    have recorded it as interrupted."""
    inflight.interrupted.set()
    inflight.halt("interrupted")  # a task waiting for a slot gives up instead of taking one
    jobs = list(inflight.snapshot()) + transformer.running()
    if jobs:
        transformer.cancel(jobs)
    poller.stop()
    # Bounded: cancel() has stopped the jobs; what is left is their threads writing records.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (inflight.active or transformer.running()):
        time.sleep(0.01)


def _live_on(prep: Prepared, transformer: str) -> bool:
    """Whether a task's record says its job is still queued or running on ``transformer``."""
    for pu in prep.plan:
        record = prep.state.unit(pu.node).read_job()
        if record.transformer == transformer and record.state in ("submitting", "queued",
                                                                  "running"):
            return True
    return False


def _forget(state: StateDir, prep: Prepared, dicts: list[dict[str, Any]],
            force: tuple[str, ...]) -> None:
    """--force NAME: drop doit's record of those units so they run again."""
    from .backend import IncrementalSqliteDB

    keys = {n.key for name in force for n in prep.spec.find(name)}
    db = IncrementalSqliteDB(str(state.db), _codec())
    for d in dicts:
        base = d["name"].split(":", 1)[0]
        if base in keys:
            db.remove(d["name"])
    db.dump()


def _shown(meta: dict[str, Any], st: Any) -> Entry:
    """How the console names a doit task, and whether it counts as a unit in the summary:
    a replica is ``name[r]`` and, like a step, is part of its unit, not one of its own."""
    from ..tasks.steps import step_label
    from .console import Entry

    replica = meta.get("replica")
    if replica is not None:
        return Entry(f"{meta['unit']}[{replica}]", st, False, replica)
    if "kind" in meta:
        return Entry(step_label(meta["unit"], meta["kind"], meta["path"]), st, False, None)
    return Entry(f"group/{meta['unit']}" if "group" in meta else meta["unit"], st, True, None)


def _codec() -> Any:
    from doit.dependency import JSONCodec

    return JSONCodec()


def _warn_oversized(prep: Prepared, console: Console) -> None:
    if prep.transformer.submits_groups:
        return
    cores = os.cpu_count() or 1
    for pu in prep.plan:
        req, _ = prep.transformer.choose(pu.node)
        if req is not None and req.counts.cores > cores and not pu.node.is_group:
            console.emit("warning", pu.node.name, f"asks for {req.counts.cores} cores; this "
                         f"machine has {cores}: it runs alone")
