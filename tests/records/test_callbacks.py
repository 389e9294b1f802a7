"""Webhooks, against a real HTTP server on 127.0.0.1: signatures, retries, never blocking."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dodo_jobspec.errors import JobspecError, SpecError
from dodo_jobspec.records import callbacks
from dodo_jobspec.records.callbacks import (
    SECRET_ENV,
    SECRET_FILE_ENV,
    Webhook,
    attach,
    callback_url,
    secret_from_env,
)
from dodo_jobspec.records.state import StateDir, StatusEvent
from tests.helpers import jobspec_do, load_text, write


class Receiver:
    """A webhook receiver: records every request; replies ``codes`` in turn (then the last)."""

    def __init__(self, port: int = 0, codes: tuple[int, ...] = (200,),
                 hold: threading.Event | None = None, location: str | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.codes = list(codes)
        self.hold = hold  # set: replies; clear: every request hangs until it is set
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()},
                                          body))
                if receiver.hold is not None:
                    receiver.hold.wait(120)
                code = receiver.codes.pop(0) if len(receiver.codes) > 1 else receiver.codes[0]
                self.send_response(code)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def event(task: str = "build", state: str = "running", attempt: int = 1,
          exit_code: int | None = None) -> StatusEvent:
    return StatusEvent("demo", task, "task", attempt, state, f"{task} is {state}", "4242",
                       exit_code, time.time())


def outbox_files(outbox: Path) -> list[str]:
    return sorted(p.name for p in outbox.glob("*.json"))


def returns_within(seconds: float, what: str, func: Any, *args: Any) -> Any:
    """``func(*args)``'s result; fails the test, saying ``what`` kept waiting, if it has not
    returned after ``seconds`` (a generous bound: a call that would block fails instead)."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            result.append(func(*args))
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{what} (still waiting after {seconds:g} s)"
    if errors:
        raise errors[0]
    return result[0]


def test_events_are_signed_with_the_secret_and_delivered_in_order(receiver: Receiver,
                                                                  tmp_path: Path) -> None:
    secret = b"s3cret-from-env"
    hook = Webhook(receiver.url, secret, tmp_path / "outbox", backoff=0.01)
    try:
        hook(event("build", "running"))
        hook(event("build", "completed", exit_code=0))
        hook(event("test", "failed", exit_code=3))
        assert hook.flush(10)
    finally:
        hook.close()
    assert len(receiver.requests) == 3
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-hub-signature-256"], expected)
        assert headers["content-type"] == "application/json"
    bodies = receiver.bodies()
    assert [(b["task"], b["state"]) for b in bodies] == [
        ("build", "running"), ("build", "completed"), ("test", "failed")]
    first = bodies[1]
    assert first["spec"] == "demo" and first["attempt"] == 1 and first["job_id"] == "4242"
    assert first["exit_code"] == 0 and first["kind"] == "task"
    assert isinstance(first["timestamp"], float) and first["info"] == "build is completed"
    assert len({b["id"] for b in bodies}) == 3  # receivers deduplicate on it
    assert outbox_files(tmp_path / "outbox") == []  # delivered events leave the outbox
    log = (tmp_path / "callbacks.log").read_text().splitlines()
    assert len(log) == 3 and all("200 OK" in line for line in log)


def test_a_tampered_body_does_not_verify(receiver: Receiver, tmp_path: Path) -> None:
    hook = Webhook(receiver.url, b"k", tmp_path / "outbox")
    hook(event())
    assert hook.flush(10)
    hook.close()
    headers, body = receiver.requests[0]
    forged = body.replace(b"running", b"completed")
    assert headers["x-hub-signature-256"] != callbacks.sign(b"k", forged)
    assert headers["x-hub-signature-256"] != callbacks.sign(b"other key", body)


def test_without_a_secret_there_is_no_signature(receiver: Receiver, tmp_path: Path) -> None:
    hook = Webhook(receiver.url, None, tmp_path / "outbox")
    hook(event())
    assert hook.flush(10)
    hook.close()
    assert "x-hub-signature-256" not in receiver.requests[0][0]


