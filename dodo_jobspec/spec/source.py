"""Read a spec file into plain data, and find where a spec path sits in it (line, column).

Loading is the hot path of every run, so it uses libyaml's C loader without position tracking.
Positions are only needed when something is wrong; then the file is composed a second time into
YAML nodes, which carry marks, and the failing path is looked up there.
"""

from __future__ import annotations

import gc
import hashlib
import json
import marshal
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PathPart, Problem, SpecError

if TYPE_CHECKING:  # PyYAML is imported when a file is parsed, not when the cache answers
    import yaml

    from . import yamldata


@cache
def _yaml() -> tuple[Any, type]:
    """PyYAML and its loader: libyaml's C loader where PyYAML has it (the pure-Python one
    gives the same data, slower)."""
    import yaml

    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No automatic cyclic garbage collection inside: for code that builds a large graph of
    objects that all stay alive (a parsed spec, its resolved model, a plan).

    Each automatic collection walks every live object again, so building N objects costs
    N^2: PyYAML loading 100,000 tasks took 12 s with collections and 2.5 s without. Nothing
    here makes cyclic garbage worth collecting; the previous setting is restored.

    What was allocated meanwhile is then moved to the oldest generation (freeze + unfreeze,
    two list splices): otherwise the first allocation after re-enabling would walk all of it
    at once, as one young collection. (Not if someone else froze objects: unfreeze would
    undo that.)"""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed spec file: its data and where it came from."""

    path: Path
    text: str
    data: Any
    # The SHA-1 of the file's bytes when the parse cache is on (see ``_cached``): what other
    # results computed from this content alone may be remembered under (validate.py).
    key: str | None = None
    # A translated 0.0.x file (legacy.py): where a translated step came from, by its rendered
    # path ("tasks[1].steps[0]" -> "task.transform[2].filename"), so that what is said of
    # the step points at the file's own line.
    origins: Mapping[str, str] | None = None

    def locate(self, path: Sequence[PathPart]) -> tuple[int | None, int | None]:
        """Return the 1-based (line, column) of the value at ``path``, or of its nearest parent."""
        return locate(self.text, path)

    def problem(self, message: str, path: Sequence[PathPart], hint: str | None = None,
                *, at_key: bool = False) -> Problem:
        """Build a Problem that names this file and the line of ``path``."""
        line, col = locate(self.text, path, at_key=at_key)
        return Problem(message, tuple(path), hint, str(self.path), line, col)


def read_document(path: str | Path) -> Document:
    """Read and parse a spec file; raise SpecError (never a traceback) if that fails.

    Parsed data is cached by content (see ``_cached``): YAML parsing is most of the cost of
    loading a large spec, and the same content is loaded again and again."""
    p = Path(path)
    name = str(p)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecError([Problem("file not found", (), None, name)]) from None
    except IsADirectoryError:
        raise SpecError([Problem("is a directory, not a spec file", (), None, name)]) from None
    except OSError as exc:
        raise SpecError([Problem(f"cannot read: {exc.strerror}", (), None, name)]) from None
    return _cached(raw, name)


def _cache_dir() -> Path | None:
    if os.environ.get("JOBSPEC_DO_CACHE", "1") == "0":
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jobspec-do" / "parsed"


# What parse_document accepts: an entry written under other rules is not used (a miss,
# then overwritten). 2: a mapping with a duplicate key is an error (format 1, unmarked, took
# the last value, so an old entry may hold content that no longer parses).
_CACHE_FORMAT = 2


