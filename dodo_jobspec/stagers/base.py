"""The stager contract: make files present on every node a task runs on, and copy them back.

A stager is chosen by name (entry-point group ``dodo_jobspec.stagers``). It is built from a
:class:`StagerSettings` and used as a context manager. Connections are opened lazily inside
:meth:`Stager.put` / :meth:`Stager.get` and dropped when a stager is pickled, so a stager never
carries a live connection across a process boundary.
"""

from __future__ import annotations

import os
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from ..errors import EXIT_FAILED, JobspecError
from ..paths import check_inside as check_inside  # re-exported for plugins

#: ``progress(node, path, bytes_done, bytes_total)``, called during large transfers.
ProgressCallback = Callable[[str, str, int, int], None]

#: Files at least this large get progress reports (smaller ones finish before anyone looks).
PROGRESS_MIN_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class StageItem:
    """One file or directory to stage.

    ``source`` is the local path; ``dest`` the path on each node (relative paths are relative
    to the stager's remote root, or the login directory). ``{host}`` in ``dest`` is replaced by
    the node's host name, for node-local scratch directories that differ per node.
    """

    source: Path
    dest: str


@dataclass(frozen=True)
class StagerSettings:
    """How to reach the nodes, and how hard to try.

    ``progress`` is either a flag (print one throttled line to stderr; the caller sets it when
    stderr is a terminal) or a callback that receives every progress update instead.
    """

    nodes: tuple[str, ...] = ()
    port: int = 22
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    trust_unknown_hosts: bool = False
    parallel: int = 8
    retries: int = 3  # re-tries after the first attempt, transient errors only
    progress: bool | ProgressCallback = False
    remote_root: str = ""  # relative dests are placed under it; may contain {host}
    connect_timeout: float = 10.0
    backoff: float = 0.5  # first retry delay in seconds; doubles each time, capped at 8 s

    @property
    def known_hosts_path(self) -> Path:
        """The known_hosts file used for strict host-key checking."""
        if self.known_hosts is not None:
            return self.known_hosts
        return Path(os.path.expanduser("~/.ssh/known_hosts"))


@dataclass
class NodeReport:
    """What one stage operation did on one node."""

    node: str
    sent: list[str] = field(default_factory=list)  # remote paths written (fully or resumed)
    skipped: list[str] = field(default_factory=list)  # remote paths already up to date
    resumed: list[str] = field(default_factory=list)  # subset of ``sent`` that was resumed
    bytes_sent: int = 0
    attempts: int = 1

    @property
    def files_sent(self) -> int:
        """Number of files written on this node."""
        return len(self.sent)

    @property
    def files_skipped(self) -> int:
        """Number of files left alone because they were unchanged."""
        return len(self.skipped)


@dataclass
class StageReport:
    """Per-node results of :meth:`Stager.put` or :meth:`Stager.get`."""

    nodes: dict[str, NodeReport] = field(default_factory=dict)

    def node(self, name: str) -> NodeReport:
        """The report of ``name``, created empty on first use."""
        if name not in self.nodes:
            self.nodes[name] = NodeReport(name)
        return self.nodes[name]

    @property
    def files_sent(self) -> int:
        """Files written, summed over nodes."""
        return sum(r.files_sent for r in self.nodes.values())

    @property
    def files_skipped(self) -> int:
        """Files skipped as unchanged, summed over nodes."""
        return sum(r.files_skipped for r in self.nodes.values())

    @property
    def bytes_sent(self) -> int:
        """Bytes written, summed over nodes."""
        return sum(r.bytes_sent for r in self.nodes.values())

    def summary(self) -> str:
        """One short line for logs: per node, files sent (bytes) and files unchanged."""
        return "; ".join(f"{n}: {r.files_sent} sent ({r.bytes_sent} bytes), "
                         f"{r.files_skipped} unchanged" for n, r in self.nodes.items())

    def __str__(self) -> str:
        return self.summary() or "nothing to stage"


