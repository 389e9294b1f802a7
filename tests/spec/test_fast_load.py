"""Loading a large spec fast changes nothing that is loaded: digests are those recorded by
earlier versions, a remembered "valid" is only ever for the same bytes and schema, and the
garbage collector is left as it was found."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dodo_jobspec import SpecError
from dodo_jobspec.spec.resolve import load
from dodo_jobspec.spec.source import paused_gc, read_document
from dodo_jobspec.spec.validate import schema_problems
from tests.helpers import ONE_CORE, write

PINNED = """
    version: 1
    name: pinned
    resources:
      two: {type: node, count: 1, with: [{type: slot, count: 1, with: [{type: core, count: 2}]}]}
    groups:
    - name: g
      resources: two
      attributes: {environment: {A: "1"}, duration: 5m}
      tasks:
      - {name: up, local: true, command: "true"}
      - {name: work, command: [echo, "2"], replicas: 3, outputs: [w.txt]}
    tasks:
    - {name: first, command: "echo 1 > first.txt", outputs: [first.txt]}
    - {name: after, depends_on: [g, first], command: "true"}
    """


def test_digests_are_those_earlier_versions_recorded(tmp_path: Path) -> None:
    # Computed by the eager digests of ef61959: a different value would re-run every task of
    # every existing state directory after an upgrade.
    spec = load(write(tmp_path, PINNED, "s.yaml"), default_resources=ONE_CORE)
    assert {k: n.digest for k, n in spec.nodes.items()} == {
        "task/up": "dfa67a7e8d57aadb5fcccc6427a8a4a4632699fffb0b20155db259ab77942a41",
        "task/work": "f8067b68e00b759e31d2e8bec2ffc4fcbefd8e3ffcfd06941c3be1a0ddbe82b5",
        "group/g": "47a3761515afcc37eafb69b1a085f179ffb2506ba9d9ed2b3b1eec2086983b7b",
        "task/first": "dc6586e08229974c1d15415ccdb47e6d8082774848aa92a30b87e105b0d112c8",
        "task/after": "f868a0e8b41efcd75fb714e8391fb165254496e8c044d5e6c3bf81211e1ce1f4",
    }
    assert spec.digest == "509e7da1773034dd822e9c36a2d35562940f32ba8a1d6d7c0d7457494d03259c"
    assert load(write(tmp_path, PINNED, "s.yaml"), default_resources=ONE_CORE,
                digests=False).nodes["task/up"].digest == spec.nodes["task/up"].digest


def test_inherited_attributes_are_shared_only_when_equal(tmp_path: Path) -> None:
    spec = load(write(tmp_path, """
        version: 1
        attributes: {environment: {X: top}}
        tasks:
        - {name: a, command: "true"}
        - {name: b, command: "true"}
        - {name: c, command: "true", attributes: {environment: {X: mine}}}
        """), default_resources=ONE_CORE)
    a, b, c = (spec.nodes[f"task/{n}"] for n in "abc")
    assert a.attributes == b.attributes and dict(a.attributes.environment) == {"X": "top"}
    assert dict(c.attributes.environment) == {"X": "mine"}


def _big(n: int = 300) -> str:
    return "version: 1\ntasks:\n" + "".join(
        f"- {{name: t{i}, command: [echo, '{i}']}}\n" for i in range(n))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "jobspec-do" / "parsed"


def _marks(folder: Path) -> list[str]:
    return sorted(p.name.split(".", 1)[1] for p in folder.iterdir()
                  if p.suffix != ".marshal")


def test_valid_content_is_remembered_per_schema(tmp_path: Path, cache: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big())
    doc = read_document(spec)
    assert doc.key is not None and schema_problems(doc) == []
    assert len(_marks(cache)) == 1
    assert schema_problems(read_document(spec)) == []  # answered by the mark
    assert schema_problems(read_document(spec), strict=True) == []
    assert len(_marks(cache)) == 2  # the strict schema has its own


def test_invalid_content_is_never_remembered(tmp_path: Path, cache: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big() + "- {name: bad, comand: [x]}\n")
    for _ in range(2):
        with pytest.raises(SpecError) as info:
            load(spec, default_resources=ONE_CORE)
        assert "unknown key 'comand'" in str(info.value)
    assert _marks(cache) == []


def test_a_mark_is_for_those_bytes_only(tmp_path: Path, cache: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big())
    load(spec, default_resources=ONE_CORE)
    spec.write_text(_big().replace("name: t7,", "nme: t7,"))  # same length, now invalid
    with pytest.raises(SpecError):
        load(spec, default_resources=ONE_CORE)


def test_no_cache_no_mark(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
                          ) -> None:
    monkeypatch.setenv("JOBSPEC_DO_CACHE", "0")
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big())
    doc = read_document(spec)
    assert doc.key is None and schema_problems(doc) == [] and not cache.exists()


def test_pruning_takes_the_marks_along(tmp_path: Path, cache: Path) -> None:
    from dodo_jobspec.spec import source

    spec = tmp_path / "spec.yaml"
    for i in range(3):
        spec.write_text(_big() + f"# {i}\n")
        load(spec, default_resources=ONE_CORE)
    assert len(list(cache.glob("*.marshal"))) == 3 and len(_marks(cache)) == 3
    source._prune(cache, keep=1)
    kept = [p.stem for p in cache.glob("*.marshal")]
    assert len(kept) == 1
    assert {p.name.split(".", 1)[0] for p in cache.iterdir()} == set(kept)


def test_a_cache_hit_does_not_import_yaml(tmp_path: Path, cache: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(_big())
    read_document(spec)
    code = ("import sys; from dodo_jobspec.spec.source import read_document; "
            f"read_document({str(spec)!r}); print('yaml' in sys.modules)")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache.parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "False"


def test_paused_gc_restores_the_setting() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), paused_gc():
        raise ValueError
    assert gc.isenabled()


def _collectable(objects: list[list[int]]) -> int:
    """How many of ``objects`` the collector sees (frozen objects are not in get_objects)."""
    ids = {id(o) for o in gc.get_objects()}
    return sum(id(o) in ids for o in objects)


def test_paused_gc_leaves_objects_someone_froze_frozen() -> None:
    junk = [[i] for i in range(100)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_gc():
            more = [[i] for i in range(100)]
        assert gc.get_freeze_count() == frozen and gc.isenabled()
        assert _collectable(junk) == 0  # still frozen: not thawed by an unfreeze()
        assert _collectable(more) == 100  # and what was made meanwhile was not frozen
    finally:
        gc.unfreeze()
