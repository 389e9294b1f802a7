"""The console script's quick no-op answer (cli/quick.py) says only what app.py would say.

It reads the command line itself and asks the no-op manifest before argparse is imported;
every shape it does not recognise, and every answer other than "all up to date", must reach
app.py. These tests hold each of its shortcuts to app.py's answer on real runs.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from dodo_jobspec import noop
from dodo_jobspec.cli import quick
from dodo_jobspec.cli.app import COMMANDS
from dodo_jobspec.records.folder import default_state_dir
from tests.helpers import counts, jobspec_do, write

SPEC = """\
version: 1
tasks:
  - name: make
    command: "echo x >> count.make; cat in.txt > made.txt"
    inputs: [in.txt]
    outputs: [made.txt]
  - name: use
    command: "echo x >> count.use; cat made.txt > used.txt"
    inputs: [made.txt]
    outputs: [used.txt]
"""


@pytest.fixture
def done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec run to completion (a manifest written), the current folder its folder, and no
    user configuration file in the way."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    monkeypatch.delenv("JOBSPEC_DO_TRANSFORMER", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("one\n")
    spec = write(tmp_path, SPEC)
    first = jobspec_do("run", "-q", spec, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert counts(tmp_path) == {"make": 1, "use": 1}
    return spec


def _answer(*argv: str) -> tuple[bool, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        said = quick.answer(list(argv))
    return said, err.getvalue()


@pytest.mark.parametrize("argv", [
    ["spec.yaml"], ["run", "spec.yaml"], ["-q", "spec.yaml"], ["spec.yaml", "--quiet"],
    ["run", "-j", "2", "spec.yaml"], ["-j2", "spec.yaml"], ["--jobs=3", "spec.yaml"],
    ["-t", "local", "spec.yaml"], ["--transformer=local", "spec.yaml"], ["-tlocal", "spec.yaml"],
    ["--cron", "-k", "--resume", "--wait-lock", "-v", "spec.yaml"],
])
def test_the_shapes_it_answers(done: Path, argv: list[str]) -> None:
    said, text = _answer(*argv)
    assert said
    quiet = {"-q", "--quiet", "--cron"} & set(argv)
    assert (text == "") if quiet else text.endswith("ok: 0 ran, 2 up to date, 0 failed\n")


@pytest.mark.parametrize("argv", [
    [], ["run"], ["plan", "spec.yaml"], ["status", "spec.yaml"], ["-n", "spec.yaml"],
    ["--dry-run", "spec.yaml"], ["--force", "make", "spec.yaml"], ["--report", "spec.yaml"],
    ["--no-wait", "spec.yaml"], ["-f", "spec.yaml"], ["--state-dir", "x", "spec.yaml"],
    ["--config", "c.yaml", "spec.yaml"], ["-j", "0", "spec.yaml"], ["-j", "two", "spec.yaml"],
    ["-j", "²", "spec.yaml"], ["-j"], ["spec.yaml", "-j"], ["-t", "-q", "spec.yaml"],
    ["-qv", "spec.yaml"], ["--quie", "spec.yaml"], ["--", "spec.yaml"],
    ["spec.yaml", "spec.yaml"], ["missing.yaml"], ["-h"], ["--version"],
])
def test_every_other_shape_goes_to_the_full_command_line(done: Path, argv: list[str]) -> None:
    assert quick.parse(argv) is None


def test_a_different_transformer_is_not_this_manifest(done: Path) -> None:
    assert _answer("-t", "slurm", "spec.yaml") == (False, "")
    os.environ["JOBSPEC_DO_TRANSFORMER"] = "flux"  # monkeypatch restores the environment
    try:
        assert _answer("spec.yaml") == (False, "")
    finally:
        del os.environ["JOBSPEC_DO_TRANSFORMER"]


def test_it_knows_the_commands_app_knows() -> None:
    assert quick._COMMANDS == COMMANDS


@pytest.mark.parametrize("name", ["spec.yaml", "a.b.yaml", ".yaml", "x.", "noext", ".hidden.yml",
                                  "...yaml", "..yaml", ". .yaml"])
def test_its_state_folder_is_the_records_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             name: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for spelled in (name, f"sub/../{name}", str(tmp_path / name)):
        mine = quick.state_dir(spelled)
        if mine is not None:  # None: it leaves the digest-named folders to app.py
            assert mine == str(default_state_dir(Path(spelled)))
    assert (quick.state_dir(name) is None) == name.startswith(("...", "..y"))


def test_its_key_is_the_runs_key(done: Path) -> None:
    """The quick path keys the manifest from plain strings, a run from Path objects."""
    from dodo_jobspec.engine.run import RunRequest, prepare

    prep = prepare(RunRequest(spec=done, transformer="local"))
    assert noop.key("spec.yaml", "local", None) == prep.noop_key
    assert noop.key(str(done), "local", None) == prep.noop_key
    link = done.parent / "link.yaml"
    link.symlink_to(done)
    assert noop.key(link, "local", None) == prep.noop_key  # the same file, resolved


@pytest.mark.parametrize("change", ["edited spec", "changed input", "missing output",
                                    "missing record", "emptied record", "old manifest"])
def test_any_change_falls_through_and_app_runs_what_it_must(done: Path, change: str) -> None:
    folder = done.parent
    record = folder / ".jobspec-do" / "spec" / "tasks" / "use" / "done.json"
    if change == "edited spec":
        done.write_text(done.read_text().replace("cat made.txt", "cat  made.txt"))
    elif change == "changed input":
        (folder / "in.txt").write_text("two, longer\n")
    elif change == "missing output":
        (folder / "used.txt").unlink()
    elif change == "missing record":
        record.unlink()
    elif change == "emptied record":
        with open(record, "r+") as fh:
            fh.truncate(0)
    else:  # a manifest in the format before this one: not read, not trusted
        import marshal

        manifest = folder / ".jobspec-do" / "spec" / noop.NAME
        manifest.write_bytes(marshal.dumps((noop.key(done, "local", None), 2, [], [], {})))
    assert _answer("-q", "spec.yaml") == (False, "")
    again = jobspec_do("run", "-q", done, cwd=folder)
    assert again.returncode == 0, again.stderr
    ran = counts(folder)
    if change in ("old manifest", "missing record", "emptied record"):
        # A record gone or empty: `use` runs again (an empty one: its attempt is adopted).
        assert ran["make"] == 1 and ran["use"] in (1, 2)
    elif change == "changed input":
        assert ran == {"make": 2, "use": 2}
    else:
        assert ran == {"make": 1, "use": 2}
    assert _answer("-q", "spec.yaml") == (True, "")  # and the next re-run is quick again


def test_a_configuration_file_or_an_outbox_leaves_it_to_app(done: Path) -> None:
    folder = done.parent
    outbox = folder / ".jobspec-do" / "spec" / "outbox"
    outbox.mkdir()
    (outbox / ".partial.json").write_text("{}")  # a writer's temporary: nothing to send
    assert _answer("-q", "spec.yaml")[0]
    (outbox / "1.json").write_text("{}")
    assert not _answer("-q", "spec.yaml")[0]
    (outbox / "1.json").unlink()
    (folder / "jobspec-do.yaml").write_text("jobs: 2\n")
    assert not _answer("-q", "spec.yaml")[0]
    # app.py reads the file, and (its key changed) checks everything and runs nothing.
    r = jobspec_do("run", done, cwd=folder)
    assert r.returncode == 0 and "0 ran, 2 up to date" in r.stderr, r.stderr
    assert counts(folder) == {"make": 1, "use": 1}


def test_the_console_script_answers_with_apps_words(done: Path) -> None:
    """The same command line through the quick path and through app.py alone."""
    folder = done.parent
    quick_said = jobspec_do("run", "-j", "2", done, cwd=folder)
    (folder / ".jobspec-do" / "spec" / "outbox").mkdir()
    (folder / ".jobspec-do" / "spec" / "outbox" / "1.json").write_text("{}")  # app.py's turn
    full_said = jobspec_do("run", "-j", "2", done, cwd=folder)
    assert quick_said.returncode == full_said.returncode == 0
    assert quick_said.stdout == full_said.stdout == ""
    strip = lambda text: text.split(" ", 1)[1]  # noqa: E731  (the time of day differs)
    assert strip(quick_said.stderr) == strip(full_said.stderr) == "ok: 0 ran, 2 up to date, " \
                                                                  "0 failed\n"


def test_a_closed_stderr_fails_as_app_fails(done: Path) -> None:
    """The closing line cannot be written: exit 1 either way, not a traceback."""
    import subprocess
    import sys

    def closed_stderr() -> int:
        read, write = os.pipe()
        os.close(read)  # every write to it fails with EPIPE
        try:
            return subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", "spec.yaml"],
                                  cwd=done.parent, stderr=write, timeout=60).returncode
        finally:
            os.close(write)

    quick_rc = closed_stderr()
    outbox = done.parent / ".jobspec-do" / "spec" / "outbox"
    outbox.mkdir()
    (outbox / "1.json").write_text("{}")  # app.py's turn
    assert quick_rc == closed_stderr() == 1