class StagingError(JobspecError):
    """Staging failed. ``node`` names the node (``host:port``) when one node is to blame.

    ``transient`` says whether trying again later may help (a node that is down or slow), as
    opposed to errors that need a fix (authentication, host keys, missing files).
    """

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, node: str | None = None, transient: bool = False,
                 attempts: int = 1, report: StageReport | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.transient = transient
        self.attempts = attempts
        self.report = report  # what the other nodes got, when only some failed


class Stager(ABC):
    """Base of every stager plugin."""

    name: ClassVar[str]
    #: Whether this stager works from inside the job, on the nodes the scheduler gave it.
    #: Such a stager writes a script with :meth:`job_script` before the task is submitted;
    #: the transformer runs it in the job before the task's command.
    in_job: ClassVar[bool] = False

    def __init__(self, settings: StagerSettings) -> None:
        self.settings = settings

    def job_script(self, items: Sequence[StageItem], record: str) -> str:
        """For an ``in_job`` stager: a bash script that stages ``items`` to every node of the
        job it runs in, sends only what changed, and appends what it did to ``record``."""
        raise NotImplementedError(f"the {self.name} stager stages before the job, not in it")

    @abstractmethod
    def put(self, items: Sequence[StageItem]) -> StageReport:
        """Make every item present on every node (directories recursively, modes kept)."""

    @abstractmethod
    def get(self, items: Sequence[StageItem]) -> StageReport:
        """Copy every item's ``dest`` back from the first node to its local ``source``."""

    def close(self) -> None:  # noqa: B027 - optional hook: stagers without connections skip it
        """Release connections; the stager can still be used (it reconnects lazily)."""

    def __enter__(self) -> Stager:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        # Only the settings travel to another process; connections are rebuilt there.
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])  # type: ignore[misc]


def walk(source: Path) -> Iterator[tuple[Path, str, bool]]:
    """Yield ``(local path, relative posix path, is_dir)`` for ``source`` and, for a directory,
    everything below it (directories before their contents; symlinks followed, loops cut)."""
    if not source.is_dir():
        yield source, "", False
        return
    yield source, "", True
    seen = {source.resolve()}
    for dirpath, dirnames, filenames in os.walk(source, followlinks=True):
        here = Path(dirpath)
        rel_here = here.relative_to(source).as_posix()
        kept = []
        for d in sorted(dirnames):
            real = (here / d).resolve()
            if real in seen:  # a symlink back up the tree: staging it would never end
                continue
            seen.add(real)
            kept.append(d)
            yield here / d, posixpath.normpath(posixpath.join(rel_here, d)), True
        dirnames[:] = kept
        for f in sorted(filenames):
            yield here / f, posixpath.normpath(posixpath.join(rel_here, f)), False


def remote_path(settings: StagerSettings, dest: str, host: str) -> str:
    """The path of ``dest`` on ``host``: under ``remote_root`` if relative, ``{host}`` filled.

    A relative ``dest`` stays under ``remote_root``: one whose ``..`` components lead out of
    it (``../../data.txt``) is a StagingError. An absolute ``dest`` is taken as written."""
    path = dest.replace("{host}", host)
    if settings.remote_root and not posixpath.isabs(path):
        root = posixpath.normpath(settings.remote_root.replace("{host}", host))
        path = posixpath.normpath(posixpath.join(root, path))
        if path != root and not path.startswith(root.rstrip("/") + "/"):
            raise StagingError(f"'{dest}' leads outside the remote root {root} on {host} "
                               f"(to {path}): use a path inside it, or an absolute one")
        return path
    return posixpath.normpath(path) if path else path


def remote_root(settings: StagerSettings, host: str) -> str | None:
    """``remote_root`` on ``host``, normalised; None when there is none."""
    if not settings.remote_root:
        return None
    return posixpath.normpath(settings.remote_root.replace("{host}", host))
