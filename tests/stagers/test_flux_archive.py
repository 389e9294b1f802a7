"""The flux-archive stager: its exact commands (golden), its cleanup, and a live run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from dodo_jobspec.stagers.base import StageItem, StagerSettings, StagingError
from dodo_jobspec.stagers.flux_archive import FluxArchiveStager
from tests.services import FluxInstance

REPO = Path(__file__).resolve().parents[2]


class Recorder:
    """A fake runner: records every argv; fails the commands whose argv contains ``fail``."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        if self.fail is not None and self.fail in argv:
            return 1, "", f"flux-archive: {self.fail} went wrong"
        return 0, "", ""


def _stager(runner: Recorder) -> FluxArchiveStager:
    s = FluxArchiveStager(StagerSettings(), runner=runner)
    s.archive_name = lambda: "jobspec-do-test"
    return s


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "job.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "data" / "in.txt").write_text("1234")
    return src


def test_put_runs_exactly_these_commands(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    rec = Recorder()
    report = _stager(rec).put([StageItem(src / "job.sh", "/scratch/run/job.sh"),
                               StageItem(src / "data", "/scratch/run/data")])
    assert rec.calls == [
        ["flux", "archive", "create", "--name", "jobspec-do-test", "-C", str(src.resolve()),
         "job.sh", "data"],
        ["flux", "exec", "-r", "all", "mkdir", "-p", "--", "/scratch/run"],
        ["flux", "exec", "-r", "all", "flux", "archive", "extract", "--name",
         "jobspec-do-test", "--overwrite", "-C", "/scratch/run", "--waitcreate"],
        ["flux", "archive", "remove", "--name", "jobspec-do-test"],
    ]
    node = report.nodes["all ranks"]
    assert sorted(node.sent) == ["/scratch/run/data/in.txt", "/scratch/run/job.sh"]
    assert node.bytes_sent == 18 + 4


def test_one_archive_per_source_and_destination_directory(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    rec = Recorder()
    _stager(rec).put([StageItem(src / "job.sh", "/a/job.sh"),
                      StageItem(src / "data" / "in.txt", "/b/in.txt")])
    creates = [c for c in rec.calls if c[:3] == ["flux", "archive", "create"]]
    removes = [c for c in rec.calls if c[:3] == ["flux", "archive", "remove"]]
    assert [c[-3:] for c in creates] == [["-C", str(src.resolve()), "job.sh"],
                                         ["-C", str((src / "data").resolve()), "in.txt"]]
    assert len(removes) == 2


def test_remove_runs_even_when_extract_fails(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    rec = Recorder(fail="extract")
    with pytest.raises(StagingError, match="could not extract the archive on every rank"):
        _stager(rec).put([StageItem(src / "job.sh", "/scratch/job.sh")])
    assert rec.calls[-1] == ["flux", "archive", "remove", "--name", "jobspec-do-test"]


def test_a_racing_extract_on_a_shared_filesystem_is_done_rank_by_rank(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    calls: list[list[str]] = []

    def runner(argv: Sequence[str]) -> tuple[int, str, str]:
        calls.append(list(argv))
        if argv[:4] == ["flux", "exec", "-r", "all"] and "extract" in argv:
            return 1, "", "flux-archive: job.sh: Can't unlink already-existing object\n2: Exit 1"
        return 0, "2\n" if argv[:2] == ["flux", "getattr"] else "", ""

    report = _stager(runner).put([StageItem(src / "job.sh", "/scratch/job.sh")])  # type: ignore[arg-type]
    by_rank = [c[3] for c in calls if c[:2] == ["flux", "exec"] and "extract" in c]
    assert by_rank == ["all", "0", "1"]
    assert report.nodes["all ranks"].sent == ["/scratch/job.sh"]


def test_remove_runs_even_when_create_fails(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    rec = Recorder(fail="create")
    with pytest.raises(StagingError, match="went wrong"):
        _stager(rec).put([StageItem(src / "job.sh", "/scratch/job.sh")])
    assert [c[2] for c in rec.calls] == ["create", "remove"]


def test_get_archives_on_rank_0_and_extracts_here(tmp_path: Path) -> None:
    rec = Recorder()
    back = tmp_path / "back" / "out.txt"
    with pytest.raises(FileNotFoundError):
        # The fake runner extracts nothing, so reporting the copied file fails; the commands
        # are what this test pins.
        _stager(rec).get([StageItem(back, "/scratch/out.txt")])
    assert rec.calls == [
        ["flux", "exec", "-r", "0", "flux", "archive", "create", "--name", "jobspec-do-test",
         "-C", "/scratch", "out.txt"],
        ["flux", "archive", "extract", "--name", "jobspec-do-test", "--overwrite", "-C",
         str(back.parent), "--waitcreate"],
        ["flux", "archive", "remove", "--name", "jobspec-do-test"],
    ]


def test_renaming_and_missing_sources_are_refused(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    rec = Recorder()
    with pytest.raises(StagingError, match="cannot rename"):
        _stager(rec).put([StageItem(src / "job.sh", "/scratch/other.sh")])
    with pytest.raises(StagingError, match="stage source not found"):
        _stager(rec).put([StageItem(src / "nope", "/scratch/nope")])
    assert rec.calls == []


_LIVE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from dodo_jobspec.stagers.base import StageItem
    from dodo_jobspec.stagers.flux_archive import FluxArchiveStager
    src, dest = Path(sys.argv[1]), sys.argv[2]
    with FluxArchiveStager() as s:
        first = s.put([StageItem(src / "job.sh", dest + "/job.sh"),
                       StageItem(src / "data", dest + "/data")])
        # Twice: the second extract overwrites on the shared filesystem.
        second = s.put([StageItem(src / "job.sh", dest + "/job.sh")])
    print(json.dumps([first.files_sent, second.files_sent]))
""")


def test_live_flux_instance(tmp_path: Path, flux: FluxInstance) -> None:
    """Staged through the session's 4-broker instance (tests/services.py): every rank has it."""
    src = _tree(tmp_path)
    (src / "job.sh").chmod(0o755)
    dest = tmp_path / "dest"
    cmd = [sys.executable, "-c", _LIVE, str(src), str(dest)]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [2, 1]
    assert (dest / "job.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert (dest / "job.sh").stat().st_mode & 0o111
    assert (dest / "data" / "in.txt").read_text() == "1234"
    # Each broker rank reads the files itself (here they share one filesystem).
    seen = flux.run("exec", "-r", "all", "-l", "sh", "-c",
                    f"cat {dest}/data/in.txt; echo").stdout
    assert sorted(seen.splitlines()) == [f"{rank}: 1234" for rank in range(flux.brokers)]
