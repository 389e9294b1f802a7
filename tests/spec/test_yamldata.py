"""The fast YAML walk gives exactly what yaml.load gives, or steps aside to PyYAML."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from dodo_jobspec.spec import yamldata
from tests.helpers import REFERENCE

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ROOT = Path(__file__).resolve().parents[2]


def _same(a: Any, b: Any) -> bool:
    """Equal, type for type (1 == 1.0 == True in Python), NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


SCALARS = """
plain: text
quoted: "123"
single: '1.5'
ints: [1, -2, 0x1F, 0o17, 1_000, +3]
floats: [1.5, -0.5, 1e3, .inf, -.inf, .nan]
bools: [true, False, yes, no, on, off]
nulls: [~, null, ]
empty:
date: 2024-01-31
stamp: 2024-01-31 10:20:30.5
block: |
  two
  lines
folded: >
  one
  line
number_key:
  3: three
  2.5: two and a half
  true: yes
  null: nothing
bang: ! 12
anchored: &n 5
again: *n
"""

UNUSUAL = {
    "merge": "base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\n",
    "set": "s: !!set {a, b}\n",
    "binary": "b: !!binary aGVsbG8=\n",
    "explicit str": "n: !!str 123\n",
    "explicit int": "n: !!int '7'\n",
    "omap": "o: !!omap [{a: 1}, {b: 2}]\n",
    "pairs": "p: !!pairs [{a: 1}, {a: 2}]\n",
}


def _files() -> list[Path]:
    found = [*sorted((REFERENCE / "corpus").rglob("*.y*ml")),
             *sorted((ROOT / "examples").glob("*.yaml")),
             *sorted((ROOT / "tests" / "specs").rglob("*.y*ml"))]
    return [p for p in found if p.is_file()]


@pytest.mark.parametrize("text", [SCALARS, *UNUSUAL.values()],
                         ids=["scalars", *UNUSUAL])
def test_same_data_as_yaml_load(text: str) -> None:
    assert _same(yamldata.load(text, LOADER), yaml.load(text, Loader=LOADER))


def test_same_data_for_every_spec_file_we_have() -> None:
    files = _files()
    assert len(files) > 10, "the corpus and examples were not found"
    for path in files:
        text = path.read_text()
        try:
            want = yaml.load(text, Loader=LOADER)
        except yaml.YAMLError:
            with pytest.raises(yaml.YAMLError):
                yamldata.load(text, LOADER)
            continue
        assert _same(yamldata.load(text, LOADER), want), path


def test_an_alias_is_the_anchored_object_and_recursion_is_fine() -> None:
    data = yamldata.load("a: &x {k: [1]}\nb: *x\nr: &r [1, *r]\n", LOADER)
    assert data["a"] is data["b"]
    assert data["r"][1] is data["r"]


