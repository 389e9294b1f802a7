"""State-change webhooks: every recorded state change of every task is POSTed to a URL.

Where the URL comes from: the spec's top-level ``attributes.callback``, else the configuration
file's ``callback`` key (the spec wins, so one spec can report elsewhere). Only http:// and
https:// URLs are accepted.

Where the secret comes from: the environment only, never the spec (a spec is shared, committed
and printed; a secret in it would leak). ``JOBSPEC_DO_CALLBACK_SECRET`` holds the secret itself;
else ``JOBSPEC_DO_CALLBACK_SECRET_FILE`` names a file holding it (trailing newlines are
stripped). A ``callback_secret`` or ``cb_secret`` written in a spec is ignored. With a secret,
each request carries ``x-hub-signature-256: sha256=<hex HMAC-SHA256 of the body>``, the scheme
GitHub and psik use; a receiver recomputes it over the raw body bytes and compares in constant
time (``hmac.compare_digest``).

The request: ``POST`` with ``Content-Type: application/json`` and a body such as::

    {"id": "00001736500000000000000-4242-000001.json", "spec": "build-run", "task": "build",
     "kind": "task", "attempt": 1, "state": "completed", "job_id": "12345", "exit_code": 0,
     "info": "...", "timestamp": 1736500000.123}

``id`` is unique per event: delivery is at least once (an event whose 2xx reply was lost is sent
again), so a receiver that must not act twice deduplicates on it.

Delivery never blocks or fails the run. The listener only writes the event into
``<state>/outbox/`` (one JSON file per event, named so that names sort in event order) and
returns; a daemon thread POSTs the events in order, retrying connection errors, timeouts, 5xx,
408 and 429 with exponential backoff, and deletes each file on a 2xx reply. Other 3xx/4xx replies
are not retried: the event moves to ``outbox/rejected/``. Events still in the outbox when a run
ends (the receiver was down) are sent first by the next invocation on the same state directory.
Every attempt is logged as one line in ``<state>/callbacks.log``.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import hmac
import json
import os
import threading
import time
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import __version__
from ..errors import JobspecError, Problem, SpecError
from ..spec.model import Spec
from .state import StateDir, StatusEvent, atomic_write

SECRET_ENV = "JOBSPEC_DO_CALLBACK_SECRET"
SECRET_FILE_ENV = "JOBSPEC_DO_CALLBACK_SECRET_FILE"
SIGNATURE_HEADER = "x-hub-signature-256"
RETRIED_4XX = (408, 429)  # request timeout, too many requests: worth another try
MAX_COOLDOWN = 60.0  # seconds between rounds of retries while the receiver is down


_TAKEN: dict[str, str] = {}  # the secret's variables, taken out of this process's environment


def secret_from_env() -> bytes | None:
    """The signing secret from the environment (never from the spec), or None.

    The variables are removed from ``os.environ`` on the first call (a run makes it before
    any task starts): every task and scheduler job inherits this process's environment
    (Slurm's ``--export=ALL`` carries it to compute nodes), and a task must not be able to
    sign events. Later calls (the watch service runs many specs) read the kept copy."""
    present = {v: os.environ.pop(v) for v in (SECRET_ENV, SECRET_FILE_ENV) if v in os.environ}
    if present:  # set again since (a test, an embedding program): the new values count
        _TAKEN.clear()
        _TAKEN.update(present)
    value = _TAKEN.get(SECRET_ENV)
    if value:
        return value.encode()
    name = _TAKEN.get(SECRET_FILE_ENV)
    if not name:
        return None
    path = Path(os.path.expanduser(name))
    try:
        data = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise JobspecError(f"${SECRET_FILE_ENV}: cannot read {path}: "
                           f"{exc.strerror or exc}") from None
    if not data:
        # An empty secret would sign with an empty key: refuse rather than pretend to sign.
        raise JobspecError(f"${SECRET_FILE_ENV}: {path} is empty")
    return data


def sign(secret: bytes, body: bytes) -> str:
    """The ``x-hub-signature-256`` header value for ``body``."""
    return "sha256=" + hmac.new(secret, body, sha256).hexdigest()


def signing_secret(url: str | None, config_url: str | None,
                   secret: bytes | None) -> bytes | None:
    """The secret to sign deliveries to ``url`` with: only for the URL the operator
    configured. A URL only a spec names gets unsigned events, or anyone able to drop a spec
    (in a watch folder, say) could have events for names of their choosing signed with the
    service's key at an address of their choosing."""
    return secret if url and config_url and url == config_url else None


def callback_url(spec: Spec, config_url: str | None) -> str | None:
    """The webhook URL for ``spec``: its ``attributes.callback``, else the configuration's.

    A bad value in the spec is reported with its line (the file is read again for that)."""
    from_spec = spec.callback
    if from_spec is not None:
        why = _url_problem(from_spec)
        if why:
            problem = (f"callback {why}", ["attributes", "callback"],
                       "for example https://example.org/hooks/jobspec; a receiver checks the "
                       "x-hub-signature-256 header, not credentials in the URL")
            try:
                from ..spec.source import read_document

                doc = read_document(spec.path)
            except SpecError:  # gone since it was loaded: say it without the line
                raise SpecError([Problem(problem[0], tuple(problem[1]), problem[2],
                                         str(spec.path))]) from None
            raise SpecError([doc.problem(*problem)])
        return str(from_spec)
    if config_url is None or config_url == "":
        return None
    why = _url_problem(config_url)
    if why:
        raise JobspecError(f"configuration: callback {why}")
    return config_url


def _url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be a callback URL (None if it can). Never repeats a credential."""
    if not isinstance(url, str):
        return f"must be an http:// or https:// URL, not {url!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return f"must be an http:// or https:// URL, not {_redact_safe(url)!r}"
    if parts.username is not None or parts.password is not None:
        # urllib sends no credentials from the URL: every delivery fails (DNS on
        # "user:pw@host"), and the URL would sit in every record and log.
        return (f"must not carry credentials (user:password@): {_redact(url)!r} is what it "
                "may be")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http:// or https:// URL, not {_redact_safe(url)!r}"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "must not contain spaces or control characters"
    return None


def _redact_safe(url: str) -> str:
    """``url`` shown in an error, without what may be a credential."""
    try:
        return _redact(url) if "@" in url else url
    except ValueError:
        return "(not shown: it may hold a credential)"


def attach(state: StateDir, url: str | None, secret: bytes | None) -> Webhook | None:
    """Register a webhook listener on ``state`` (outbox in ``<state>/outbox/``), if a URL is set.

    The caller flushes and closes it when the run ends.
    """
    if not url:
        return None
    hook = Webhook(url, secret, state.root / "outbox")
    state.listeners.append(hook)
    return hook


def event_body(event: StatusEvent, event_id: str) -> bytes:
    """The JSON body sent for ``event`` (the exact bytes that are signed)."""
    return json.dumps({
        "id": event_id, "spec": event.spec, "task": event.unit, "kind": event.kind,
        "attempt": event.attempt, "state": event.state, "job_id": event.job_id,
        "exit_code": event.exit_code, "info": event.info, "timestamp": event.timestamp,
    }, separators=(",", ":")).encode()


def _opener() -> Any:
    """A urllib opener that reports a redirect rather than following it: urllib turns a
    redirected POST into a bodiless GET. (urllib is imported only when a webhook is set: it
    is a tenth of a run's start-up.)"""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                             newurl: str) -> None:
            return None

    return urllib.request.build_opener(NoRedirect)


class Webhook:
    """A StateDir listener that delivers every event to ``url`` without ever blocking the run."""

    def __init__(self, url: str, secret: bytes | None, outbox: Path, timeout: float = 5,
                 retries: int = 4, backoff: float = 0.5, log: Path | None = None) -> None:
        self.url = url
        self.secret = secret
        self.outbox = Path(outbox)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.log_path = log or self.outbox.parent / "callbacks.log"
        self.delivered = 0  # counters, for tests and summaries
        self.rejected = 0
        self._where = _redact(url)
        self._opener = _opener()
        self._cond = threading.Condition()
        self._pending: list[str] = []  # heap of event file names: names sort in event order
        self._known: set[str] = set()
        self._unsaved: dict[str, bytes] = {}  # bodies the outbox could not store (disk full)
        self._busy = False  # an event is being delivered
        self._down = False  # retries exhausted: the receiver is down, waiting to try again
        self._ready = False  # the backlog of earlier invocations has been queued
        self._finished = False
        self._stop = threading.Event()
        self._last_ns = 0
        self._seq = 0
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._log(f"outbox {self.outbox} unusable ({exc}); events are kept in memory only")
        self._thread = threading.Thread(target=self._deliver_all, name="jobspec-do-webhook",
                                        daemon=True)
        self._thread.start()

    # -- the listener (runs in the engine's worker threads) ----------------------------------
    def __call__(self, event: StatusEvent) -> None:
        """Queue ``event`` for delivery; returns at once and never raises."""
        try:
            # Under the lock: names are handed out, stored and queued in one order, so the
            # delivery order is the order the events were recorded in.
            with self._cond:
                ns = max(time.time_ns(), self._last_ns + 1)
                self._last_ns = ns
                self._seq += 1
                name = f"{ns:020d}-{os.getpid()}-{self._seq:06d}.json"
                body = event_body(event, name)
                try:
                    atomic_write(self.outbox / name, body)
                except OSError as exc:
                    self._unsaved[name] = body
                    self._log(f"{name} not saved to the outbox ({exc}); kept in memory")
                self._push(name)
                self._cond.notify_all()
        except Exception:  # a webhook must never fail the run
            pass

    # -- the caller's controls -----------------------------------------------------------------
    def flush(self, timeout: float = 10) -> bool:
        """Wait (at most ``timeout`` seconds) until every queued event is delivered.

        Returns at once when the receiver is down (retries exhausted): waiting longer would only
        delay the run; those events stay in the outbox for the next invocation. True when
        nothing is left to send.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._finished and not self._down and (
                    not self._ready or self._pending or self._busy):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._ready and not self._pending and not self._busy

    def close(self, timeout: float | None = None) -> None:
        """Stop delivering; undelivered events stay in the outbox for the next invocation."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        # A request in flight ends within its own timeout; the thread is a daemon anyway.
        self._thread.join(self.timeout + 1 if timeout is None else timeout)

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered by this instance."""
        with self._cond:
            return len(self._pending)

    # -- the delivery thread -------------------------------------------------------------------
    def _push(self, name: str) -> None:
        if name not in self._known:
            self._known.add(name)
            heapq.heappush(self._pending, name)

    def _deliver_all(self) -> None:
        fd = None
        try:
            go, fd = self._lock_outbox()
            if not go:
                return
            self._queue_backlog()
            while not self._stop.is_set():
                with self._cond:
                    while not self._pending and not self._stop.is_set():
                        self._cond.wait()
                    if self._stop.is_set():
                        break
                    name = self._pending[0]
                    self._busy = True
                outcome = self._deliver(name)
                with self._cond:
                    self._busy = False
                    if outcome != "down":
                        heapq.heappop(self._pending)
                        self._unsaved.pop(name, None)
                    self._down = outcome == "down"
                    self._cond.notify_all()
                if outcome == "down":
                    # Keep the order: the same event is tried again after a pause, later
                    # events wait behind it (and stay safe in the outbox meanwhile).
                    self._stop.wait(min(MAX_COOLDOWN, max(1.0, self.backoff * 2 ** self.retries)))
                    with self._cond:
                        self._down = False
        except Exception as exc:  # a bug here must not take the run down
            self._log(f"delivery stopped by an internal error: {exc!r}")
        finally:
            if fd is not None:
                os.close(fd)  # releases the flock
            with self._cond:
                self._finished = True
                self._busy = False
                self._cond.notify_all()

    def _lock_outbox(self) -> tuple[bool, int | None]:
        """Hold ``outbox/.lock`` while delivering, so that two Webhooks on one outbox (an old
        one still finishing a request, a new invocation) never send the same event at once.

        Returns (go on, file descriptor to close at the end); (False, None) when stopped first.
        """
        try:
            fd = os.open(self.outbox / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return True, None  # no usable outbox: deliver from memory, nothing to share
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True, fd
            except BlockingIOError:
                if self._stop.wait(0.05):
                    os.close(fd)
                    return False, None

    def _queue_backlog(self) -> None:
        """Queue the events earlier invocations left undelivered; their names sort first."""
        try:
            names = [p.name for p in self.outbox.glob("*.json") if not p.name.startswith(".")]
        except OSError:
            names = []
        with self._cond:
            backlog = [name for name in names if name not in self._known]  # not our own
            for name in backlog:
                self._push(name)
            if backlog:
                self._log(f"{len(backlog)} undelivered event(s) queued from the outbox")
            self._ready = True
            self._cond.notify_all()

    def _deliver(self, name: str) -> str:
        """Send one event: 'ok', 'rejected', 'gone' (delivered by someone else) or 'down'."""
        path = self.outbox / name
        body = self._unsaved.get(name)
        if body is None:
            try:
                body = path.read_bytes()
            except FileNotFoundError:
                return "gone"
            except OSError as exc:
                self._log(f"{name} unreadable ({exc}); skipped")
                return "gone"
        summary = _summary(body)
        attempts = self.retries + 1
        for n in range(1, attempts + 1):
            code, detail, retry_after = self._post(body)
            result = f"{name} {summary} -> {detail} (attempt {n}/{attempts}) {self._where}"
            if code is not None and 200 <= code < 300:
                self._log(result)
                _unlink(path)
                self.delivered += 1
                return "ok"
            if code is not None and code < 500 and code not in RETRIED_4XX:
                self._log(result + "; not retried, moved to outbox/rejected/")
                self._reject(path, name, body)
                self.rejected += 1
                return "rejected"
            if n == attempts:
                self._log(result + "; kept in the outbox, retried later")
                return "down"
            delay = self.backoff * 2 ** (n - 1)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_COOLDOWN))
            self._log(result + f"; retry in {delay:g}s")
            if self._stop.wait(delay):
                return "down"
        return "down"  # pragma: no cover - the loop always returns

    def _post(self, body: bytes) -> tuple[int | None, str, float | None]:
        """One POST: (status code or None for no reply, text for the log, Retry-After)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"jobspec-do/{__version__}"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        import urllib.error
        import urllib.request

        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                reply.read(65536)  # drain a little so keep-alive servers are not cut off
                return reply.status, f"{reply.status} {reply.reason}", None
        except urllib.error.HTTPError as exc:
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            detail = f"{exc.code} {exc.reason}"
            if 300 <= exc.code < 400:
                detail += f" (redirect to {exc.headers.get('Location')}: use that URL)"
            return exc.code, detail, retry_after
        except urllib.error.URLError as exc:
            return None, f"no reply: {exc.reason}", None
        except (TimeoutError, OSError) as exc:
            return None, f"no reply: {exc or type(exc).__name__}", None
        except Exception as exc:  # e.g. http.client.BadStatusLine
            return None, f"no reply: {type(exc).__name__}: {exc}", None

    def _reject(self, path: Path, name: str, body: bytes) -> None:
        """Keep a rejected event for inspection, out of the way of the retried ones."""
        try:
            rejected = self.outbox / "rejected"
            rejected.mkdir(exist_ok=True)
            if path.exists():
                os.replace(path, rejected / name)
            else:
                atomic_write(rejected / name, body)
        except OSError as exc:
            self._log(f"{name}: cannot move to outbox/rejected/ ({exc})")

    def _log(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        data = f"{stamp} {line}\n".encode()
        try:
            # One O_APPEND write per line: lines from several processes never interleave.
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            pass  # logging must not fail delivery either


def _summary(body: bytes) -> str:
    try:
        data = json.loads(body)
        return f"{data.get('task')}#{data.get('attempt')} {data.get('state')}"
    except ValueError:
        return "?"


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _redact(url: str) -> str:
    """The URL for the log, without credentials or query (which may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
