"""The fast YAML walk gives exactly what yaml.load gives, or steps aside to PyYAML."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from dodo_jobspec import yamldata
from tests.helpers import REFERENCE

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ROOT = Path(__file__).resolve().parents[1]


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
  1: one
  2.5: two and a half
  true: yes
  null: nothing
dup: first
dup: second
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
