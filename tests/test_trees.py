"""A folder named as an input: its digest, and a word when it is too big to walk each time."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec import trees
from dodo_jobspec.cli.app import main
from tests.helpers import write


def test_a_huge_input_folder_gets_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        (data / f"f{i}").write_text(str(i))
    (tmp_path / "small").mkdir()
    spec = write(tmp_path, """\
        version: 1
        tasks:
        - name: a
          command: "true"
          inputs: [data, small]
        """)
    monkeypatch.setattr(trees, "HUGE", 10)
    monkeypatch.setattr(trees, "_warned", set())
    assert main([str(spec)]) == 0  # a run digests the folder (and the no-op lists it)
    assert main(["plan", str(spec)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: input folder") == 1
    assert f"{data} holds 13 entries" in err and "small" not in err
