"""`jobspec-do watch DIR`: a watch-folder service that runs every JobSpec file put in DIR.

Each cycle (every ``--every``, or once with ``--once`` for cron):

1. Candidates are the ``*.yaml``, ``*.yml`` and ``*.json`` files directly in DIR, except dotfiles,
   editor and download temporaries (``~`` / ``#`` prefixes; ``~``, ``.tmp``, ``.part``, ``.swp``
   suffixes) and ``jobspec-do.yaml`` (the configuration file).
2. A file is picked up only once it has settled: its size and mtime did not change over a short
   check (``--settle``, 1 s), and it parses. A file that does not parse is left alone while it
   is young (its writer may not be done) and treated as invalid once its mtime is older than
   a minute. Writers that can, should write to a dotfile and rename it into DIR.
3. It is validated. An invalid spec is moved to ``DIR/invalid/`` with the error (file, line,
   path, hint) written next to it as ``<name>.error.txt``.
4. It is run in its own state directory, ``<state root>/<stem>/`` (default root
   ``DIR/.jobspec-do/``, which is also where a plain ``jobspec-do DIR/<name>`` keeps its state),
   in this process. Locally the run blocks until the spec is done; on a scheduler it is a
   ``--no-wait`` step: submit what is ready, record what finished, return.
5. One line per spec is printed: its name, the exit code and the outcome. A spec that finished
   (exit 0, every task completed) moves to ``DIR/done/``; one that failed (exit 1, nothing
   still queued or running) moves to ``DIR/failed/``; both with ``<name>.status.json``, the
   final `status --json` record, and ``<name>.report.html``, the `jobspec-do report` page.
   Anything else stays in DIR to be advanced by the next cycle.

Tasks run with DIR as their directory, as they would for ``jobspec-do DIR/<name>``: a task that
writes ``*.yaml``/``*.json`` files should write them into a sub-folder, not into DIR itself.
State is kept per file stem, the Make way: putting a spec with the name of a finished one in DIR
again runs only what changed (``jobspec-do clean`` it, or use a new name, to run it afresh).

SIGTERM stops the service cleanly, as a service manager expects: the spec in hand is finished
(and moved), then the service exits 0. A second SIGTERM, or Ctrl-C, interrupts that run the
engine's way (its jobs cancelled and recorded as interrupted): the spec stays in DIR, nothing
is half moved, the service exits 0, and the next start picks the spec up again. Cycles of two
watchers on one DIR never overlap: a cycle skips while another watcher holds
``<state root>/.watch.lock``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    JobspecError,
    LockedError,
    SpecError,
    UnsatisfiableError,
)
from ..records.state import atomic_write, state_folder_name
from .watch_args import SETTLE
from .watch_args import add_watch_command as add_watch_command  # its old home

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
TEMP_PREFIXES = (".", "~", "#")
TEMP_SUFFIXES = ("~", "#", ".tmp", ".temp", ".part", ".partial", ".swp", ".swx", ".crdownload")
CONFIG_NAME = "jobspec-do.yaml"
LIVE_STATES = ("submitting", "queued", "running", "attached")
GRACE = 60.0  # seconds an unparseable file may still be being written


@dataclass
class WatchOptions:
    """What `jobspec-do watch` was asked to do."""

    folder: Path
    every: float = 60.0
    once: bool = False
    transformer: str | None = None
    state_root: Path | None = None
    config: Path | None = None
    settle: float = SETTLE
    grace: float = GRACE


@dataclass
class Outcome:
    """What one cycle did with one spec file."""

    name: str
    rc: int
    what: str  # done, failed, invalid, in progress, interrupted, locked, error
    moved_to: Path | None = None
    detail: str = ""

    def line(self) -> str:
        """The report line: name, exit code, outcome."""
        text = f"{self.name}: exit {self.rc}, {self.what}"
        if self.moved_to is not None:
            text += f" -> {self.moved_to.parent.name}/{self.moved_to.name}"
        if self.detail:
            text += f" ({self.detail})"
        return text


class Watcher:
    """The watch-folder service: `cycle()` once, or `serve()` until stopped."""

    def __init__(self, opts: WatchOptions, out: TextIO | None = None) -> None:
        self.opts = opts
        self.folder = opts.folder.resolve()
        self.state_root = (opts.state_root or self.folder / ".jobspec-do").resolve()
        self.out = out
        self.stopping = threading.Event()
        self._in_run = False  # a signal then interrupts the run (the engine copes with that)
        self._seen: dict[Path, tuple[int, int, int]] = {}  # stat of settled files, last cycle
        self._said_locked = False

    # -- service -------------------------------------------------------------------------------
    def serve(self) -> int:
        """Run cycles until SIGTERM/SIGINT (or one with ``--once``); exit code 0 when stopped."""
        if not self.folder.is_dir():
            raise JobspecError(f"{self.opts.folder}: no such directory")
        self._settings()  # a bad configuration or transformer is an error at once, not per cycle
        previous = self._install_signals()
        try:
            while not self.stopping.is_set():
                self.cycle()
                if self.opts.once:
                    break
                self.stopping.wait(self.opts.every)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return EXIT_OK

    def request_stop(self) -> None:
        """Finish the spec in hand, then stop (what SIGTERM does, minus the interruption)."""
        self.stopping.set()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _finish_first(self) -> bool:
        """SIGTERM during a run (the engine asks): the first finishes the spec in hand, a
        second interrupts it."""
        if self.stopping.is_set():
            return False
        self.stopping.set()  # no printing here: a signal handler may land mid-print
        return True

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGINT and self._finish_first():
            return
        self.stopping.set()
        if self._in_run:
            # Inside run() but outside doit (loading, locking, summing up): interrupt it the
            # way Ctrl-C would; during doit the engine's own SIGTERM handler is in place.
            self._in_run = False
            raise KeyboardInterrupt

    # -- one cycle -----------------------------------------------------------------------------
    def cycle(self) -> list[Outcome]:
        """Look at DIR once: pick up settled files, validate, run or advance, report, move."""
        outcomes: list[Outcome] = []
        with self._cycle_lock() as mine:
            if not mine:
                if not self._said_locked:
                    self._say(f"another watcher is working on {self.folder}; skipping")
                    self._said_locked = True
                return outcomes
            self._said_locked = False
            candidates = self._candidates()
            if not candidates:
                return outcomes
            try:
                settings = self._settings()
            except JobspecError as exc:
                # A broken configuration is not the specs' fault: leave them all where they are.
                print(f"jobspec-do watch: error: {exc}", file=sys.stderr, flush=True)
                return outcomes
            for path in self._settled(candidates):
                if self.stopping.is_set():
                    break
                outcome = self._process(path, *settings)
                if outcome is not None:
                    outcomes.append(outcome)
                    self._say(outcome.line())
        return outcomes

    @contextmanager
    def _cycle_lock(self) -> Iterator[bool]:
        """flock on ``<state root>/.watch.lock``: overlapping watchers (cron) take turns."""
        self.state_root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_root / ".watch.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                     0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _settings(self) -> tuple[Any, str, type]:
        """(configuration, transformer name, transformer class) for specs in DIR."""
        from .. import config, plugins

        cfg = config.load(self.folder / "spec.yaml", self.opts.config)
        name = config.transformer_name(self.opts.transformer, cfg.transformer)
        return cfg, name, plugins.load(plugins.TRANSFORMERS, name)

    def _candidates(self) -> list[Path]:
        try:
            entries = sorted(self.folder.iterdir())
        except OSError as exc:
            print(f"jobspec-do watch: cannot list {self.folder}: {exc}", file=sys.stderr,
                  flush=True)
            return []
        return [p for p in entries if _is_candidate(p)]

    def _settled(self, paths: list[Path]) -> list[Path]:
        """The files whose size and mtime did not change over ``settle`` seconds.

        A file already seen with the same stat in the previous cycle has been still for a whole
        cycle, so a cycle with only known files (specs being advanced) does not wait.
        """
        first = {p: k for p in paths if (k := _stat_key(p)) is not None}
        if any(self._seen.get(p) != k for p, k in first.items()) \
                and self.stopping.wait(self.opts.settle):
            return []
        ready = []
        seen: dict[Path, tuple[int, int, int]] = {}
        for path, key in first.items():
            now = _stat_key(path)
            if now is None:
                continue
            seen[path] = now
            if now == key:
                ready.append(path)
        self._seen = seen
        return ready

    def _process(self, path: Path, cfg: Any, transformer: str, cls: type) -> Outcome | None:
        """Validate, run or advance one settled file, then move it if it is finished."""
        from ..spec.resolve import load
        from ..spec.source import parse_document

        try:
            before = _stat_key(path)  # the spec as it is run: if it changes, it runs again
            raw = path.read_bytes()
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None  # taken away meanwhile
        try:
            parse_document(raw, str(path))
        except SpecError as exc:
            if time.time() - mtime < self.opts.grace:
                return None  # perhaps still being written: look again next cycle
            return self._invalid(path, exc)
        try:
            spec = load(path, default_resources=getattr(cls, "default_resources", None))
        except SpecError as exc:
            return self._invalid(path, exc)
        polled = bool(getattr(cls, "polled", True))
        root = self.state_root / state_folder_name(path)  # `...yaml`: not `..`
        req = self._request(path, cfg, transformer, root, polled)
        self._in_run = True
        try:
            from ..engine.run import run

            rc = run(req)
        except KeyboardInterrupt:
            rc = EXIT_INTERRUPTED
        except (SpecError, UnsatisfiableError) as exc:
            return self._invalid(path, exc)
        except LockedError:
            return Outcome(path.name, LockedError.exit_code, "locked",
                           detail="another jobspec-do run holds its state; next cycle")
        except JobspecError as exc:
            return Outcome(path.name, exc.exit_code, "error", detail=f"{exc}; stays in DIR")
        except Exception as exc:  # a bug must not stop the service or lose the file
            traceback.print_exc(file=sys.stderr)
            return Outcome(path.name, EXIT_FAILED, "error", detail=f"{exc!r}; stays in DIR")
        finally:
            self._in_run = False
        if rc == EXIT_INTERRUPTED:
            self.stopping.set()  # the engine's SIGTERM handler took the signal meant for us
            return Outcome(path.name, rc, "interrupted", detail="stays in DIR; resumes on the "
                                                                "next start")
        return self._conclude(path, spec, root, rc, polled, before)

    def _request(self, path: Path, cfg: Any, transformer: str, root: Path, polled: bool
                 ) -> Any:
        from ..engine.run import RunRequest
        from ..tasks.steps import StageConfig

        known = {f.name for f in dataclasses.fields(RunRequest)}
        extra: dict[str, Any] = {}
        if "no_wait" in known:
            # A scheduler run returns at once and is advanced by later cycles; a local run has
            # no queue to leave its tasks in, so it blocks.
            extra["no_wait"] = polled
        if "callback" in known:
            extra["callback"] = cfg.callback
        if "command" in known:  # what the report shows as the run's command line
            extra["command"] = f"jobspec-do watch {shlex.quote(str(self.folder))}"
        if "on_stop" in known:
            extra["on_stop"] = self._finish_first
        return RunRequest(spec=path, transformer=transformer, jobs=cfg.jobs, state_dir=root,
                          quiet=True, resume=True,
                          stage=StageConfig(cfg.stager or "shared", cfg.nodes, dict(cfg.ssh)),
                          **extra)

    def _conclude(self, path: Path, spec: Any, root: Path, rc: int, polled: bool,
                  before: tuple[int, int, int] | None = None) -> Outcome:
        # What users do to the folder meanwhile is theirs to do: a spec renamed or removed
        # while it ran is reported, and one rewritten while it ran (a writer that paused
        # longer than --settle) is run again next cycle, not filed with half its tasks.
        now = _stat_key(path)
        if now is None:
            return Outcome(path.name, rc, "gone", detail="renamed or removed while it ran; "
                           f"its state stays in {root}")
        if before is not None and now != before:
            return Outcome(path.name, rc, "in progress",
                           detail="changed while it ran: runs again next cycle")
        rows = _status_rows(spec, root)
        complete = bool(rows) and all(r["state"] == "completed" for r in rows)
        live = polled and any(r["state"] in LIVE_STATES for r in rows)
        if rc == EXIT_OK and complete:
            dest = self._move(path, "done", ".status.json", _status_json(path, root, rc, rows))
            self._report(spec, root, dest)
            return Outcome(path.name, rc, "done", dest)
        if rc == EXIT_FAILED and not live:
            dest = self._move(path, "failed", ".status.json", _status_json(path, root, rc, rows))
            self._report(spec, root, dest)
            failed = [r["name"] for r in rows if r["state"] not in ("completed", "never run")]
            return Outcome(path.name, rc, "failed", dest, ", ".join(failed[:5]))
        done = sum(r["state"] == "completed" for r in rows)
        return Outcome(path.name, rc, "in progress", detail=f"{done}/{len(rows)} done")

    def _report(self, spec: Any, root: Path, dest: Path) -> None:
        """The HTML report beside a finished spec, as ``<name>.report.html``. A report that
        cannot be written is said, and stops nothing: the spec's records stay in its state."""
        from ..records.report_html import write

        try:
            write(spec, root, dest.with_name(dest.name + ".report.html"))
        except (JobspecError, OSError) as exc:
            self._say(f"{dest.name}: no report: {exc}")

    def _invalid(self, path: Path, exc: Exception) -> Outcome:
        text = f"{exc}\n"
        dest = self._move(path, "invalid", ".error.txt", text)
        first = text.splitlines()[0] if text.strip() else type(exc).__name__
        return Outcome(path.name, EXIT_USAGE, "invalid", dest, first)

    def _move(self, path: Path, sub: str, suffix: str, note: str) -> Path | None:
        """Move ``path`` to ``DIR/<sub>/`` with ``note`` beside it as ``<name><suffix>``.

        The note is written first: a kill between the two steps leaves the spec in DIR (it is
        processed again and the note rewritten), never a moved spec without its note.
        """
        dest_dir = self.folder / sub
        dest_dir.mkdir(exist_ok=True)
        dest = _free_name(dest_dir, path.name)
        atomic_write(dest_dir / f"{dest.name}{suffix}", note)
        try:
            os.replace(path, dest)
        except FileNotFoundError:  # taken away this very moment: its note goes too
            with contextlib.suppress(OSError):
                os.unlink(dest_dir / f"{dest.name}{suffix}")
            self._seen.pop(path, None)
            return None
        self._seen.pop(path, None)
        return dest

    def _say(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(f"{stamp} {text}", file=self.out or sys.stdout, flush=True)


def _is_candidate(path: Path) -> bool:
    name = path.name
    if name.startswith(TEMP_PREFIXES) or name.endswith(TEMP_SUFFIXES) or name == CONFIG_NAME:
        return False
    if path.suffix.lower() not in SPEC_SUFFIXES:
        return False
    try:
        return path.is_file()
    except OSError:
        return False


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or a dated variant if a spec of that name was moved there before."""
    dest = folder / name
    if not dest.exists():
        return dest
    stem, suffix = os.path.splitext(name)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(1, 10000):
        dest = folder / f"{stem}.{stamp}{'' if n == 1 else f'-{n}'}{suffix}"
        if not dest.exists():
            return dest
    raise JobspecError(f"no free name for {name} in {folder}")  # pragma: no cover


def _status_rows(spec: Any, root: Path) -> list[dict[str, Any]]:
    from ..records.state import StateDir
    from ..records.status import unit_status

    state = StateDir(root, spec)
    return [unit_status(state.unit(n)) for n in spec.nodes.values()]


def _status_json(path: Path, root: Path, rc: int, rows: list[dict[str, Any]]) -> str:
    from ..records.status import STATUS_FORMAT

    return json.dumps({"format": STATUS_FORMAT, "spec": path.name, "state_dir": str(root),
                       "exit_code": rc,
                       "complete": bool(rows) and all(r["state"] == "completed" for r in rows),
                       "units": rows}, indent=2) + "\n"


# -- command line ------------------------------------------------------------------------------
def cmd_watch(args: argparse.Namespace) -> int:
    """`jobspec-do watch DIR`"""
    opts = WatchOptions(folder=args.folder, every=args.every, once=args.once,
                        transformer=args.transformer, state_root=args.state_root,
                        config=args.config, settle=args.settle)
    return Watcher(opts).serve()