def _cached(raw: bytes, name: str) -> Document:
    """parse_document, remembered by the SHA-1 of the bytes (a marshal file per content).

    Only well-formed mappings are cached; anything marshal cannot hold (YAML timestamps,
    binary) is simply not cached. A cache that cannot be written is silently skipped."""
    folder = _cache_dir()
    if folder is None or len(raw) < 4096:  # small files parse faster than a cache lookup
        return parse_document(raw, name)
    key = hashlib.sha1(raw).hexdigest()
    path = folder / f"{key}.marshal"
    try:
        with open(path, "rb") as fh:
            form, text, data = marshal.load(fh)
        if form == _CACHE_FORMAT:
            return Document(Path(name), text, data, key)
    except (OSError, ValueError, EOFError, TypeError):
        pass
    doc = parse_document(raw, name)
    doc = Document(doc.path, doc.text, doc.data, key)
    try:
        blob = marshal.dumps((_CACHE_FORMAT, doc.text, doc.data))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
        _prune(folder)
    except (OSError, ValueError):
        pass
    return doc


def _prune(folder: Path, keep: int = 64) -> None:
    """Keep the cache small: the most recently written ``keep`` entries, and the results
    remembered for their content (``<key>.<what>`` files, see ``remembered``)."""
    entries = sorted(folder.glob("*.marshal"), key=lambda p: p.stat().st_mtime)
    for old in entries[:-keep]:
        old.unlink(missing_ok=True)
    kept = {p.stem for p in entries[-keep:]}
    for other in folder.iterdir():
        if other.suffix != ".marshal" and other.name.split(".", 1)[0] not in kept:
            other.unlink(missing_ok=True)


def remembered(doc: Document, what: str) -> str | None:
    """The cache file that says ``what`` holds for ``doc``'s content (None: no cache).

    For facts that depend on the bytes of the file alone (e.g. "valid against schema X"):
    the file exists once ``remember`` wrote it; it is pruned with the content's entry."""
    folder = _cache_dir() if doc.key else None
    return None if folder is None else os.path.join(folder, f"{doc.key}.{what}")


def remember(marker: str) -> None:
    """Create the file ``remembered`` named; a cache that cannot be written is skipped."""
    try:
        with open(marker, "wb"):
            pass
    except OSError:
        pass


