"""Stage files to a list of nodes over SSH (paramiko SFTP), all nodes in parallel.

Design notes:

* One connection per node, opened lazily inside :meth:`SSHStager.put` / :meth:`SSHStager.get`
  in the worker thread, cached until :meth:`SSHStager.close`, and never pickled.
* Host keys are checked strictly against known_hosts. An unknown host is an error that says how
  to trust it; the key is accepted (in memory only) just when ``trust_unknown_hosts`` is set.
* Unchanged files are skipped: remote ``sha256sum`` (one call per directory) against the local
  sha256, or size + mtime where the node has no ``sha256sum`` (sent files get the local mtime,
  so that fallback works).
* A remote file that is a prefix of the local one (an interrupted transfer) is completed rather
  than sent again; other files are written under a temporary name and renamed, so a half-sent
  file never looks complete.
* Transient errors (refused or reset connections, timeouts, SSH protocol errors) are retried
  with exponential backoff; authentication and host-key failures are not.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import getpass
import hashlib
import os
import posixpath
import shlex
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from .base import (
    PROGRESS_MIN_BYTES,
    NodeReport,
    ProgressCallback,
    StageItem,
    Stager,
    StageReport,
    StagerSettings,
    StagingError,
    remote_path,
    remote_root,
    walk,
)

CHUNK = 1 << 18  # local read size; paramiko splits it into 32 KiB SFTP writes, pipelined
EXEC_TIMEOUT = 600.0  # a remote sha256sum of a large tree can take a while
MAX_BACKOFF = 8.0
_ARGS_PER_CALL = 64 * 1024  # stay far below the remote ARG_MAX when batching sha256sum
_PART = ".jobspec-do.part"
_NET_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                         errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPIPE,
                         errno.EHOSTDOWN, errno.ENETDOWN})


@dataclass(frozen=True)
class _Node:
    spec: str  # as configured; the key of the node's report
    host: str
    port: int
    user: str

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class _Conn:
    client: paramiko.SSHClient
    sftp: paramiko.SFTPClient
    has_sha256: bool | None = None
    dirs: set[str] = field(default_factory=set)  # remote directories known to exist


@dataclass(frozen=True)
class _Entry:
    local: Path
    rel: str
    is_dir: bool
    size: int
    mode: int
    mtime: float
    mtime_ns: int


class _UnknownHost(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """RejectPolicy that keeps the offered key, so the error can show its fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise _UnknownHost(hostname, key)