def test_events_kept_while_the_server_was_down_are_delivered_later_in_order(
        tmp_path: Path) -> None:
    down = Receiver()
    port, url = down.port, down.url
    down.stop()  # nothing listens on the port now: connections are refused
    outbox = tmp_path / "outbox"
    hook = Webhook(url, b"k", outbox, retries=2, backoff=0.01)
    for n in range(3):
        hook(event(f"t{n}", "completed", exit_code=0))
    # flush gives up for now because the receiver is down (its retries are used up), not
    # because its timeout ran out: with an hour to wait, it still returns.
    assert returns_within(60, "flush went on waiting for a receiver that is down",
                          hook.flush, 3600) is False
    hook.close()
    assert len(outbox_files(outbox)) == 3  # nothing lost
    log = (tmp_path / "callbacks.log").read_text()
    assert "no reply" in log and "retry in" in log and "kept in the outbox" in log

    up = Receiver(port=port)
    try:
        # The next invocation: its own events come after the ones left by the earlier one.
        again = Webhook(up.url, b"k", outbox, backoff=0.01)
        again(event("t3", "completed", exit_code=0))
        assert again.flush(10)
        again.close()
        assert [b["task"] for b in up.bodies()] == ["t0", "t1", "t2", "t3"]
        for headers, body in up.requests:
            assert headers["x-hub-signature-256"] == callbacks.sign(b"k", body)
        assert outbox_files(outbox) == []
    finally:
        up.stop()


def test_a_hanging_server_does_not_block_the_listener(tmp_path: Path) -> None:
    """The server holds the first request without replying until the end of the test: every
    listener call still returns with its event stored, no attempt has ended meanwhile (a
    listener that waited for a delivery would have seen its request time out), and flush
    returns after its own timeout although the request is still hanging."""
    hold = threading.Event()
    hanging = Receiver(hold=hold)
    log = tmp_path / "callbacks.log"
    try:
        hook = Webhook(hanging.url, b"k", tmp_path / "outbox", timeout=60, retries=1,
                       backoff=0.01)
        blocked = "a listener call waited for the delivery"
        returns_within(30, blocked, hook, event("t0"))
        deadline = time.monotonic() + 30
        while not hanging.requests:
            assert time.monotonic() < deadline, "the first event was never sent"
            time.sleep(0.01)
        for n in range(1, 20):  # while the delivery thread is stuck in the request
            returns_within(30, blocked, hook, event(f"t{n}"))
        assert not log.exists() or log.read_text() == "", \
            "an attempt ended while the server held the request: a listener call waited"
        assert len(hanging.requests) == 1 and hook.delivered == 0
        assert len(outbox_files(tmp_path / "outbox")) == 20  # each call stored its event
        # Bounded, whatever the server does: returns (False) while the request still hangs.
        assert returns_within(60, "flush(0.5) waited for the hanging request",
                              hook.flush, 0.5) is False
        assert not log.exists() or log.read_text() == ""  # it was still hanging
        hook.close(timeout=0.1)
        assert len(outbox_files(tmp_path / "outbox")) == 20  # all kept for the next invocation
    finally:
        hold.set()
        hanging.stop()


def test_a_4xx_is_not_retried(tmp_path: Path) -> None:
    rejecting = Receiver(codes=(400,))
    try:
        hook = Webhook(rejecting.url, b"k", tmp_path / "outbox", backoff=0.01)
        hook(event())
        assert hook.flush(10)
        time.sleep(0.2)  # a retry would have come by now
        hook.close()
        assert len(rejecting.requests) == 1
        assert hook.rejected == 1
        outbox = tmp_path / "outbox"
        assert outbox_files(outbox) == []  # not retried by the next invocation either
        assert len(list((outbox / "rejected").glob("*.json"))) == 1  # but kept to inspect
        assert "not retried" in (tmp_path / "callbacks.log").read_text()
    finally:
        rejecting.stop()


@pytest.mark.parametrize("code", [503, 429, 408])
def test_5xx_408_and_429_are_retried(tmp_path: Path, code: int) -> None:
    flaky = Receiver(codes=(code, code, 200))
    try:
        hook = Webhook(flaky.url, None, tmp_path / "outbox", retries=4, backoff=0.01)
        hook(event())
        assert hook.flush(10)
        hook.close()
        assert len(flaky.requests) == 3
        assert len({body for _, body in flaky.requests}) == 1  # the very same event
        assert hook.delivered == 1
    finally:
        flaky.stop()


@pytest.fixture(autouse=True)
def _no_secret_taken_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """secret_from_env keeps what it took out of the environment: not across tests."""
    monkeypatch.setattr(callbacks, "_TAKEN", {})


