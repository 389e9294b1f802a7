"""Path containment."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec.paths import OutsideError, check_inside


def test_check_inside(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "inner").symlink_to(root / "sub")
    assert check_inside(root, "sub/x.sh") == (root / "sub" / "x.sh").resolve()
    assert check_inside(root, "inner/x.sh") == (root / "sub" / "x.sh").resolve()
    assert check_inside(root, "sub/../y") == (root / "y").resolve()
    with pytest.raises(OutsideError, match=r"`\.\.` components lead outside"):
        check_inside(root, "../x.sh")
    with pytest.raises(OutsideError, match="a symlink leads outside"):
        check_inside(root, "link/x.sh")
    with pytest.raises(OutsideError, match="absolute path"):
        check_inside(root, "/etc/passwd")
