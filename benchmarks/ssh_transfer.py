"""How fast the ssh stager sends a file to every node, and how fast an unchanged re-run is.

By default it starts its own sshd nodes on 127.0.0.1 and 127.0.0.2 (one free port) with
scripts/ssh-nodes.sh, as the test fixture does (needs root), and stops them at the end. With
--port it uses nodes that are already running instead (--key, --known-hosts, --user and
--remote-root say how to reach them and where to write).

For each size and round, in this order, with medians over rounds in the table:

  first transfer       put() of a new random file to every node, in parallel, on
                       connections opened beforehand (a tiny put() connects first, untimed)
  unchanged re-run     the same put() again, same connections: nothing is sent
  new connections      the same put() from a fresh stager: connecting, the remote checksum
                       and a cold local hash cache, and still nothing sent

Every round is checked, untimed: the first put() reports size x nodes bytes sent, each node's
copy has the source's SHA-256 (`sha256sum` run on the node), and the re-runs send nothing. A
failed check is printed under the table and makes the exit status 1. The nodes of the default
setup share this machine's disk and loopback network: the numbers are SSH/SFTP and Python
costs, not a network's. Only compare numbers from one invocation.

    python benchmarks/ssh_transfer.py                          # 50 MB, 3 rounds
    python benchmarks/ssh_transfer.py --sizes 1,50,200 --rounds 5
    python benchmarks/ssh_transfer.py --port 2222 --hosts 127.0.0.1 \\
        --key DIR/id_ed25519 --known-hosts DIR/known_hosts --remote-root /tmp/bench/{host}
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paramiko  # noqa: E402

from dodo_jobspec.stagers.base import StageItem, StagerSettings  # noqa: E402
from dodo_jobspec.stagers.ssh import SSHStager  # noqa: E402

SSH_SCRIPT = REPO / "scripts" / "ssh-nodes.sh"
DEFAULT_HOSTS = ("127.0.0.1", "127.0.0.2")
MB = 1 << 20


@dataclass
class Nodes:
    """Where to stage and how to log in."""

    hosts: tuple[str, ...]
    port: int
    user: str
    key_file: Path | None
    known_hosts: Path | None
    remote_root: str  # may contain {host}

    def settings(self) -> StagerSettings:
        return StagerSettings(nodes=self.hosts, port=self.port, user=self.user,
                              key_file=self.key_file, known_hosts=self.known_hosts,
                              remote_root=self.remote_root, retries=1, backoff=0.05)

    def remote(self, host: str, name: str) -> str:
        return f"{self.remote_root.format(host=host)}/{name}"

    @contextmanager
    def session(self, host: str) -> Iterator[paramiko.SSHClient]:
        """A connection of our own (not the stager's), for the checks and the cleanup."""
        client = paramiko.SSHClient()
        if self.known_hosts is not None:
            client.load_host_keys(str(self.known_hosts))
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        kwargs: dict[str, object] = {"timeout": 30}
        if self.key_file is not None:
            kwargs.update(key_filename=str(self.key_file), look_for_keys=False,
                          allow_agent=False)
        try:
            client.connect(host, port=self.port, username=self.user, **kwargs)  # type: ignore[arg-type]
            yield client
        finally:
            client.close()

    def run(self, host: str, command: str) -> str:
        with self.session(host) as client:
            _, out, err = client.exec_command(command, timeout=600)
            text = out.read().decode()
            if out.channel.recv_exit_status() != 0:
                raise RuntimeError(f"{host}: {command}: {err.read().decode().strip()}")
            return text


@dataclass
class Result:
    """Seconds per round of each measurement, for one size."""

    size: int
    first: list[float] = field(default_factory=list)
    again: list[float] = field(default_factory=list)
    fresh: list[float] = field(default_factory=list)


def write_random(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MB))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def one_round(nodes: Nodes, result: Result, work: Path, tag: str, failures: list[str]) -> None:
    size = result.size
    src = work / f"{tag}.bin"
    sha = write_random(src, size)
    name = src.name
    ping = work / "ping.txt"
    ping.write_text(tag)
    try:
        with SSHStager(nodes.settings()) as stager:
            stager.put([StageItem(ping, "ping.txt")])  # connects: not part of the transfer
            t0 = time.perf_counter()
            first = stager.put([StageItem(src, name)])
            t1 = time.perf_counter()
            again = stager.put([StageItem(src, name)])
            t2 = time.perf_counter()
        with SSHStager(nodes.settings()) as fresh:
            t3 = time.perf_counter()
            cold = fresh.put([StageItem(src, name)])
            t4 = time.perf_counter()
        result.first.append(t1 - t0)
        result.again.append(t2 - t1)
        result.fresh.append(t4 - t3)
        want = size * len(nodes.hosts)
        if first.bytes_sent != want:
            failures.append(f"{tag}: first put sent {first.bytes_sent} bytes, not {want}")
        for host in nodes.hosts:
            remote = nodes.remote(host, name)
            there = nodes.run(host, f"sha256sum -- {shlex.quote(remote)}").split()[:1]
            if there != [sha]:
                failures.append(f"{tag}: the copy on {host} differs from the source")
        for what, report in (("unchanged re-run", again), ("new connections", cold)):
            if report.bytes_sent or report.files_sent:
                failures.append(f"{tag}: the {what} sent {report.files_sent} file(s), "
                                f"{report.bytes_sent} bytes")
    finally:
        src.unlink(missing_ok=True)
        for host in nodes.hosts:
            paths = " ".join(shlex.quote(nodes.remote(host, n)) for n in (name, "ping.txt"))
            try:
                nodes.run(host, f"rm -f -- {paths}")
            except Exception as exc:  # the nodes may be down: say so, go on
                print(f"cleanup on {host} failed: {exc}", file=sys.stderr)