@pytest.mark.parametrize("text", [
    "? [a, b]\n: c\n",          # a complex key: PyYAML's own error (unhashable key)
    "a: 1\n---\nb: 2\n",        # two documents
    "a: [1, 2\n",               # a syntax error
    "a: *nowhere\n",            # an undefined alias
    "x: !!python/name:os.system ''\n",  # not for the safe loader
])
def test_errors_are_pyyamls(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as theirs:
        yaml.load(text, Loader=LOADER)
    with pytest.raises(yaml.YAMLError) as ours:
        yamldata.load(text, LOADER)
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


def test_an_empty_document_is_none() -> None:
    assert yamldata.load("# nothing\n", LOADER) is None


def test_plain_data_is_built_from_events_and_the_rest_the_long_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path must really carry plain specs (a regression there is silent: the long
    way gives the same data, slower), and must step aside for what it does not build."""
    composed: list[str] = []
    real = yaml.compose

    def counting(text: str, Loader: type) -> Any:
        composed.append(text)
        return real(text, Loader=Loader)

    monkeypatch.setattr(yamldata.yaml, "compose", counting)
    assert yamldata.load(SCALARS, LOADER)["again"] == 5
    for path in _files()[:5]:
        yamldata.load(path.read_text(), LOADER)
    assert composed == []
    yamldata.load(UNUSUAL["merge"], LOADER)
    assert composed == [UNUSUAL["merge"]]


LOADERS = [pytest.param(LOADER, id="C"), pytest.param(yaml.SafeLoader, id="pure-Python")]
BIG = "".join(f"- {{name: t{i}, command: [echo, '{i}']}}\n" for i in range(50))


def _duplicate(text: str, loader: type) -> yamldata.DuplicateKeyError:
    with pytest.raises(yamldata.DuplicateKeyError) as info:
        yamldata.load(text, loader)
    return info.value


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(("text", "path", "line", "column", "first_line"), [
    ('version: 1\ntasks:\n- name: a\n  command: "true"\n  command: "false"\n',
     ("tasks", 0, "command"), 5, 3, 4),
    ("version: 1\ntasks: []\nversion: 1\n", ("version",), 3, 1, 1),
    ("version: 1\ntasks:\n" + BIG + "- name: a\n  attributes:\n    environment:\n"
     "      X: 1\n      'X': 2\n", ("tasks", 50, "attributes", "environment", "X"), 57, 7,
     56),
    ('{"version": 1, "tasks": [{"name": "a", "name": "b"}]}\n', ("tasks", 0, "name"), 1,
     40, 1),
    ("n:\n  1: one\n  1.0: again\n", ("n", "1.0"), 3, 3, 2),  # the same dict key
], ids=["task", "top level", "nested", "json", "equal values"])
def test_a_duplicate_key_is_an_error(text: str, path: tuple[object, ...], line: int,
                                     column: int, first_line: int, loader: type) -> None:
    yaml.load(text, Loader=loader)  # PyYAML itself keeps the last value, silently
    error = _duplicate(text, loader)
    assert error.path == path
    assert (error.problem_mark.line + 1, error.problem_mark.column + 1) == (line, column)
    assert error.first_mark.line + 1 == first_line
    assert isinstance(error, yaml.MarkedYAMLError)


@pytest.mark.parametrize("loader", LOADERS)
def test_a_duplicate_key_is_found_the_long_way_too(loader: type) -> None:
    """With a merge key (PyYAML's constructor builds the document), an explicit tag, or an
    anchored mapping aliased later: every one is reported, in document order."""
    text = ("base: &b {x: 1, y: 2}\ntasks:\n- <<: *b\n  y: 3\n  name: a\n  name: b\n"
            "- n: !!str 5\n  n: x\n- *b\n- {k: 1, k: 2}\n")
    error = _duplicate(text, loader)
    found = [(e.path, e.problem_mark.line + 1) for e in (error, *error.also)]
    assert found == [(("tasks", 0, "name"), 6), (("tasks", 1, "n"), 8),
                     (("tasks", 3, "k"), 10)]


def test_merged_keys_are_not_duplicates() -> None:
    """A key that overrides a merged one, and two merge keys, are what YAML means."""
    text = ("a: &a {x: 1, y: 2}\nb: &b {z: 3}\nc:\n  <<: *a\n  <<: *b\n  x: 9\n"
            "d:\n  <<: [*a, *b]\n  y: 0\n")
    data = yamldata.load(text, LOADER)
    assert _same(data, yaml.load(text, Loader=LOADER))
    assert data["c"] == {"x": 9, "y": 2, "z": 3} and data["d"] == {"x": 1, "y": 0, "z": 3}


def test_anchors_aliases_and_lookalike_keys_are_not_duplicates() -> None:
    text = ('a: &x {k: 1}\nb: *x\nc: [*x, *x]\nkeys: {"1": s, 1: i, "true": s, null: n, '
            "'~': s}\n")
    data = yamldata.load(text, LOADER)
    assert _same(data, yaml.load(text, Loader=LOADER)) and len(data["keys"]) == 5
    assert data["b"] is data["a"]


def test_a_duplicate_is_checked_on_the_fast_path_without_a_second_walk(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain spec is still built from events alone; the node walk that names the place
    runs only once a duplicate is found."""
    walked: list[object] = []
    real = yamldata._check_duplicates
    monkeypatch.setattr(yamldata, "_check_duplicates",
                        lambda node: walked.append(node) or real(node))
    yamldata.load("version: 1\ntasks:\n" + BIG, LOADER)
    yamldata.load(UNUSUAL["merge"], LOADER)  # the constructor's way: walked, nothing found
    assert len(walked) == 1
    with pytest.raises(yamldata.DuplicateKeyError):
        yamldata.load("version: 1\ntasks:\n" + BIG + "version: 1\n", LOADER)
    assert len(walked) == 2
