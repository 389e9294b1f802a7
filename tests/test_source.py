"""Reading spec files: the content-addressed parse cache never changes what is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec import SpecError
from dodo_jobspec.source import read_document
from tests.helpers import ONE_CORE


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
