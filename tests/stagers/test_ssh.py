"""The ssh stager against real sshd servers on 127.0.0.1 and 127.0.0.2 (``ssh_nodes``).

Both nodes share this machine's filesystem, so every test stages under a remote root that
contains the node's address (``.../{host}``): each node gets its own copy, and the test can
inspect both copies directly on disk.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import pickle
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import paramiko
import pytest

from dodo_jobspec.stagers.base import StageItem, StagerSettings, StagingError
from dodo_jobspec.stagers.ssh import SSHStager
from tests.services import SSHNodes

MB = 1 << 20


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """Where the nodes' copies land: ``remote/<host>/...`` (one directory per node)."""
    return tmp_path / "remote"


@pytest.fixture
def settings(ssh_nodes: SSHNodes, remote: Path) -> StagerSettings:
    return StagerSettings(nodes=ssh_nodes.hosts, port=ssh_nodes.port, user=ssh_nodes.user,
                          key_file=ssh_nodes.key_file, known_hosts=ssh_nodes.known_hosts,
                          remote_root=f"{remote}/{{host}}", retries=1, backoff=0.05)


@pytest.fixture
def stager(settings: StagerSettings) -> Iterator[SSHStager]:
    with SSHStager(settings) as s:
        yield s


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copies(remote: Path, ssh_nodes: SSHNodes, rel: str) -> list[Path]:
    return [remote / host / rel for host in ssh_nodes.hosts]


def _stamps(paths: list[Path]) -> list[tuple[int, int, int]]:
    """mtime, ctime and inode: any write, chmod, utime or replace changes one of them."""
    out = []
    for p in paths:
        st = p.stat()
        out.append((st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return out


def test_a_file_reaches_every_node(stager: SSHStager, tmp_path: Path, remote: Path,
                                   ssh_nodes: SSHNodes) -> None:
    src = tmp_path / "hello.txt"
    src.write_text("hello nodes\n")
    report = stager.put([StageItem(src, "hello.txt")])
    for copy in _copies(remote, ssh_nodes, "hello.txt"):
        assert copy.read_text() == "hello nodes\n"
    assert set(report.nodes) == set(ssh_nodes.hosts)
    for host in ssh_nodes.hosts:
        node = report.nodes[host]
        assert (node.files_sent, node.files_skipped, node.bytes_sent) == (1, 0, 12)
    # A second file through the same (cached) connections, to an absolute destination.
    other = tmp_path / "other.txt"
    other.write_text("x")
    stager.put([StageItem(other, f"{remote}/abs-{{host}}/deep/other.txt")])
    for host in ssh_nodes.hosts:
        assert (remote / f"abs-{host}" / "deep" / "other.txt").read_text() == "x"


def _make_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "data" / "deeper").mkdir(parents=True)
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (root / "bin" / "run.sh").chmod(0o755)
    (root / "data" / "a.txt").write_text("a")
    (root / "data" / "secret.txt").write_text("s")
    (root / "data" / "secret.txt").chmod(0o600)
    (root / "data" / "deeper" / "b.bin").write_bytes(os.urandom(3000))
    (root / "data" / "deeper").chmod(0o750)
    (root / "empty").mkdir()


def test_a_tree_keeps_its_modes(stager: SSHStager, tmp_path: Path, remote: Path,
                                ssh_nodes: SSHNodes) -> None:
    tree = tmp_path / "app"
    _make_tree(tree)
    report = stager.put([StageItem(tree, "app")])
    for host in ssh_nodes.hosts:
        there = remote / host / "app"
        for p in tree.rglob("*"):
            q = there / p.relative_to(tree)
            assert q.exists(), q
            assert oct(q.stat().st_mode & 0o7777) == oct(p.stat().st_mode & 0o7777), q
            if p.is_file():
                assert q.read_bytes() == p.read_bytes()
        assert report.nodes[host].files_sent == 4
        # Executable stays executable: run it.
        out = subprocess.run([there / "bin" / "run.sh"], capture_output=True, text=True)
        assert out.stdout == "ran\n"


def test_a_file_then_unchanged_rerun_sends_nothing(stager: SSHStager, tmp_path: Path,
                                                   remote: Path, ssh_nodes: SSHNodes) -> None:
    """Content arrives intact (many SFTP chunks, not a multiple of one), and a re-run sends
    nothing. How fast: benchmarks/ssh_transfer.py."""
    size = 2 * MB + 4321
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(size))
    first = stager.put([StageItem(data, "data.bin")])
    copies = _copies(remote, ssh_nodes, "data.bin")
    assert all(c.read_bytes() == data.read_bytes() for c in copies)
    assert first.bytes_sent == 2 * size
    assert all(n.files_sent == 1 for n in first.nodes.values())
    before = _stamps(copies)

    again = stager.put([StageItem(data, "data.bin")])
    assert again.bytes_sent == 0 and again.files_sent == 0
    assert all(n.files_skipped == 1 for n in again.nodes.values())
    assert _stamps(copies) == before  # not rewritten, not touched, not replaced

    # A fresh stager (new connections, cold local hash cache) skips it too.
    with SSHStager(stager.settings) as fresh:
        cold = fresh.put([StageItem(data, "data.bin")])
    assert cold.bytes_sent == 0 and cold.files_sent == 0
    assert all(n.files_skipped == 1 for n in cold.nodes.values())
    assert _stamps(copies) == before


