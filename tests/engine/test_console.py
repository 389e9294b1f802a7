"""The console's account of a failure that is jobspec-do's own (an action that raised)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

from doit.exceptions import TaskError

from dodo_jobspec import load
from dodo_jobspec.engine.console import Console, DoitReporter, Entry
from dodo_jobspec.records.state import StateDir
from tests.helpers import write


def _reporter(tmp_path: Path, verbose: bool) -> tuple[DoitReporter, io.StringIO]:
    spec = load(write(tmp_path, "version: 1\nresources: {one: {type: core, count: 1}}\n"
                      "tasks: [{name: a, resources: one, command: 'true'}]\n"))
    out = io.StringIO()
    console = Console(StateDir(tmp_path / "st", spec), 1, verbose=verbose, stream=out,
                      live=False)
    return DoitReporter(console, {"a": Entry("a", None, True, None)}), out


def _raised() -> TaskError:
    try:
        open("/nonexistent/folder/status.csv")  # noqa: SIM115 - raising is the point
    except OSError as exc:
        return TaskError("PythonAction Error", exc)
    raise AssertionError("unreachable")


def test_an_action_that_raised_is_named_by_its_exception(tmp_path: Path) -> None:
    reporter, out = _reporter(tmp_path, verbose=False)
    reporter.add_failure(SimpleNamespace(name="a"), _raised())
    text = out.getvalue()
    assert "internal error: FileNotFoundError" in text and "/nonexistent/folder" in text, text
    assert "PythonAction Error" not in text and "Traceback" not in text


def test_verbose_shows_the_whole_traceback(tmp_path: Path) -> None:
    reporter, out = _reporter(tmp_path, verbose=True)
    reporter.add_failure(SimpleNamespace(name="a"), _raised())
    assert "Traceback (most recent call last)" in out.getvalue()
