"""The shared-filesystem stager, and that every built-in stager loads through entry points."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from dodo_jobspec import plugins
from dodo_jobspec.stagers.base import (
    StageItem,
    StagerSettings,
    StagingError,
)
from dodo_jobspec.stagers.flux_archive import FluxArchiveStager
from dodo_jobspec.stagers.shared import SharedStager
from dodo_jobspec.stagers.ssh import SSHStager


def test_builtin_stagers_are_entry_points() -> None:
    assert plugins.load(plugins.STAGERS, "shared") is SharedStager
    assert plugins.load(plugins.STAGERS, "ssh") is SSHStager
    assert plugins.load(plugins.STAGERS, "flux-archive") is FluxArchiveStager
    for name in ("shared", "ssh", "flux-archive"):
        assert plugins.load(plugins.STAGERS, name).name == name


def test_in_place_items_are_reported_present(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("a")
    (tmp_path / "f").write_text("f")
    with SharedStager(StagerSettings(nodes=("n1", "n2"))) as s:
        report = s.put([StageItem(tmp_path / "d", str(tmp_path / "d")),
                        StageItem(tmp_path / "f", str(tmp_path / "f"))])
    assert report.bytes_sent == 0 and report.files_sent == 0
    assert report.nodes["n1"].files_skipped == report.nodes["n2"].files_skipped == 2
    assert "n1: 0 sent (0 bytes), 2 unchanged" in str(report)


def test_a_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match=r"stage source not found: .*missing\.txt"):
        SharedStager().put([StageItem(tmp_path / "missing.txt", "missing.txt")])


def test_another_destination_is_copied_once_and_then_skipped(tmp_path: Path) -> None:
    src = tmp_path / "app"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "run").write_text("#!/bin/sh\n")
    (src / "bin" / "run").chmod(0o755)
    dest = tmp_path / "scratch" / "app"
    s = SharedStager()
    first = s.put([StageItem(src, str(dest))])
    assert first.files_sent == 1 and first.bytes_sent == 10
    assert (dest / "bin" / "run").stat().st_mode & 0o777 == 0o755
    again = s.put([StageItem(src, str(dest))])
    assert again.files_sent == 0 and again.files_skipped == 1
    back = tmp_path / "back"
    assert s.get([StageItem(back, str(dest))]).files_sent == 1
    assert (back / "bin" / "run").read_text() == "#!/bin/sh\n"


def test_stagers_pickle_as_settings_only(tmp_path: Path) -> None:
    settings = StagerSettings(nodes=("a",), port=2222)
    for cls in (SharedStager, SSHStager, FluxArchiveStager):
        clone = pickle.loads(pickle.dumps(cls(settings)))
        assert type(clone) is cls and clone.settings == settings
