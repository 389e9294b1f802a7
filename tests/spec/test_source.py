"""Reading spec files: the content-addressed parse cache never changes what is read."""

from __future__ import annotations

import hashlib
import marshal
import textwrap
from pathlib import Path

import pytest
import yaml

from dodo_jobspec import SpecError
from dodo_jobspec.spec.source import read_document
from tests.helpers import ONE_CORE, jobspec_do


def _big_spec(n: int) -> str:
    lines = ["version: 1", "tasks:"]
    lines += [f"- {{name: t{i}, command: [echo, '{i}']}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def test_cache_returns_the_same_data_and_is_used(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big_spec(300))
    first = read_document(spec)
    entries = list((tmp_path / "cache" / "jobspec-do" / "parsed").glob("*.marshal"))
    assert len(entries) == 1
    second = read_document(spec)
    assert second.data == first.data and second.text == first.text
    assert second.data is not first.data  # a fresh object: callers may not share state


def test_edited_content_is_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big_spec(300))
    read_document(spec)
    spec.write_text(_big_spec(300).replace("t7,", "seven,"))
    assert read_document(spec).data["tasks"][7]["name"] == "seven"


def test_a_corrupt_cache_entry_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big_spec(300))
    read_document(spec)
    for entry in (tmp_path / "cache" / "jobspec-do" / "parsed").glob("*.marshal"):
        entry.write_bytes(b"garbage")
    assert len(read_document(spec).data["tasks"]) == 300


def test_errors_still_name_lines_with_the_cache(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from dodo_jobspec import load

    spec = tmp_path / "spec.yaml"
    spec.write_text(_big_spec(300) + "- {name: bad, comand: [x]}\n")
    for _ in range(2):  # the second load comes from the cache
        with pytest.raises(SpecError) as info:
            load(spec, default_resources=ONE_CORE)
        assert info.value.problems[0].line == 303


def _twice_command(n: int = 0) -> str:
    """A task that sets `command` twice (lines 4 and 5), after ``n`` plain tasks."""
    return _big_spec(n) + '- name: a\n  command: "true"\n  command: "false"\n'


def _duplicates(spec: Path) -> list[tuple[str | None, int | None, int | None, str, str]]:
    from dodo_jobspec import load
    from dodo_jobspec.errors import format_path

    with pytest.raises(SpecError) as info:
        load(spec, default_resources=ONE_CORE)
    return [(p.file, p.line, p.column, format_path(p.path), p.message)
            for p in info.value.problems]


def test_a_duplicate_key_names_the_file_line_and_path(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(_twice_command())
    assert _duplicates(spec) == [(str(spec), 5, 3, "tasks[0].command",
                                  "duplicate key 'command'")]
    spec.write_text(textwrap.dedent("""\
        version: 1
        tasks:
        - name: a
          command: "true"
          attributes:
            environment: {X: "1", Y: "2", X: "3"}
        version: 1
        """))
    assert _duplicates(spec) == [
        (str(spec), 6, 35, "tasks[0].attributes.environment.X", "duplicate key 'X'"),
        (str(spec), 7, 1, "version", "duplicate key 'version'")]


def test_a_cached_parse_never_skips_the_duplicate_check(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file with a duplicate is never cached; nor is an entry an older jobspec-do wrote
    for the same bytes (it took the last value) used."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "jobspec-do" / "parsed"
    spec = tmp_path / "spec.yaml"
    spec.write_text(_twice_command(300))
    for _ in range(2):
        assert _duplicates(spec)[0][1:4] == (305, 3, "tasks[300].command")
    assert not list(folder.glob("*.marshal"))
    raw = spec.read_bytes()
    stale = yaml.safe_load(raw)  # what was cached before: the last value won
    assert stale["tasks"][300]["command"] == "false"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{hashlib.sha1(raw).hexdigest()}.marshal").write_bytes(
        marshal.dumps((raw.decode(), stale)))  # the format before duplicates were refused
    assert _duplicates(spec)[0][1:4] == (305, 3, "tasks[300].command")


def test_a_clean_spec_still_loads_and_is_cached(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big_spec(300))
    first = read_document(spec)
    assert read_document(spec).data == first.data and len(first.data["tasks"]) == 300


def test_a_duplicate_key_in_the_config_file(tmp_path: Path) -> None:
    from dodo_jobspec import config

    spec = tmp_path / "spec.yaml"
    spec.write_text(_big_spec(1))
    conf = tmp_path / "jobspec-do.yaml"
    conf.write_text("jobs: 2\nssh: {port: 22, port: 2222}\n")
    with pytest.raises(SpecError) as info:
        config.load(spec)
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.path) == (str(conf), 2, ("ssh", "port"))


@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_command_line_refuses_a_duplicate_key(tmp_path: Path, command: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(_twice_command())
    result = jobspec_do(command, spec, cwd=tmp_path,
                        env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stderr
    assert f"{spec}:5:3: tasks[0].command: duplicate key 'command'" in result.stderr
    assert "`command` is already set on line 4; remove one of them" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