class _TrustInMemory(paramiko.MissingHostKeyPolicy):
    """Accept an unknown key for this run only: paramiko's AutoAddPolicy would also write it
    into the known_hosts file, which nobody asked for."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        print(f"jobspec-do: warning: trusting the unchecked {key.get_name()} host key of "
              f"{hostname} ({_fingerprint(key)}) for this run", file=sys.stderr)


class _Progress:
    """One throttled stderr line with bytes done / total per node, or a user callback."""

    def __init__(self, setting: bool | ProgressCallback, interval: float = 0.25) -> None:
        self.callback: ProgressCallback | None = setting if callable(setting) else None
        self.enabled = bool(setting)
        self.interval = interval
        self.state: dict[str, tuple[int, int]] = {}
        self.last = 0.0
        self.width = 0
        self.lock = threading.Lock()

    def update(self, node: str, path: str, done: int, total: int) -> None:
        if not self.enabled or total < PROGRESS_MIN_BYTES:
            return
        with self.lock:
            now = time.monotonic()
            finished = done >= total
            if finished:
                self.state.pop(node, None)
            else:
                self.state[node] = (done, total)
            if not finished and now - self.last < self.interval:
                return
            self.last = now
            if self.callback is not None:
                self.callback(node, path, done, total)
                return
            line = " | ".join(f"{n} {d / 1e6:.1f}/{t / 1e6:.1f} MB"
                              for n, (d, t) in sorted(self.state.items()))
            text = f"staging {line}" if line else ""
            # Pad over the previous line; an empty state clears it instead of leaving it.
            sys.stderr.write("\r" + text.ljust(self.width) + ("" if text else "\r"))
            sys.stderr.flush()
            self.width = len(text)


class SSHStager(Stager):
    """Stage over SSH/SFTP to ``settings.nodes`` (``host``, ``host:port`` or
    ``user@host:port``), in parallel."""

    name: ClassVar[str] = "ssh"

    def __init__(self, settings: StagerSettings) -> None:
        super().__init__(settings)
        self._conns: dict[str, _Conn] = {}
        self._lock = threading.Lock()
        self._node_locks: dict[str, threading.Lock] = {}
        self._hashes: dict[tuple[str, int, int, int], str] = {}
        self._progress = _Progress(settings.progress)

    # -- public ---------------------------------------------------------------------------
    def put(self, items: Sequence[StageItem]) -> StageReport:
        """Send every item to every node; see the module docstring for what is skipped."""
        plan = [(item, self._scan(item.source)) for item in items]
        return self._each_node(self._nodes(), lambda c, n, r: self._put_node(c, n, plan, r))

    def get(self, items: Sequence[StageItem]) -> StageReport:
        """Copy each item's ``dest`` from the first node to its local ``source``."""
        first = self._nodes()[:1]
        return self._each_node(first, lambda c, n, r: self._get_node(c, n, items, r))

    def close(self) -> None:
        """Close every connection (the stager reconnects if used again)."""
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            _close(conn)

    # -- nodes, connections, retries ------------------------------------------------------
    def _nodes(self) -> list[_Node]:
        if not self.settings.nodes:
            raise StagingError("the ssh stager has no nodes to stage to",
                               transient=False)
        return [self._parse(spec) for spec in self.settings.nodes]

    def _parse(self, spec: str) -> _Node:
        user, rest = self.settings.user, spec
        if "@" in rest:
            user, rest = rest.rsplit("@", 1)
        port, host, tail = self.settings.port, rest, ""
        if rest.startswith("["):  # [ipv6]:port
            host, _, tail = rest[1:].partition("]")
            tail = tail.removeprefix(":")
        elif rest.count(":") == 1:
            host, tail = rest.split(":")
        if tail:
            if not tail.isdigit():
                raise StagingError(f"node '{spec}': port '{tail}' is not a number")
            port = int(tail)
        return _Node(spec, host, port, user or getpass.getuser())

    def _each_node(self, nodes: list[_Node],
                   work: Callable[[_Conn, _Node, NodeReport], None]) -> StageReport:
        report = StageReport()
        errors: list[StagingError] = []
        workers = max(1, min(self.settings.parallel, len(nodes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage-ssh") as pool:
            futures = [(n, pool.submit(self._with_retries, n, work)) for n in nodes]
            for node, fut in futures:
                try:
                    report.nodes[node.spec] = fut.result()
                except StagingError as exc:
                    errors.append(exc)
        if len(errors) == 1:
            e = errors[0]
            raise StagingError(str(e), node=e.node, transient=e.transient,
                               attempts=e.attempts, report=report)
        if errors:
            raise StagingError(f"staging failed on {len(errors)} nodes:\n"
                               + "\n".join(f"  {e}" for e in errors),
                               node=", ".join(str(e.node) for e in errors),
                               transient=all(e.transient for e in errors),
                               attempts=max(e.attempts for e in errors), report=report)
        return report

    def _with_retries(self, node: _Node, work: Callable[[_Conn, _Node, NodeReport], None]
                      ) -> NodeReport:
        with self._lock:
            lock = self._node_locks.setdefault(node.spec, threading.Lock())
        delay = self.settings.backoff
        attempt = 0
        with lock:  # one operation per node at a time: the SFTP session is shared
            while True:
                attempt += 1
                rep = NodeReport(node.spec, attempts=attempt)
                try:
                    work(self._connect(node), node, rep)
                    return rep
                except StagingError as exc:
                    exc.attempts = attempt
                    raise
                except Exception as exc:
                    self._drop(node)
                    if not _transient(exc):
                        raise self._fatal(node, exc, attempt) from exc
                    if attempt > self.settings.retries:
                        raise StagingError(
                            f"node {node.label} cannot be reached (gave up after {attempt} "
                            f"attempt{'s' if attempt > 1 else ''}): {_cause(exc)}",
                            node=node.label, transient=True, attempts=attempt) from exc
                time.sleep(min(delay, MAX_BACKOFF))
                delay *= 2

    def _fatal(self, node: _Node, exc: BaseException, attempt: int) -> StagingError:
        kh = self.settings.known_hosts_path
        if isinstance(exc, _UnknownHost):
            msg = (f"host key of node {node.label} is not in {kh} (it offers "
                   f"{exc.key.get_name()} {_fingerprint(exc.key)}); unknown hosts are refused. "
                   f"If you trust this node, check the fingerprint and add it: "
                   f"`ssh-keyscan -p {node.port} {node.host} >> {kh}` "
                   "(or set trust_unknown_hosts for this run)")
        elif isinstance(exc, paramiko.BadHostKeyException):
            msg = (f"host key of node {node.label} does NOT match {kh} (it offers "
                   f"{_fingerprint(exc.key)}, expected {_fingerprint(exc.expected_key)}); "
                   "this may be an attack. If the node was reinstalled, remove the old key with "
                   f"`ssh-keygen -R '[{node.host}]:{node.port}' -f {kh}` and add the new one")
        elif _is_auth(exc):
            how = f"key {self.settings.key_file}" if self.settings.key_file else \
                "ssh-agent and ~/.ssh keys"
            msg = (f"authentication as {node.user} on node {node.label} failed ({how}): "
                   f"{exc}; check that the key is in the node's authorized_keys")
        elif isinstance(exc, socket.gaierror):
            msg = f"node {node.label}: unknown host name ({exc})"
        else:
            msg = f"staging to node {node.label} failed: {_cause(exc)}"
        return StagingError(msg, node=node.label, transient=False, attempts=attempt)

    def _connect(self, node: _Node) -> _Conn:
        with self._lock:
            conn = self._conns.get(node.spec)
        if conn is not None:
            transport = conn.client.get_transport()
            if transport is not None and transport.is_active():
                return conn
            self._drop(node)
        s = self.settings
        client = paramiko.SSHClient()
        kh = s.known_hosts_path
        if kh.is_file():
            client.load_host_keys(str(kh))
        client.set_missing_host_key_policy(_TrustInMemory() if s.trust_unknown_hosts
                                           else _RejectUnknown())
        kwargs: dict[str, Any] = {"timeout": s.connect_timeout,
                                  "banner_timeout": s.connect_timeout,
                                  "auth_timeout": s.connect_timeout}
        if s.key_file is not None:
            if not s.key_file.is_file():
                raise StagingError(f"SSH key file not found: {s.key_file}")
            # An explicit key is the only credential: falling back to an agent would hide a
            # wrong key_file behind whatever the agent happens to hold.
            kwargs.update(key_filename=str(s.key_file), look_for_keys=False, allow_agent=False)
        else:
            kwargs.update(look_for_keys=True, allow_agent=True)
        try:
            client.connect(node.host, port=node.port, username=node.user, **kwargs)
            sftp = client.open_sftp()
        except BaseException:
            client.close()
            raise
        conn = _Conn(client, sftp)
        with self._lock:
            self._conns[node.spec] = conn
        return conn

    def _drop(self, node: _Node) -> None:
        with self._lock:
            conn = self._conns.pop(node.spec, None)
        if conn is not None:
            _close(conn)

    # -- put --------------------------------------------------------------------------------
    def _scan(self, source: Path) -> list[_Entry]:
        if not source.exists():
            raise StagingError(f"stage source not found: {source}")
        out = []
        for local, rel, is_dir in walk(source):
            st = local.stat()
            out.append(_Entry(local, rel, is_dir, 0 if is_dir else st.st_size,
                              stat.S_IMODE(st.st_mode), st.st_mtime, st.st_mtime_ns))
        return out

    def _put_node(self, conn: _Conn, node: _Node, plan: list[tuple[StageItem, list[_Entry]]],
                  rep: NodeReport) -> None:
        dir_modes: list[tuple[str, int]] = []
        by_dir: dict[str, list[tuple[_Entry, str]]] = {}
        for item, entries in plan:
            # No dest: the same path as on this machine (staging in place, node by node).
            root = remote_path(self.settings, item.dest or str(item.source.resolve()),
                               node.host)
            floor = remote_root(self.settings, node.host)
            for e in entries:
                remote = posixpath.join(root, e.rel) if e.rel else root
                if e.is_dir:
                    self._mkdir_p(conn, remote, floor)
                    dir_modes.append((remote, e.mode))
                else:
                    parent = posixpath.dirname(remote)
                    self._mkdir_p(conn, parent, floor)
                    by_dir.setdefault(parent, []).append((e, remote))
        for directory, files in by_dir.items():
            self._sync_dir(conn, node, directory, files, rep)
        # Directory modes last, so a read-only directory does not block writing its files.
        for remote, mode in reversed(dir_modes):
            if stat.S_IMODE(conn.sftp.stat(remote).st_mode or 0) != mode:
                conn.sftp.chmod(remote, mode)

    def _sync_dir(self, conn: _Conn, node: _Node, directory: str,
                  files: list[tuple[_Entry, str]], rep: NodeReport) -> None:
        attrs = {a.filename: a for a in conn.sftp.listdir_attr(directory or ".")}
        same_size = [r for e, r in files
                     if (a := attrs.get(posixpath.basename(r))) is not None
                     and not stat.S_ISDIR(a.st_mode or 0) and a.st_size == e.size]
        hashes = self._remote_sha256(conn, same_size) if same_size else {}
        for e, remote in files:
            a = attrs.get(posixpath.basename(remote))
            if a is not None and stat.S_ISLNK(a.st_mode or 0):
                # A link where the file goes is replaced, never written through (its target
                # may be anything the node's user can write).
                conn.sftp.remove(remote)
                a = None
            if a is not None and stat.S_ISDIR(a.st_mode or 0):
                raise StagingError(f"node {node.label}: {remote} is a directory on the node, "
                                   f"but {e.local} is a file", node=node.label)
            if a is not None and a.st_size == e.size and self._unchanged(conn, e, remote, a,
                                                                         hashes):
                if stat.S_IMODE(a.st_mode or 0) != e.mode:
                    conn.sftp.chmod(remote, e.mode)
                rep.skipped.append(remote)
                continue
            try:
                self._send(conn, node, e, remote, a, attrs, rep)
            except OSError as exc:
                if _transient(exc):
                    raise
                raise StagingError(f"node {node.label}: cannot write {remote}: {_cause(exc)}",
                                   node=node.label) from exc

    def _unchanged(self, conn: _Conn, e: _Entry, remote: str, a: paramiko.SFTPAttributes,
                   hashes: dict[str, str] | None) -> bool:
        if hashes is None:  # no sha256sum on the node: size (equal here) and mtime decide
            return int(a.st_mtime or 0) == int(e.mtime)
        return hashes.get(remote) == self._local_sha256(e.local)

    def _send(self, conn: _Conn, node: _Node, e: _Entry, remote: str,
              a: paramiko.SFTPAttributes | None, attrs: dict[str, paramiko.SFTPAttributes],
              rep: NodeReport) -> None:
        directory, name = posixpath.split(remote)
        part = posixpath.join(directory, f".{name}{_PART}")
        target, offset = part, 0
        # Resume: the file itself (interrupted in place) or our temporary one (interrupted
        # before the rename), when it is a true prefix of the local file.
        for cand, ca in ((remote, a), (part, attrs.get(posixpath.basename(part)))):
            if (ca is None or not stat.S_ISREG(ca.st_mode or 0)
                    or not 0 < (ca.st_size or 0) < e.size):
                continue
            if self._remote_prefix_matches(conn, e, cand, ca.st_size or 0):
                target, offset = cand, ca.st_size or 0
                break
        self._upload(conn, node, e, target, offset)
        if offset and not self._remote_matches(conn, e, target):
            target, offset = part, 0  # the prefix changed under us: send it whole
            self._upload(conn, node, e, target, 0)
        if target != remote:
            _rename(conn.sftp, target, remote)
        conn.sftp.chmod(remote, e.mode)
        # The local mtime makes the size + mtime fallback (no sha256sum) work next time.
        conn.sftp.utime(remote, (e.mtime, e.mtime))
        rep.sent.append(remote)
        rep.bytes_sent += e.size - offset
        if offset:
            rep.resumed.append(remote)

    def _upload(self, conn: _Conn, node: _Node, e: _Entry, target: str, offset: int) -> None:
        if not offset:
            # A fresh temporary file: whatever has its name goes first (a planted link, say),
            # and O_EXCL ("wx") creates it without following a link put there meanwhile.
            with contextlib.suppress(FileNotFoundError):
                conn.sftp.remove(target)
        with e.local.open("rb") as src, conn.sftp.open(target, "r+b" if offset else "wxb") as dst:
            dst.set_pipelined(True)
            if offset:
                src.seek(offset)
                dst.seek(offset)
            done = offset
            while block := src.read(CHUNK):
                dst.write(block)
                done += len(block)
                self._progress.update(node.spec, target, done, e.size)

    # -- get --------------------------------------------------------------------------------
    def _get_node(self, conn: _Conn, node: _Node, items: Sequence[StageItem],
                  rep: NodeReport) -> None:
        for item in items:
            root = remote_path(self.settings, item.dest or str(item.source.resolve()),
                               node.host)
            try:
                top = conn.sftp.stat(root)
            except FileNotFoundError:
                raise StagingError(f"node {node.label}: {root} does not exist",
                                   node=node.label) from None
            if stat.S_ISDIR(top.st_mode or 0):
                self._get_tree(conn, node, root, item.source, rep)
                os.chmod(item.source, stat.S_IMODE(top.st_mode or 0o755))
            else:
                item.source.parent.mkdir(parents=True, exist_ok=True)
                self._get_files(conn, node, [(root, item.source, top)], rep)

    def _get_tree(self, conn: _Conn, node: _Node, remote_dir: str, local_dir: Path,
                  rep: NodeReport) -> None:
        local_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for a in conn.sftp.listdir_attr(remote_dir):
            r = posixpath.join(remote_dir, a.filename)
            if stat.S_ISDIR(a.st_mode or 0):
                self._get_tree(conn, node, r, local_dir / a.filename, rep)
                os.chmod(local_dir / a.filename, stat.S_IMODE(a.st_mode or 0o755))
            elif stat.S_ISREG(a.st_mode or 0):
                files.append((r, local_dir / a.filename, a))
        self._get_files(conn, node, files, rep)

    def _get_files(self, conn: _Conn, node: _Node,
                   files: list[tuple[str, Path, paramiko.SFTPAttributes]],
                   rep: NodeReport) -> None:
        same = [r for r, local, a in files if local.is_file()
                and local.stat().st_size == a.st_size]
        hashes = self._remote_sha256(conn, same) if same else {}
        for remote, local, a in files:
            if local.is_file() and local.stat().st_size == a.st_size:
                if hashes is None:
                    unchanged = int(local.stat().st_mtime) == int(a.st_mtime or 0)
                else:
                    unchanged = hashes.get(remote) == _sha256_file(local)
                if unchanged:
                    rep.skipped.append(str(local))
                    continue
            tmp = local.with_name(f".{local.name}{_PART}")
            size = a.st_size or 0
            with conn.sftp.open(remote, "rb") as src, tmp.open("wb") as dst:
                src.prefetch(size)
                done = 0
                while block := src.read(CHUNK):
                    dst.write(block)
                    done += len(block)
                    self._progress.update(node.spec, remote, done, size)
            os.chmod(tmp, stat.S_IMODE(a.st_mode or 0o644))
            os.utime(tmp, (a.st_atime or a.st_mtime or 0, a.st_mtime or 0))
            os.replace(tmp, local)  # never a half-copied file under the real name
            rep.sent.append(str(local))
            rep.bytes_sent += size

    # -- remote helpers ---------------------------------------------------------------------
    def _mkdir_p(self, conn: _Conn, path: str, floor: str | None = None) -> None:
        """Make ``path`` and its parents on the node. Below ``floor`` (the remote root) a
        link in place of a folder is refused: files would land wherever it points."""
        if path in ("", ".", "/") or path in conn.dirs:
            return
        try:
            st = conn.sftp.lstat(path)
            if stat.S_ISLNK(st.st_mode or 0):
                if floor and path.startswith(floor.rstrip("/") + "/"):
                    raise StagingError(f"{path} is a symlink on the node, inside the remote "
                                       f"root {floor}: staging does not write through links; "
                                       "remove it on the node")
                st = conn.sftp.stat(path)  # the root itself, or above it: the user's setup
        except FileNotFoundError:
            self._mkdir_p(conn, posixpath.dirname(path), floor)
            try:
                conn.sftp.mkdir(path)
            except OSError:
                # Another writer (a parallel node on a shared filesystem) may have won the race.
                if not stat.S_ISDIR(conn.sftp.stat(path).st_mode or 0):
                    raise
        else:
            if not stat.S_ISDIR(st.st_mode or 0):
                raise StagingError(f"{path} exists on the node and is not a directory")
        conn.dirs.add(path)

    def _exec(self, conn: _Conn, command: str) -> tuple[int, bytes, bytes]:
        _, stdout, stderr = conn.client.exec_command(command, timeout=EXEC_TIMEOUT)
        out, err = stdout.read(), stderr.read()
        return stdout.channel.recv_exit_status(), out, err

    def _has_sha256(self, conn: _Conn) -> bool:
        """False once the node is known to have no sha256sum. Not asked on its own: each
        remote command costs a channel and a shell (~0.2 s here), so the first hashing call
        finds out (and a `head | sha256sum` without it fails, which sends the file whole)."""
        return conn.has_sha256 is not False

    def _remote_sha256(self, conn: _Conn, paths: list[str]) -> dict[str, str] | None:
        """sha256 of each remote path (missing ones absent), or None without sha256sum."""
        if not self._has_sha256(conn):
            return None
        out: dict[str, str] = {}
        batches: list[list[str]] = [[]]
        size = 0
        for p in paths:
            if batches[-1] and size + len(p) > _ARGS_PER_CALL:
                batches.append([])
                size = 0
            batches[-1].append(p)
            size += len(p) + 3
        for batch in batches:
            if batch:
                # Exit status 1 only means some file is missing; parse what was printed.
                cmd = ("command -v sha256sum >/dev/null 2>&1 || exit 127; sha256sum -- "
                       + " ".join(shlex.quote(p) for p in batch))
                rc, text, _ = self._exec(conn, cmd)
                if rc == 127:
                    conn.has_sha256 = False
                    return None
                conn.has_sha256 = True
                out.update(_parse_sha256sum(text))
        return out

    def _remote_prefix_matches(self, conn: _Conn, e: _Entry, remote: str, length: int) -> bool:
        if not self._has_sha256(conn):
            return False  # cannot prove it is a prefix: send the file whole
        rc, text, _ = self._exec(conn, f"head -c {length} -- {shlex.quote(remote)} | sha256sum")
        return rc == 0 and text.decode(errors="replace").split()[:1] == [
            _sha256_file(e.local, length)]

    def _remote_matches(self, conn: _Conn, e: _Entry, remote: str) -> bool:
        got = self._remote_sha256(conn, [remote])
        return got is None or got.get(remote) == self._local_sha256(e.local)

    def _local_sha256(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            hit = self._hashes.get(key)
        if hit is None:
            hit = _sha256_file(path)
            with self._lock:
                self._hashes[key] = hit
        return hit


def _sha256_file(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    left = limit
    with path.open("rb") as f:
        while True:
            want = CHUNK if left is None else min(CHUNK, left)
            if want == 0:
                break
            block = f.read(want)
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
    return h.hexdigest()


def _parse_sha256sum(text: bytes) -> dict[str, str]:
    out = {}
    for raw in text.decode("utf-8", "surrogateescape").splitlines():
        escaped = raw.startswith("\\")  # GNU marks names holding \ or newline this way
        line = raw[1:] if escaped else raw
        digest, sep, name = line.partition("  ")
        if not sep:
            digest, sep, name = line.partition(" *")
        if not sep:
            continue
        if escaped:
            name = name.replace("\\n", "\n").replace("\\\\", "\\")
        out[name] = digest
    return out


def _rename(sftp: paramiko.SFTPClient, old: str, new: str) -> None:
    try:
        sftp.posix_rename(old, new)  # atomic replace (OpenSSH extension)
    except OSError:
        # Plain SFTP rename refuses an existing target: remove it first (not atomic, rare).
        with contextlib.suppress(FileNotFoundError):
            sftp.remove(new)
        sftp.rename(old, new)


def _close(conn: _Conn) -> None:
    try:
        conn.sftp.close()
    finally:
        conn.client.close()


def _fingerprint(key: paramiko.PKey) -> str:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _is_auth(exc: BaseException) -> bool:
    return isinstance(exc, paramiko.AuthenticationException) or (
        isinstance(exc, paramiko.SSHException) and "authentication" in str(exc).lower())


def _transient(exc: BaseException) -> bool:
    """Whether trying again may help: network trouble yes; credentials, keys, files no."""
    if isinstance(exc, _UnknownHost | paramiko.BadHostKeyException | socket.gaierror) \
            or _is_auth(exc):
        return False
    if isinstance(exc, NoValidConnectionsError | TimeoutError | ConnectionError | EOFError
                  | paramiko.SSHException):
        return True
    return isinstance(exc, OSError) and exc.errno in _NET_ERRNOS


def _cause(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"