def table(results: Sequence[Result], hosts: int, rounds: int) -> str:
    lines = [f"ssh stager, {hosts} node(s), medians of {rounds} round(s)", "",
             "| size | first transfer | MB/s (all nodes) | unchanged re-run "
             "| unchanged, new connections |",
             "|---|---|---|---|---|"]
    for r in results:
        first = statistics.median(r.first)
        rate = r.size * hosts / MB / first if first > 0 else float("inf")
        lines.append(f"| {r.size / MB:g} MB | {first:.3f} s | {rate:.0f} "
                     f"| {statistics.median(r.again):.3f} s "
                     f"| {statistics.median(r.fresh):.3f} s |")
    return "\n".join(lines)


# -- our own nodes ------------------------------------------------------------------------------
def free_port(hosts: Sequence[str]) -> int:
    """A TCP port free on every address in ``hosts`` (as the test fixture picks one)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((hosts[0], 0))
            port = int(sock.getsockname()[1])
        ok = True
        for host in hosts:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise SystemExit(f"no TCP port free on all of {list(hosts)}")


def start_nodes(folder: Path, hosts: Sequence[str]) -> int:
    """scripts/ssh-nodes.sh start FOLDER PORT HOSTS...; a few ports are tried, as the test
    fixture does (the port may be taken between choosing it and sshd's bind)."""
    out = ""
    for _ in range(3):
        port = free_port(hosts)
        proc = subprocess.run([str(SSH_SCRIPT), "start", str(folder), str(port), *hosts],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode == 0:
            return port
        out = proc.stdout + proc.stderr
        stop_nodes(folder)
    raise SystemExit(f"could not start the ssh nodes with {SSH_SCRIPT}:\n{out[-3000:]}")


def stop_nodes(folder: Path) -> None:
    proc = subprocess.run([str(SSH_SCRIPT), "stop", str(folder)], capture_output=True,
                          text=True, timeout=240)
    if proc.returncode != 0:
        print(f"{SSH_SCRIPT} stop {folder} failed:\n{proc.stdout}{proc.stderr}",
              file=sys.stderr)


def sizes(text: str) -> list[int]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes in MB: {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be more than 0 MB: {text!r}")
    return [int(v * MB) for v in values]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=sizes, default=sizes("50"), metavar="MB,...",
                    help="file sizes in MB, comma-separated (default 50)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per size (default 3)")
    ap.add_argument("--hosts", default=",".join(DEFAULT_HOSTS), metavar="H1,H2",
                    help="node addresses (default 127.0.0.1,127.0.0.2)")
    ap.add_argument("--port", type=int,
                    help="use sshd already listening on this port on every host, instead of "
                         "starting nodes with scripts/ssh-nodes.sh")
    ap.add_argument("--user", default="root", help="login user (default root)")
    ap.add_argument("--key", type=Path, help="private key (with --port; default: ssh's own)")
    ap.add_argument("--known-hosts", type=Path,
                    help="known_hosts listing the nodes (with --port; default ~/.ssh/...)")
    ap.add_argument("--remote-root", default="/tmp/jsd-ssh-bench/{host}",
                    help="where the files go on the nodes, {host} is the node's address "
                         "(with --port; default /tmp/jsd-ssh-bench/{host})")
    ap.add_argument("--workdir", type=Path, help="folder for the local files and the nodes "
                                                 "(default: a new one in /tmp, removed after)")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    hosts = tuple(h.strip() for h in args.hosts.split(",") if h.strip())
    work = Path(tempfile.mkdtemp(prefix="jsd-ssh-bench-", dir=args.workdir))
    started = args.port is None
    try:
        if started:
            node_dir = work / "nodes"
            node_dir.mkdir()
            port = start_nodes(node_dir, hosts)
            nodes = Nodes(hosts, port, "root", node_dir / "id_ed25519",
                          node_dir / "known_hosts", f"{work}/remote/{{host}}")
        else:
            nodes = Nodes(hosts, args.port, args.user, args.key, args.known_hosts,
                          args.remote_root)
        failures: list[str] = []
        results = [Result(size) for size in args.sizes]
        for n in range(args.rounds):  # interleaved: a noisy minute hits every size alike
            for r in results:
                print(f"round {n + 1}/{args.rounds}: {r.size / MB:g} MB", file=sys.stderr)
                one_round(nodes, r, work, f"bench-{r.size}-{n}", failures)
        print(table(results, len(hosts), args.rounds))
        for failure in failures:
            print(f"FAILED {failure}")
        if not failures:
            print(f"\nchecks: all passed ({len(results) * args.rounds} round(s): bytes sent, "
                  "SHA-256 of every copy, nothing sent by the re-runs)")
        return 1 if failures else 0
    finally:
        if started:
            stop_nodes(work / "nodes")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
