"""Every spec in examples/ runs for real on the local default, and a second run does nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import jobspec_do

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# What each example must leave behind (file -> exact content), or its expected exit code.
EXPECT: dict[str, dict[str, str] | int] = {
    "hello.yaml": {"HELLO.txt": "HELLO FROM "},
    "build-run.yaml": {"result.txt": "result: 42\n"},
    "replicas.yaml": {"samples.txt": "sample-0\nsample-1\nsample-2\nsample-3\n"},
    "fan-out-in.yaml": {"merged.txt": "a\nb\nc\n"},
    "groups.yaml": {"train.txt": "train group blue\n", "test.txt": "test task blue\n",
                    "service.state": "up\ndown\n"},
    "timeout.yaml": 1,
}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.yaml")} == set(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example_runs(tmp_path: Path, name: str) -> None:
    shutil.copy(EXAMPLES / name, tmp_path / name)
    first = jobspec_do(tmp_path / name, cwd=tmp_path, timeout=60)
    expect = EXPECT[name]
    if isinstance(expect, int):
        assert first.returncode == expect, first.stderr
        return
    assert first.returncode == 0, first.stderr
    for file, content in expect.items():
        assert (tmp_path / file).read_text().startswith(content), file
    second = jobspec_do(tmp_path / name, cwd=tmp_path, timeout=60)
    assert second.returncode == 0 and " 0 ran," in second.stderr, second.stderr