def parse_document(raw: bytes, name: str = "<spec>") -> Document:
    """Parse spec bytes (YAML or JSON) into a Document."""
    if b"\x00" in raw:
        raise SpecError([Problem("this is a binary file, not a YAML or JSON spec", (), None, name,
                                 None, None)])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError([Problem(f"not valid UTF-8 text (byte {exc.start})", (),
                                 "save the file as UTF-8", name, line)]) from None
    if not text.strip():
        raise SpecError([Problem("the file is empty", (),
                                 "a spec needs at least `version: 1` and some `tasks:`", name, 1)])
    yaml, loader = _yaml()
    from . import yamldata  # imports PyYAML: only when there is something to parse

    try:
        with paused_gc():
            aliased: list[bool] = []
            data = yamldata.load(text, loader, aliased)
    except yamldata.DuplicateKeyError as exc:
        raise SpecError([_duplicate_problem(e, name) for e in (exc, *exc.also)]) from None
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_yaml_problem(exc, name)]) from None
    except yaml.reader.ReaderError as exc:  # a control character: a position, no mark
        head = text[:exc.position]
        line, col = head.count("\n") + 1, exc.position - (head.rfind("\n") + 1) + 1
        raise SpecError([Problem(
            f"control character U+{_code(exc.character):04X} is not allowed in YAML", (),
            "remove it (control characters other than tab and newline cannot appear, even "
            "quoted); write it as an escape like \\x01 inside a double-quoted string",
            name, line, col)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        raise SpecError([Problem(f"YAML error: {exc}", (), None, name)]) from None
    from . import aliases

    try:
        if aliased and aliased[0]:  # no alias, nothing shared: the common case costs nothing
            aliases.check(data)
    except aliases.AliasProblem as exc:
        line, col = locate(text, exc.path)
        raise SpecError([Problem(str(exc), exc.path, exc.hint, name, line, col)]) from None
    if data is None:  # only comments (or `---`): no document at all
        raise SpecError([Problem("the file holds only comments, no spec", (),
                                 "a spec needs at least `version: 1` and some `tasks:`", name, 1)])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {_KINDS.get(type(data), 'value')}"
        raise SpecError([Problem(f"the document is {kind}, but a spec must be a mapping", (),
                                 "start the file with `version: 1` at the left margin", name, 1)])
    return Document(Path(name), text, data)


_KINDS = {str: "string", int: "number", float: "number", bool: "true/false value"}


def _code(character: int | str) -> int:
    """PyYAML's ReaderError holds the character (str), or its code (int) for a bad byte."""
    return character if isinstance(character, int) else ord(character[:1] or "\0")


def _duplicate_problem(exc: yamldata.DuplicateKeyError, name: str) -> Problem:
    mark = exc.problem_mark
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    first = exc.first_mark.line + 1 if exc.first_mark else None
    where = f"on line {first}" if first != line else "earlier on this line"
    same = "" if exc.first_key == exc.key else " (the same key to YAML)"
    hint = (f"`{exc.first_key}` is already set {where}{same}; remove one of them "
            "(YAML would silently keep only the last)")
    return Problem(f"duplicate key '{exc.key}'", exc.path, hint, name, line, col)


def _yaml_problem(exc: yaml.MarkedYAMLError, name: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    what = exc.problem or "invalid YAML"
    if exc.context:
        what = f"{exc.context}, {what}"
    hint = "check the indentation here and on the line above"
    start = exc.context_mark
    if "end of stream" in what and start is not None and "quoted scalar" in what:
        # The quote never closed: where it opened is what to fix, not the end of the file.
        line, col = start.line + 1, start.column + 1
        what = f"a quoted string that starts here is never closed ({exc.problem})"
        hint = "close the quote on the same line, or escape a quote inside it"
    elif "tab" in what:
        hint = "YAML does not allow tabs for indentation; use spaces"
    elif "mapping values are not allowed" in what:
        hint = ("a `key: value` appears where YAML expects a list item or a deeper indent; "
                "check that keys under the same parent line up")
    return Problem(f"YAML syntax error: {what}", (), hint, name, line, col)


def locate(text: str, path: Sequence[PathPart], *, at_key: bool = False
           ) -> tuple[int | None, int | None]:
    """Find the 1-based line and column of ``path`` in YAML ``text`` (nearest parent if absent)."""
    node = _compose(text)
    if node is None:
        return None, None
    yaml, _ = _yaml()
    mark = node.start_mark
    for i, part in enumerate(path):
        last = i == len(path) - 1
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part) or _scalar_equals(key, part):
                    child = value
                    if last and at_key:
                        mark = key.start_mark
                        return mark.line + 1, mark.column + 1
                    if not isinstance(value, yaml.ScalarNode) or value.value != "":
                        mark = value.start_mark
                    else:
                        mark = key.start_mark
                    break
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and 0 <= part < len(node.value)):
            child = node.value[part]
            mark = child.start_mark
        if child is None:
            break
        node = child
    return mark.line + 1, mark.column + 1


def scalar_text(text: str, path: Sequence[PathPart]) -> str | None:
    """The text of the scalar at ``path`` as written (``010``, ``1.10``, ``yes``), before
    YAML read it as a number or a boolean; None if there is no scalar there."""
    yaml, _ = _yaml()
    node = _compose(text)
    for part in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value
                         if k.value == str(part) or _scalar_equals(k, part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node.value if isinstance(node, yaml.ScalarNode) else None


@lru_cache(maxsize=4)
def _compose(text: str) -> yaml.Node | None:
    # Cached: one bad spec usually yields several problems, each needing a lookup.
    yaml, loader = _yaml()
    try:
        with paused_gc():
            return yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return None


def _scalar_equals(key: yaml.Node, part: PathPart) -> bool:
    yaml, _ = _yaml()
    return isinstance(key, yaml.ScalarNode) and json.dumps(key.value) == json.dumps(str(part))
