"""The package's layers, as ARCHITECTURE.md draws them: each module imports only what its
package's row allows, and doit stays inside engine/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dodo_jobspec"
ROOT_NAMES = {"__version__", "JSON_FORMAT"}


def _rules() -> dict[str, set[str]]:
    rows = {}
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        m = re.match(r"^\| `([\w/]+)` \|[^|]*\|([^|]*)\|$", line)
        if m:
            rows[m.group(1)] = {x.strip() for x in m.group(2).split(",") if x.strip()}
    return rows


def _room(dotted: str) -> str:
    """``spec.model`` -> ``spec/``; ``plan`` -> ``plan``."""
    head = dotted.split(".")[0]
    return f"{head}/" if (PKG / head).is_dir() else head


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module relative to the package) for each package-internal import."""
    rel = path.relative_to(PKG).with_suffix("").parts
    package = list(rel if path.name == "__init__.py" else rel[:-1])
    if path.name == "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            if node.module:
                out.append((node.lineno, ".".join([*base, node.module])))
            else:
                out += [(node.lineno, ".".join([*base, a.name])) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dodo_jobspec."):
            out.append((node.lineno, node.module.removeprefix("dodo_jobspec.")))
    return out


def test_the_table_covers_every_package() -> None:
    rules = _rules()
    rooms = {_room(p.relative_to(PKG).with_suffix("").as_posix().replace("/", "."))
             for p in PKG.rglob("*.py") if p.parent != PKG or p.name != "__init__.py"}
    assert rooms <= set(rules), f"rows missing in ARCHITECTURE.md: {rooms - set(rules)}"


def test_every_import_is_allowed_by_its_row() -> None:
    rules = _rules()
    wrong = []
    for path in sorted(PKG.rglob("*.py")):
        if path.parent == PKG and path.name == "__init__.py":
            continue
        own = _room(path.relative_to(PKG).with_suffix("").as_posix().replace("/", "."))
        for line, target in _imports(path):
            if target in ROOT_NAMES or target == "":
                continue
            room = _room(target)
            if room != own and room not in rules[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({room})")
    assert not wrong, "imports the ARCHITECTURE.md table does not allow:\n" + "\n".join(wrong)


def test_no_two_packages_import_each_other() -> None:
    rules = _rules()
    seen: dict[str, int] = {}

    def visit(room: str, stack: tuple[str, ...]) -> None:
        assert room not in stack, f"import circle: {' -> '.join([*stack, room])}"
        if seen.get(room):
            return
        for nxt in rules.get(room, ()):
            visit(nxt, (*stack, room))
        seen[room] = 1

    for room in rules:
        visit(room, ())


def test_only_the_engine_imports_doit() -> None:
    found = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "doit" or n.startswith("doit.") for n in names):
                found.append(path.relative_to(PKG).parts[0])
    assert found and set(found) == {"engine"}


def test_the_checker_catches_a_forbidden_import() -> None:
    """The checker itself: a spec/ module importing the engine is reported."""
    bad = PKG / "spec" / "_layer_probe.py"
    bad.write_text("from ..engine import run\n")
    try:
        try:
            test_every_import_is_allowed_by_its_row()
        except AssertionError as exc:
            assert "spec/_layer_probe.py:1 imports engine (engine/)" in str(exc)
        else:
            raise AssertionError("a spec/ -> engine/ import was not reported")
    finally:
        bad.unlink()