def test_a_changed_file_is_resent_alone(stager: SSHStager, tmp_path: Path, remote: Path,
                                        ssh_nodes: SSHNodes) -> None:
    tree = tmp_path / "app"
    _make_tree(tree)
    stager.put([StageItem(tree, "app")])
    untouched = [remote / h / "app" / "data" / "a.txt" for h in ssh_nodes.hosts]
    before = _stamps(untouched)
    # Same size, different content: only the checksum can tell.
    (tree / "data" / "deeper" / "b.bin").write_bytes(os.urandom(3000))
    report = stager.put([StageItem(tree, "app")])
    for host in ssh_nodes.hosts:
        node = report.nodes[host]
        assert [Path(p).name for p in node.sent] == ["b.bin"]
        assert node.bytes_sent == 3000
        assert node.files_skipped == 3
        assert _sha(remote / host / "app/data/deeper/b.bin") == _sha(tree / "data/deeper/b.bin")
    assert _stamps(untouched) == before


def test_a_partial_remote_file_is_resumed(stager: SSHStager, tmp_path: Path, remote: Path,
                                          ssh_nodes: SSHNodes) -> None:
    src = tmp_path / "data.bin"
    payload = os.urandom(8 * MB)
    src.write_bytes(payload)
    prefix = 3 * MB + 123
    h1, h2 = ssh_nodes.hosts
    # Node 1: interrupted in place. Node 2: interrupted before the rename (temp name).
    (remote / h1).mkdir(parents=True)
    (remote / h1 / "data.bin").write_bytes(payload[:prefix])
    (remote / h2).mkdir(parents=True)
    (remote / h2 / ".data.bin.jobspec-do.part").write_bytes(payload[:prefix])
    report = stager.put([StageItem(src, "data.bin")])
    for host in (h1, h2):
        node = report.nodes[host]
        assert node.bytes_sent == len(payload) - prefix < len(payload)
        assert node.resumed == [f"{remote}/{host}/data.bin"]
        assert (remote / host / "data.bin").read_bytes() == payload
    assert not (remote / h2 / ".data.bin.jobspec-do.part").exists()


def test_a_remote_file_that_is_not_a_prefix_is_rewritten(stager: SSHStager, tmp_path: Path,
                                                         remote: Path, ssh_nodes: SSHNodes
                                                         ) -> None:
    src = tmp_path / "data.bin"
    payload = os.urandom(2 * MB)
    src.write_bytes(payload)
    for host in ssh_nodes.hosts:
        (remote / host).mkdir(parents=True)
        (remote / host / "data.bin").write_bytes(b"X" * MB)  # shorter, but different
    report = stager.put([StageItem(src, "data.bin")])
    for host in ssh_nodes.hosts:
        assert report.nodes[host].bytes_sent == len(payload)
        assert report.nodes[host].resumed == []
        assert (remote / host / "data.bin").read_bytes() == payload