def test_the_secret_comes_from_the_environment_or_a_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    assert secret_from_env() is None
    monkeypatch.setenv(SECRET_ENV, "abc")
    assert secret_from_env() == b"abc"
    assert SECRET_ENV not in os.environ  # taken out: nothing started from here inherits it
    assert secret_from_env() == b"abc"
    (tmp_path / "secret").write_bytes(b"from-file\n")
    monkeypatch.setenv(SECRET_FILE_ENV, str(tmp_path / "secret"))
    assert secret_from_env() == b"from-file"
    monkeypatch.setenv(SECRET_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(JobspecError, match="cannot read"):
        secret_from_env()


SPEC_WITH_SECRET = """
    version: 1
    name: hooked
    attributes:
      callback: {url}
      callback_secret: written-in-the-spec
      cb_secret: written-in-the-spec
    tasks:
    - name: one
      command: "true"
"""


def test_the_secret_is_never_taken_from_the_spec(receiver: Receiver, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)
    spec = load_text(tmp_path, SPEC_WITH_SECRET.format(url=receiver.url))
    state = StateDir(tmp_path / "state", spec)
    state.ensure()
    hook = attach(state, callback_url(spec, None), secret_from_env())
    assert hook is not None and hook.secret is None
    unit = state.unit(spec.tasks[0])
    unit.ensure()
    unit.append_status(1, "running", "pid 1")
    assert hook.flush(10)
    hook.close()
    headers, body = receiver.requests[0]
    assert "x-hub-signature-256" not in headers  # the spec's secret was not used
    assert b"written-in-the-spec" not in body
    assert json.loads(body)["task"] == "one"

    monkeypatch.setenv(SECRET_ENV, "from-env")
    state2 = StateDir(tmp_path / "state2", spec)
    state2.ensure()
    hook2 = attach(state2, callback_url(spec, None), secret_from_env())
    assert hook2 is not None
    unit2 = state2.unit(spec.tasks[0])
    unit2.ensure()
    unit2.append_status(1, "completed", "exit 0", exit_code=0)
    assert hook2.flush(10)
    hook2.close()
    headers, body = receiver.requests[1]
    assert headers["x-hub-signature-256"] == callbacks.sign(b"from-env", body)
    assert headers["x-hub-signature-256"] != callbacks.sign(b"written-in-the-spec", body)


def test_the_spec_attribute_wins_over_the_configuration(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        attributes: {callback: "https://spec.example/hook"}
        tasks: [{name: one, command: "true"}]
    """)
    assert callback_url(spec, "https://config.example/hook") == "https://spec.example/hook"
    plain = load_text(tmp_path, """
        version: 1
        tasks: [{name: one, command: "true"}]
    """)
    assert callback_url(plain, "https://config.example/hook") == "https://config.example/hook"
    assert callback_url(plain, None) is None
    with pytest.raises(JobspecError, match="http"):
        callback_url(plain, "ftp://config.example/hook")


def test_an_invalid_url_in_the_spec_names_its_line(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        attributes:
          environment: {A: "1"}
          callback: "not a url"
        tasks: [{name: one, command: "true"}]
    """)
    with pytest.raises(SpecError) as info:
        callback_url(spec, None)
    assert "spec.yaml:4" in str(info.value) and "callback" in str(info.value)


def test_no_url_no_listener(tmp_path: Path) -> None:
    spec = load_text(tmp_path, """
        version: 1
        tasks: [{name: one, command: "true"}]
    """)
    state = StateDir(tmp_path / "state", spec)
    assert attach(state, None, b"k") is None
    assert state.listeners == []


def test_a_real_run_posts_every_state_change(receiver: Receiver, tmp_path: Path) -> None:
    (tmp_path / "jobspec-do.yaml").write_text(f"callback: {receiver.url}\n")
    spec = write(tmp_path, f"""
        version: 1
        name: hooked
        attributes: {{callback: "{receiver.url}"}}
        tasks:
        - name: a
          command: "true"
        - name: b
          depends_on: [a]
          command: "exit 4"
    """)
    result = jobspec_do(spec, cwd=tmp_path, env={SECRET_ENV: "run-secret"})
    assert result.returncode == 1, result.stderr
    bodies = receiver.bodies()
    assert ("a", "completed") in [(b["task"], b["state"]) for b in bodies]
    failed = [b for b in bodies if b["task"] == "b" and b["state"] == "failed"]
    assert failed and failed[0]["exit_code"] == 4 and failed[0]["spec"] == "hooked"
    for headers, body in receiver.requests:
        assert headers["x-hub-signature-256"] == callbacks.sign(b"run-secret", body)
    assert list((tmp_path / ".jobspec-do" / "spec" / "outbox").glob("*.json")) == []


def test_the_spec_url_comes_from_the_loaded_spec_not_a_second_read(tmp_path: Path) -> None:
    """A run does not read (at 100,000 tasks: parse) its spec file again for one attribute."""
    spec = load_text(tmp_path, """
        version: 1
        attributes: {callback: "https://spec.example/hook"}
        tasks: [{name: one, command: "true"}]
    """)
    spec.path.unlink()
    assert callback_url(spec, None) == "https://spec.example/hook"


def test_a_redirect_is_reported_not_followed(tmp_path: Path) -> None:
    """urllib would follow a redirected POST as a bodiless GET: the log names the new URL."""
    moving = Receiver(codes=(307,), location="http://127.0.0.1:9/elsewhere")
    try:
        hook = Webhook(moving.url, None, tmp_path / "outbox", retries=0, backoff=0.01)
        hook(event())
        hook.flush(10)
        hook.close()
        assert len(moving.requests) == 1
        log = (tmp_path / "callbacks.log").read_text()
        assert "redirect to http://127.0.0.1:9/elsewhere" in log
    finally:
        moving.stop()


def test_only_the_configured_url_gets_signed_events(receiver: Receiver, tmp_path: Path) -> None:
    """A spec (dropped in a watch folder, say) naming its own URL gets no signing oracle."""
    (tmp_path / "jobspec-do.yaml").write_text("callback: http://127.0.0.1:9/configured\n")
    spec = write(tmp_path, f"""
        version: 1
        attributes: {{callback: "{receiver.url}"}}
        tasks: [{{name: a, command: "true"}}]
    """)
    result = jobspec_do(spec, cwd=tmp_path, env={SECRET_ENV: "run-secret"})
    assert result.returncode == 0, result.stderr
    assert receiver.requests
    for headers, _ in receiver.requests:
        assert "x-hub-signature-256" not in headers
    assert callbacks.signing_secret("https://a/x", "https://a/x", b"k") == b"k"
    assert callbacks.signing_secret("https://a/x", "https://b/x", b"k") is None
    assert callbacks.signing_secret("https://a/x", None, b"k") is None


def test_the_secret_reaches_no_task(tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks: [{name: a, command: "env > env.txt"}]
    """)
    secret_file = tmp_path / "s"
    secret_file.write_text("file-secret\n")
    result = jobspec_do(spec, cwd=tmp_path, env={SECRET_ENV: "run-secret",
                                                 SECRET_FILE_ENV: str(secret_file)})
    assert result.returncode == 0, result.stderr
    env = (tmp_path / "env.txt").read_text()
    assert "JOBSPEC_DO_RUN" in env  # the file is the task's environment
    assert "run-secret" not in env and SECRET_ENV not in env


def test_a_url_with_credentials_is_refused_and_no_url_reaches_the_records(
        tmp_path: Path) -> None:
    spec = write(tmp_path, """
        version: 1
        attributes: {callback: "https://user:pw@example.org/hook"}
        tasks: [{name: a, command: "true"}]
    """)
    result = jobspec_do(spec, cwd=tmp_path)
    assert result.returncode == 2
    assert "spec.yaml:2" in result.stderr and "credentials" in result.stderr
    assert "pw" not in result.stderr.replace("password", "")
    spec = write(tmp_path, """
        version: 1
        attributes: {callback: "http://127.0.0.1:9/hook?token=tok-123"}
        tasks: [{name: a, command: "true"}]
    """)
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0
    for name in ("journal.jsonl", "tasks/a/done.json"):
        text = (tmp_path / ".jobspec-do" / "spec" / name).read_text()
        assert "tok-123" not in text and "127.0.0.1:9" not in text


@pytest.mark.parametrize("command", [(), ("status",)])
def test_a_run_that_runs_nothing_still_sends_what_is_left_in_the_outbox(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    """A cron user whose spec had finished never heard: events stayed in outbox/ until a
    task ran again. A no-op run, a quiet tick and `status` send them first."""
    from tests.helpers import jobspec_do, write

    down = Receiver(codes=(500,))
    try:
        spec = write(tmp_path, f"""
            version: 1
            attributes: {{callback: "{down.url}"}}
            tasks: [{{name: a, command: "true"}}]
            """)
        assert jobspec_do(spec, cwd=tmp_path).returncode == 0
        outbox = tmp_path / ".jobspec-do" / "spec" / "outbox"
        left = outbox_files(outbox)
        assert left, "the receiver was down: the events should have stayed"
        down.codes = [200]
        before = len(down.requests)
        for args in ([spec, "--cron"] if not command else [*command, spec],):
            r = jobspec_do(*args, cwd=tmp_path)
            assert r.returncode == 0, r.stderr
        assert outbox_files(outbox) == []
        sent = [json.loads(body)["state"] for _, body in down.requests[before:]]
        assert "completed" in sent, sent
    finally:
        down.stop()
