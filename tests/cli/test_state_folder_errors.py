"""A state folder that cannot be made or written: one line naming it and the fix, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import jobspec_do, write
from tests.mounts import remount_read_only, tmpfs

SPEC = "version: 1\ntasks: [{name: a, command: 'true'}]\n"


def _one_clear_line(done, folder: str, what: str) -> None:  # type: ignore[no-untyped-def]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"jobspec-do: error: state folder {folder} {what}"), lines[0]
    assert "--state-dir DIR" in lines[0]


@pytest.mark.parametrize("command", [(), ("--force", "a"), ("status",), ("clean",)])
def test_a_state_dir_naming_a_file(tmp_path: Path, command: tuple[str, ...]) -> None:
    spec = write(tmp_path, SPEC)
    (tmp_path / "afile").write_text("")
    args = [*command[:1], str(spec), *command[1:]] if command[:1] in (("status",), ("clean",)) \
        else [str(spec), *command]
    _one_clear_line(jobspec_do(*args, "--state-dir", "afile", cwd=tmp_path), "afile",
                    "cannot be a folder: afile is a file")


@pytest.mark.parametrize("command", [(), ("status",)])
def test_a_state_dir_under_a_file(tmp_path: Path, command: tuple[str, ...]) -> None:
    spec = write(tmp_path, SPEC)
    _one_clear_line(jobspec_do(*command, spec, "--state-dir", "/dev/null/x", cwd=tmp_path),
                    "/dev/null/x", "cannot be a folder")


def test_a_read_only_state_folder(tmp_path: Path) -> None:
    """A new folder on a read-only mount, an existing one (--force and clean)."""
    spec = write(tmp_path, SPEC)
    with tmpfs(tmp_path / "ro") as ro:
        assert jobspec_do(spec, "--state-dir", ro / "st", cwd=tmp_path).returncode == 0
        remount_read_only(ro)
        # Up to date: the no-op answer only reads, and a read-only folder is fine for that.
        assert jobspec_do(spec, "--state-dir", ro / "st", cwd=tmp_path).returncode == 0
        for args in ([spec, "--force", "a"], ["clean", spec]):
            _one_clear_line(jobspec_do(*args, "--state-dir", ro / "st", cwd=tmp_path),
                            str(ro / "st"), "is on a read-only file system")
        _one_clear_line(jobspec_do(spec, "--state-dir", ro / "new", cwd=tmp_path),
                        str(ro / "new"), "is on a read-only file system")