def test_without_sha256sum_size_and_mtime_decide(settings: StagerSettings, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "f.txt"
    src.write_text("content")
    with SSHStager(settings) as s:
        monkeypatch.setattr(s, "_has_sha256", lambda conn: False)
        assert s.put([StageItem(src, "f.txt")]).files_sent == 2
        assert s.put([StageItem(src, "f.txt")]).files_sent == 0
        src.write_text("CONTENT")  # same size, new mtime
        os.utime(src, (time.time() + 5, time.time() + 5))
        assert s.put([StageItem(src, "f.txt")]).files_sent == 2


def test_get_copies_back_from_the_first_node(stager: SSHStager, tmp_path: Path, remote: Path,
                                             ssh_nodes: SSHNodes) -> None:
    tree = tmp_path / "app"
    _make_tree(tree)
    stager.put([StageItem(tree, "app")])
    first = remote / ssh_nodes.hosts[0] / "app"
    (first / "data" / "result.txt").write_text("computed on the node")
    back = tmp_path / "back"
    report = stager.get([StageItem(back, "app")])
    assert list(report.nodes) == [ssh_nodes.hosts[0]]
    assert (back / "data" / "result.txt").read_text() == "computed on the node"
    assert (back / "bin" / "run.sh").stat().st_mode & 0o777 == 0o755
    again = stager.get([StageItem(back, "app")])
    assert again.files_sent == 0 and again.files_skipped == 5


def _count_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SSH connection attempt from now on, by host (a retry is one more)."""
    hosts: list[str] = []
    real = paramiko.SSHClient.connect

    def connect(self: paramiko.SSHClient, hostname: str, *args: Any, **kwargs: Any) -> None:
        hosts.append(hostname)
        return real(self, hostname, *args, **kwargs)

    monkeypatch.setattr(paramiko.SSHClient, "connect", connect)
    return hosts


def test_an_unknown_host_key_is_refused_with_the_trust_hint(settings: StagerSettings,
                                                            ssh_nodes: SSHNodes,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    h1 = ssh_nodes.hosts[0]
    known = tmp_path / "known_hosts"
    lines = ssh_nodes.known_hosts.read_text().splitlines()
    known.write_text("".join(f"{ln}\n" for ln in lines if not ln.startswith(f"[{h1}]")))
    src = tmp_path / "f.txt"
    src.write_text("x")
    strict = replace(settings, nodes=(h1,), known_hosts=known, retries=3, backoff=1.0)
    connects = _count_connects(monkeypatch)
    with pytest.raises(StagingError) as info, SSHStager(strict) as s:
        s.put([StageItem(src, "f.txt")])
    err = info.value
    assert connects == [h1]  # refused at once, never retried
    assert err.node == f"{h1}:{ssh_nodes.port}" and not err.transient and err.attempts == 1
    assert f"ssh-keyscan -p {ssh_nodes.port} {h1} >> {known}" in str(err)
    assert "SHA256:" in str(err)
    # With trust_unknown_hosts it goes through, and known_hosts is left as it was.
    before = known.read_text()
    with SSHStager(replace(strict, trust_unknown_hosts=True)) as s:
        assert s.put([StageItem(src, "f.txt")]).files_sent == 1
    assert known.read_text() == before


def test_a_down_node_is_reported_by_name(settings: StagerSettings, ssh_nodes: SSHNodes,
                                         tmp_path: Path, remote: Path) -> None:
    h1, h2 = ssh_nodes.hosts
    src = tmp_path / "f.txt"
    src.write_text("x")
    ssh_nodes.stop_host(h2)
    try:
        with pytest.raises(StagingError) as info, \
                SSHStager(replace(settings, retries=2, backoff=0.05)) as s:
            s.put([StageItem(src, "f.txt")])
    finally:
        ssh_nodes.start_host(h2)
    err = info.value
    assert err.node == f"{h2}:{ssh_nodes.port}"
    assert f"node {h2}:{ssh_nodes.port} cannot be reached" in str(err)
    assert err.transient and err.attempts == 3
    # The node that was up got its copy, and the report says so.
    assert err.report is not None and err.report.nodes[h1].files_sent == 1
    assert (remote / h1 / "f.txt").read_text() == "x"
    assert not (remote / h2 / "f.txt").exists()


def _wrong_key(tmp_path: Path) -> Path:
    key = tmp_path / "wrong_key"
    if shutil.which("ssh-keygen"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    else:  # pragma: no cover - the sshd fixture installs openssh-client
        import paramiko

        paramiko.RSAKey.generate(2048).write_private_key_file(str(key))
    return key


def test_an_auth_failure_is_not_retried(settings: StagerSettings, tmp_path: Path,
                                        ssh_nodes: SSHNodes,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "f.txt"
    src.write_text("x")
    bad = replace(settings, nodes=ssh_nodes.hosts[:1], key_file=_wrong_key(tmp_path),
                  retries=3, backoff=2.0)
    connects = _count_connects(monkeypatch)
    with pytest.raises(StagingError) as info, SSHStager(bad) as s:
        s.put([StageItem(src, "f.txt")])
    err = info.value
    assert err.attempts == 1 and not err.transient
    assert connects == [ssh_nodes.hosts[0]]  # one connection: no retry
    assert "authentication as root" in str(err) and err.node == f"{ssh_nodes.hosts[0]}:" \
        f"{ssh_nodes.port}"


def test_a_missing_source_is_named(stager: SSHStager, tmp_path: Path) -> None:
    with pytest.raises(StagingError, match=r"stage source not found: .*nope"):
        stager.put([StageItem(tmp_path / "nope", "nope")])


def test_progress_for_large_files(settings: StagerSettings, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "two.bin"
    src.write_bytes(os.urandom(2 * MB))
    calls: list[tuple[str, str, int, int]] = []
    with SSHStager(replace(settings, progress=lambda *a: calls.append(a))) as s:
        s.put([StageItem(src, "two.bin")])
    assert {c[0] for c in calls} == set(settings.nodes)
    assert all(c[3] == 2 * MB for c in calls) and any(c[2] == 2 * MB for c in calls)
    small = tmp_path / "small.txt"
    small.write_text("tiny")
    src.write_bytes(os.urandom(2 * MB))
    with SSHStager(replace(settings, progress=True)) as s:
        s.put([StageItem(small, "small.txt"), StageItem(src, "two.bin")])
    err = capsys.readouterr().err
    assert "staging " in err and "/2.1 MB" in err and "small" not in err


def test_a_stager_pickles_without_its_connections(stager: SSHStager, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("x")
    stager.put([StageItem(src, "f.txt")])
    assert stager._conns  # connected, and cached until close()
    clone = pickle.loads(pickle.dumps(stager))
    assert isinstance(clone, SSHStager) and clone.settings == stager.settings
    assert clone._conns == {}
    assert clone.put([StageItem(src, "f.txt")]).files_skipped == 2
    clone.close()
    stager.close()
    assert stager._conns == {}


def test_no_nodes_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("x")
    with pytest.raises(StagingError, match="no nodes"), SSHStager(StagerSettings()) as s:
        s.put([StageItem(src, "f.txt")])


def test_node_specs_with_user_and_port() -> None:
    s = SSHStager(StagerSettings(port=2200, user="me"))
    n = s._parse("h")  # the settings' user and port
    assert (n.spec, n.user, n.host, n.port, n.label) == ("h", "me", "h", 2200, "h:2200")
    assert SSHStager(StagerSettings())._parse("h").user == getpass.getuser()
    n = s._parse("alice@10.0.0.5:2222")
    assert (n.user, n.host, n.port, n.label) == ("alice", "10.0.0.5", 2222, "10.0.0.5:2222")
    n = s._parse("[::1]:23")
    assert (n.user, n.host, n.port) == ("me", "::1", 23)
    with pytest.raises(StagingError, match="not a number"):
        s._parse("h:x")


def test_an_unchanged_rerun_costs_one_remote_command_per_node(
        settings: StagerSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each remote command opens a channel and a shell on the node: whether the node has
    sha256sum is learnt from the hashing call itself, not asked first."""
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(5000))
    with SSHStager(settings) as s:
        assert s.put([StageItem(src, "f.bin")]).files_sent == 2
    calls: list[str] = []
    real = SSHStager._exec

    def counted(self: SSHStager, conn: object, command: str) -> tuple[int, bytes, bytes]:
        calls.append(command)
        return real(self, conn, command)  # type: ignore[arg-type]

    monkeypatch.setattr(SSHStager, "_exec", counted)
    with SSHStager(settings) as fresh:  # new connections: nothing known about the nodes
        again = fresh.put([StageItem(src, "f.bin")])
    assert again.files_sent == 0 and again.files_skipped == 2
    assert len(calls) == 2 and all("sha256sum -- " in c for c in calls), calls


