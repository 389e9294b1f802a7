"""What other specs of the folder say they write is untrusted input: no link followed, no
unbounded read, and only a state folder of a spec that still exists here counts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dodo_jobspec.records import claims

MINE = {"/p/out.txt": None}


def _sibling(folder: Path, stem: str, files: dict[str, str | None], owner: str | None = None
             ) -> Path:
    """A state folder of spec ``stem``.yaml in ``folder`` claiming ``files``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / f"{stem}.yaml"
    spec.write_text("version: 1\n")
    state = folder / ".jobspec-do" / stem
    state.mkdir(parents=True)
    (state / "spec").write_text((owner or str(spec)) + "\n")
    (state / claims.CLAIMS).write_text(json.dumps({"format": 1, "files": files}))
    return state


def _found(folder: Path, files: dict[str, str | None]) -> list[str]:
    me = folder / "me.yaml"
    me.write_text("version: 1\n")
    return [os.path.basename(c.spec)
            for c in claims.others(me, folder / ".jobspec-do" / "me", files)]


def test_a_claim_is_found_and_the_same_bytes_are_no_clash(tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    _sibling(tmp_path, "a", {out: None})
    _sibling(tmp_path, "b", {out: "d1"})
    assert _found(tmp_path, {out: "d1"}) == ["a.yaml"]  # b writes the same bytes
    assert _found(tmp_path, {out: "d2"}) == ["a.yaml", "b.yaml"]
    assert _found(tmp_path, {str(tmp_path / "other"): None}) == []


def test_links_and_strange_files_are_passed_over(tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    # A real state folder elsewhere whose owner file names c.yaml of this folder: only the
    # link in its place stands between it and a claim.
    real = _sibling(tmp_path / "elsewhere", "c", {out: None}, owner=str(tmp_path / "c.yaml"))
    (tmp_path / ".jobspec-do").mkdir()
    os.symlink(real, tmp_path / ".jobspec-do" / "c")  # a state folder that is a link
    (tmp_path / "c.yaml").write_text("version: 1\n")
    d = _sibling(tmp_path, "d", {})
    (d / claims.CLAIMS).unlink()
    os.symlink(real / claims.CLAIMS, d / claims.CLAIMS)  # a claims file that is a link
    e = _sibling(tmp_path, "e", {})
    (e / claims.CLAIMS).unlink()
    os.mkfifo(e / claims.CLAIMS)  # would block a plain open()
    f = _sibling(tmp_path, "f", {})
    (f / claims.CLAIMS).write_bytes(b" " * (claims.MAX_CLAIMS + 1))  # bounded: not read
    assert _found(tmp_path, {out: None}) == []


def test_only_a_spec_of_this_folder_that_still_exists_counts(tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    (elsewhere / "g.yaml").write_text("version: 1\n")
    _sibling(tmp_path, "g", {out: None}, owner=str(elsewhere / "g.yaml"))  # another folder's
    _sibling(tmp_path, "h", {out: None}, owner=str(tmp_path / "x.yaml"))  # not its folder
    (tmp_path / "x.yaml").write_text("version: 1\n")
    gone = _sibling(tmp_path, "i", {out: None})
    (tmp_path / "i.yaml").unlink()  # renamed or deleted: its claim went with it
    linked = _sibling(tmp_path, "j", {out: None})
    (tmp_path / "j.yaml").unlink()
    os.symlink(tmp_path / "x.yaml", tmp_path / "j.yaml")  # a link now: state kept elsewhere
    assert gone.is_dir() and linked.is_dir()
    assert _found(tmp_path, {out: None}) == []
    # The spec's own folder (and one naming it as owner) is never a clash with itself.
    me = tmp_path / "me.yaml"
    _sibling(tmp_path, "me", {out: None})
    assert claims.others(me, tmp_path / "custom-state", {out: None}) == []


def test_record_writes_once_and_reads_back(tmp_path: Path) -> None:
    claims.record(tmp_path, MINE)
    first = os.stat(tmp_path / claims.CLAIMS).st_ino
    claims.record(tmp_path, MINE)  # unchanged: not rewritten
    assert os.stat(tmp_path / claims.CLAIMS).st_ino == first
    claims.record(tmp_path, {"/p/other": "d"})
    assert json.loads((tmp_path / claims.CLAIMS).read_text())["files"] == {"/p/other": "d"}
