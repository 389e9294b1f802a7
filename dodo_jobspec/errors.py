"""Errors that jobspec-do reports to users, and the exit codes they map to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Exit codes, documented in the README and `jobspec-do --help`.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75
EXIT_INTERRUPTED = 130

PathPart = str | int


def format_path(path: Sequence[PathPart]) -> str:
    """Render a spec path like ``tasks[1].attributes.environment``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate closest to ``word`` (a likely typo fix), if any is close."""
    import difflib  # here, not at the top: a no-op re-run never needs it

    names = [c for c in candidates if isinstance(c, str)]
    hits = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if not hits:
        # Prefix or containment catches long names that difflib scores low.
        hits = [c for c in names if c.startswith(word) or word.startswith(c)][:1]
    return hits[0] if hits else None


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a spec: where it is, what is wrong, and how to fix it."""

    message: str
    path: tuple[PathPart, ...] = ()
    hint: str | None = None
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def render(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {format_path(self.path)}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class JobspecError(Exception):
    """Base of every error jobspec-do reports without a traceback."""

    exit_code = EXIT_USAGE


@dataclass
class SpecError(JobspecError):
    """A spec that cannot be used; carries every problem found, not only the first."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class PluginError(JobspecError):
    """A transformer or stager that is unknown, broken, or asked for something it cannot do."""


class UnsatisfiableError(JobspecError):
    """A request that no node of the chosen target can satisfy (found before submitting)."""


class StateError(JobspecError):
    """The state directory is unusable (unreadable records, wrong layout)."""


class LockedError(JobspecError):
    """Another jobspec-do run holds the state directory."""

    exit_code = EXIT_LOCKED
