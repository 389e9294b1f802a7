"""What a run tells the person (or cron job) watching it.

On a terminal: a live status line (done / running / failed / waiting, elapsed) with events
scrolling above it. Not on a terminal: plain one-line events with timestamps. With -q: only
failures and the closing summary. Every failure names the task, its exit code, the last lines
of its stderr and the log path. doit's reporter callbacks arrive here through DoitReporter.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, NamedTuple, TextIO

from ..records.state import StateDir
from ..tasks.unit import NOT_STARTED, STILL_FAILING, STILL_RUNNING

TAIL_LINES = 8


class Console:
    """Thread-safe event sink and progress display."""

    def __init__(self, state: StateDir, total: int, *, quiet: bool = False,
                 verbose: bool = False, stream: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.state = state
        self.total = total
        self.quiet = quiet
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.done = self.failed = self.running = self.skipped = self.blocked = 0
        self.left_running = 0  # jobs of a killed run, still in the scheduler (see STILL_RUNNING)
        self.failures: list[str] = []
        self._line_shown = False
        self._started: dict[str, float] = {}  # unit name -> when its process started
        self._ended: set[str] = set()  # said "finished" (process ended), not yet reported
        self._took: dict[str, float] = {}  # unit name -> seconds its process ran
        # Units found completed in their records (doit had not recorded it): nothing ran, so
        # the summary counts them as up to date.
        self._adopted: set[str] = set()
        self.known = 0  # failures found still failing, not run again (see STILL_FAILING)

    # -- events ---------------------------------------------------------------------------
    def emit(self, event: str, name: str, detail: str = "") -> None:
        """One event about one unit (called from worker threads)."""
        with self.lock:
            if event == "adopted":
                self._adopted.add(name)
            if event == "start":
                self.running += 1
                self._started[name] = time.monotonic()
            elif event == "finished":
                # Its process ended (said by the unit runner before it lets go of its slot):
                # a success is printed now, so that it comes before the start of the task
                # that takes the slot; a failure, with its stderr, when doit reports it.
                self.running = max(0, self.running - 1)
                self._ended.add(name)
                started = self._started.pop(name, None)
                if started is not None:
                    self._took[name] = time.monotonic() - started
                if detail:
                    self._redraw()
                    return
                event, detail = "done", (f"in {self._took[name]:.1f}s" if name in self._took
                                         else "")
            elif event in ("done", "failed"):
                if name in self._ended:  # said when its process ended
                    self._ended.discard(name)
                    self._took.pop(name, None)
                    if event == "done":
                        self._redraw()
                        return
                else:
                    self.running = max(0, self.running - 1)
            quiet_ok = event in ("failed", "error", "warning")
            if self.quiet and not quiet_ok:
                self._redraw()
                return
            if event in ("step",) and not self.verbose:
                self._redraw()
                return
            self._print(f"{event:<9} {name}" + (f": {detail}" if detail else ""))

    def success(self, name: str, seconds: float | None, counted: bool = True) -> None:
        """A unit is done; ``seconds`` since doit started it, unless the unit said when its
        process started (a task may wait for a slot before that). A replica or a step is
        not ``counted``: the summary counts units."""
        with self.lock:
            if name in self._adopted:
                self._adopted.discard(name)
                self.skipped += counted
                return
            self.done += counted
            started = self._started.pop(name, None)
            if started is not None:
                seconds = time.monotonic() - started
            self._took.pop(name, None)
        self.emit("done", name, f"in {seconds:.1f}s" if seconds is not None else "")

    def uptodate(self, name: str, counted: bool = True) -> None:
        with self.lock:
            self.skipped += counted
            if self.verbose and not self.quiet:
                self._print(f"{'uptodate':<9} {name}")
            else:
                self._redraw()

    def block(self, name: str, counted: bool = True) -> None:
        """A unit that cannot run because one it depends on failed (-k goes on without it)."""
        with self.lock:
            self.blocked += counted
        self.emit("blocked", name, "a task it depends on failed")

    def failure(self, node_name: str, message: str, unit_state: Any | None,
                replica: int | None = None) -> None:
        """Report a failed unit (or one ``replica`` of it) with the tail of its stderr and
        where its logs are."""
        if message.startswith(NOT_STARTED[:12]):
            return  # the run stopped before it started (a full state folder): "not run"
        if message.startswith(STILL_RUNNING):
            # Not a failure: the job runs on in the scheduler, waiting for --resume.
            with self.lock:
                self.left_running += 1
            self.emit("running", node_name, message[len(STILL_RUNNING) + 2:])
            return
        known = message.startswith(STILL_FAILING)
        with self.lock:
            self.failed += 1
            self.failures.append(node_name)
            self.known += known
        if known and self.quiet:
            # Reported when it failed; a cron tick that only finds it still failed is quiet
            # (-q): the exit code says so, and cron mails only what is printed.
            return
        lines = [message]
        if unit_state is not None:
            if replica is None:
                attempt = unit_state.last_attempt()
            else:  # replicas count their own attempts
                attempt = unit_state.read_job(replica).attempt
            err = unit_state.stderr(attempt, replica) if attempt else None
            if err is not None and err.exists():
                tail = err.read_text(errors="replace").splitlines()[-TAIL_LINES:]
                lines += ["  | " + t for t in tail]
                lines.append(f"  log: {err} (and {unit_state.stdout(attempt, replica).name})")
        self.emit("failed", node_name, "\n".join(lines))

    def summary(self, rc_ok: bool, interrupted: bool = False) -> None:
        took = time.monotonic() - self.started
        if interrupted:
            head = "interrupted"
        elif rc_ok:
            head = "ok"
        elif not self.failed and self.left_running:
            head = "not done"
        else:
            head = "FAILED"
        text = f"{head}: {self.done} ran, {self.skipped} up to date, {self.failed} failed"
        if self.left_running:
            text += f", {self.left_running} still running from an earlier run"
        if self.blocked:  # -k: doit reported them, each waiting on a failure
            text += f", {self.blocked} blocked"
        unreached = (self.total - self.done - self.skipped - self.failed - self.blocked
                     - self.left_running)
        if (not rc_ok or interrupted) and unreached > 0:
            # A failure without -k, or an interrupt, stops the run: these were never looked at.
            text += f", {unreached} not run"
        text += f" in {took:.1f}s"
        if self.failures:
            text += " (failed: " + ", ".join(self.failures[:10]) + ")"
        if self.left_running:
            text += "; `--resume` re-attaches to what still runs"
        with self.lock:
            news = not rc_ok and (self.failed > self.known or self.left_running)
            if self.quiet and not self.done and not interrupted and not news:
                self._clear()
                return  # cron-friendly: nothing to say when nothing happened
            self._print(text, final=True)

    def final(self, text: str, force: bool = False) -> None:
        """A closing line: always, or with -q only when ``force`` (something changed)."""
        if self.quiet and not force:
            return
        with self.lock:
            self._print(text, final=True)

    # -- drawing ----------------------------------------------------------------------------
    def _print(self, text: str, final: bool = False) -> None:
        try:
            self._clear()
            stamp = time.strftime("%H:%M:%S ") if not self.live else ""
            self.stream.write(stamp + text + "\n")
            if not final:
                self._redraw()
            self.stream.flush()
        except OSError:
            # A terminal that hung up (EIO) or a closed pipe: the records still say it all,
            # and the run must go on to write them.
            pass

    def _clear(self) -> None:
        if self.live and self._line_shown:
            self.stream.write("\r\x1b[K")
            self._line_shown = False

    def _redraw(self) -> None:
        if not self.live:
            return
        waiting = max(0, self.total - self.done - self.failed - self.skipped - self.running
                      - self.blocked)
        took = time.monotonic() - self.started
        self.stream.write(f"\r\x1b[K[{self.done + self.skipped}/{self.total}] done {self.done}"
                          f"  running {self.running}  failed {self.failed}  waiting {waiting}"
                          f"  up-to-date {self.skipped}  {took:.0f}s")
        self.stream.flush()
        self._line_shown = True


class Entry(NamedTuple):
    """What the console says of one doit task: its name, its unit's state folder, whether
    it counts as a unit in the summary, and the replica it runs (None: not a replica)."""

    name: str
    state: Any
    counted: bool
    replica: int | None


class DoitReporter:
    """doit's reporter interface, forwarded to the Console."""

    desc = "jobspec-do progress"

    def __init__(self, console: Console, names: dict[str, tuple[str, Any]]) -> None:
        self.console = console
        self.names = names  # doit task name -> Entry
        self.t0: dict[str, float] = {}

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        pass

    def get_status(self, task: Any) -> None:
        pass

    def execute_task(self, task: Any) -> None:
        self.t0[task.name] = time.monotonic()

    def add_success(self, task: Any) -> None:
        # Each task is reported once: its entries go (memory at 100,000 tasks).
        start = self.t0.pop(task.name, None)
        entry = self.names.pop(task.name, None)
        if entry is not None:
            self.console.success(entry.name, time.monotonic() - start if start else None,
                                 entry.counted)

    def add_failure(self, task: Any, fail: Any) -> None:
        self.t0.pop(task.name, None)
        entry = self.names.pop(task.name, None) or Entry(task.name, None, True, None)
        kind = fail.get_name() if hasattr(fail, "get_name") else "failure"
        if kind == "UnmetDependency":
            self.console.block(entry.name, entry.counted)
            return
        msg = fail.message if getattr(fail, "message", None) else str(fail)
        trace = "".join(getattr(fail, "traceback", None) or ())
        if trace.strip() and msg.strip() == "PythonAction Error":
            # jobspec-do's own action raised (a bug, or an OS error it did not expect): the
            # exception's own line says what, where doit would say only "PythonAction Error".
            msg = "internal error: " + trace.strip().splitlines()[-1]
            if self.console.verbose:
                self.console.stream.write(trace)
        self.console.failure(entry.name, msg.strip().splitlines()[0] if msg.strip() else kind,
                             entry.state, entry.replica)

    def skip_uptodate(self, task: Any) -> None:
        entry = self.names.pop(task.name, None)
        if entry is not None:
            self.console.uptodate(entry.name, entry.counted)

    def skip_ignore(self, task: Any) -> None:
        pass

    def cleanup_error(self, exception: Any) -> None:
        self.console.emit("error", "cleanup", str(exception))

    def runtime_error(self, msg: str) -> None:
        self.console.emit("error", "doit", msg)

    def teardown_task(self, task: Any) -> None:
        pass

    def complete_run(self) -> None:
        pass