def test_a_relative_dest_leaving_the_remote_root_is_refused(stager: SSHStager, tmp_path: Path,
                                                            remote: Path) -> None:
    src = tmp_path / "src" / "data.txt"
    src.parent.mkdir()
    src.write_text("d")
    with pytest.raises(StagingError, match="leads outside the remote root"):
        stager.put([StageItem(src, "../../data.txt")])  # remote/<host>/../../ = tmp_path
    assert not (tmp_path / "data.txt").exists()


def test_a_link_at_the_destination_is_replaced_not_written_through(
        stager: SSHStager, tmp_path: Path, remote: Path, ssh_nodes: SSHNodes) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    src = tmp_path / "data.txt"
    src.write_text("staged\n")
    for host in ssh_nodes.hosts:
        (remote / host).mkdir(parents=True)
        (remote / host / "data.txt").symlink_to(victim)
        (remote / host / ".data.txt.jobspec-do.part").symlink_to(victim)
    stager.put([StageItem(src, "data.txt")])
    assert victim.read_text() == "keep me\n"
    for copy in _copies(remote, ssh_nodes, "data.txt"):
        assert not copy.is_symlink() and copy.read_text() == "staged\n"


def test_a_linked_folder_inside_the_remote_root_is_refused(
        stager: SSHStager, tmp_path: Path, remote: Path, ssh_nodes: SSHNodes) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = tmp_path / "data.txt"
    src.write_text("staged\n")
    for host in ssh_nodes.hosts:
        (remote / host).mkdir(parents=True)
        (remote / host / "sub").symlink_to(elsewhere)
    with pytest.raises(StagingError, match="is a symlink on the node"):
        stager.put([StageItem(src, "sub/data.txt")])
    assert os.listdir(elsewhere) == []
