"""Real external services for the test suite, as pytest fixtures.

Load this plugin with ``pytest_plugins = ["tests.services"]`` in ``tests/conftest.py``
(or ``-p tests.services`` on the command line), then request a fixture:

``slurm``
    Function-scoped. The session's :class:`SlurmCluster`, with a clean queue: jobs left
    over by the test are cancelled at teardown and the fixture waits for an empty queue.
``slurm_cluster``
    Session-scoped :class:`SlurmCluster`: a real single-node Slurm cluster (munged,
    slurmctld, slurmd) started by ``scripts/slurm-cluster.sh`` in a fresh ``/tmp/jsd-slurm-*``
    directory. ``os.environ["SLURM_CONF"]`` points at it for the whole session, so
    ``sbatch``/``squeue``/``scontrol`` run by the code under test reach it.
``flux_instance``
    Session-scoped :class:`FluxInstance`: a real 4-broker Flux (``flux start --test-size=4``)
    that lives for the whole session and is shut down at its end. ``flux`` is found on PATH,
    else under ``/opt/flux-core/bin`` (where ``../shared/flux/install.sh`` puts it).
``flux``
    Function-scoped: the session's :class:`FluxInstance` with ``FLUX_URI`` and ``PATH`` set in
    ``os.environ`` for the test, and every job the test left behind cancelled afterwards.
``ssh_nodes``
    Session-scoped :class:`SSHNodes`: real ``sshd`` servers on 127.0.0.1 and 127.0.0.2 on
    one free port, started by ``scripts/ssh-nodes.sh``, with a client key and a
    ``known_hosts`` file. The nodes share this machine's filesystem.
``slurm_nodes`` / ``slurm_nodes_cluster``
    Function / session scoped :class:`SlurmNodes`: a real 2-node Slurm cluster started by
    ``scripts/slurm-nodes.sh``, each node in its own network namespace (10.231.77.0/24) with
    its own hostname, ``/tmp``, slurmd and sshd. Own ports and lock, so it runs beside
    ``slurm_cluster``.

When a service cannot be started (not root, packages not installable, ...) the fixture
skips the test with the reason, except when ``CI=true``, where it fails instead (see
:func:`need_service`). Only one Slurm cluster can run per machine (fixed ports 6817/6818),
so do not run these fixtures from parallel pytest processes (e.g. pytest-xdist).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    import paramiko

__all__ = [
    "FluxInstance",
    "SSHNodes",
    "SlurmCluster",
    "SlurmCommandError",
    "SlurmNodes",
    "flux",
    "flux_instance",
    "free_port",
    "need_service",
    "running_flux",
    "slurm",
    "slurm_cluster",
    "slurm_nodes",
    "slurm_nodes_cluster",
    "ssh_nodes",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SLURM_SCRIPT = REPO_ROOT / "scripts" / "slurm-cluster.sh"
SSH_SCRIPT = REPO_ROOT / "scripts" / "ssh-nodes.sh"
#: Held (flock) while a session's Slurm cluster runs: one cluster per machine.
SLURM_TURN_LOCK = "/tmp/jsd-slurm.turn.lock"

#: Generous: on a fresh machine ``start`` includes ``apt-get update`` and an install.
SCRIPT_START_TIMEOUT = 900.0
SCRIPT_STOP_TIMEOUT = 240.0
#: One Slurm client call (squeue, scancel, ...). A dead controller takes ~9 s to report.
CLIENT_TIMEOUT = 30.0

#: Slurm job states after which a job will not change any more.
FINAL_JOB_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)

_SUBMIT_RE = re.compile(r"_slurm_rpc_submit_batch_job: JobId=(\d+)\b")

SSH_HOSTS = ("127.0.0.1", "127.0.0.2")


def need_service(reason: str) -> NoReturn:
    """Give up on a test whose external service is unavailable.

    Skips the test with ``reason``, or fails it when the environment variable ``CI`` is
    ``true``: CI must run the real services, so a missing one is an error there.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(f"required test service unavailable (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


def _tail(text: str, lines: int = 40) -> str:
    """Return the last ``lines`` lines of ``text``."""
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_script(args: Sequence[str | Path], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run one of the service scripts with bash; stdout and stderr are merged.

    A timeout is reported as a failed run (returncode -1) rather than raised.
    """
    cmd = ["bash", *(str(a) for a in args)]
    try:
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else exc.output
        return subprocess.CompletedProcess(
            cmd, -1, f"{out or ''}\n(timed out after {timeout:.0f}s)"
        )


def _preflight(script: Path) -> None:
    """Skip/fail early when a service script cannot possibly work here."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        need_service(f"{script.name} needs root (daemons, apt-get); running as non-root")
    if shutil.which("bash") is None:
        need_service("bash is not installed")
    if not script.is_file():
        need_service(f"missing {script}")


# --------------------------------------------------------------------------- Slurm


class SlurmCommandError(subprocess.CalledProcessError):
    """A Slurm client command failed; the message includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()}"


@dataclass(frozen=True)
class SlurmCluster:
    """A running single-node Slurm cluster.

    ``dir`` holds ``slurm.conf``, ``env``, ``state/``, ``spool/``, ``run/`` (PID files) and
    ``log/`` (``slurmctld.log``, ``slurmd.log``, ``jobcomp.txt``). ``env`` is a complete
    environment for subprocesses (``os.environ`` plus ``SLURM_CONF``).
    """

    dir: Path
    env: dict[str, str] = field(hash=False, repr=False)

    @property
    def conf(self) -> Path:
        """Path of the cluster's ``slurm.conf``."""
        return self.dir / "slurm.conf"

    @property
    def log_dir(self) -> Path:
        """Directory with the daemons' logs and the jobcomp file."""
        return self.dir / "log"

    def run(
        self, *args: str, check: bool = True, timeout: float = CLIENT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command (e.g. ``run("sbatch", "--wrap", "true")``) on this cluster.

        Raises :class:`subprocess.CalledProcessError` (with stderr in the message) when
        ``check`` is true and the command fails.
        """
        proc = subprocess.run(
            list(args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise SlurmCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def submitted_job_ids(self) -> list[int]:
        """Job ids of every batch submission (``sbatch``) that reached the controller.

        Parsed from ``slurmctld.log`` lines ``_slurm_rpc_submit_batch_job: JobId=N``, in
        submission order, since the cluster started. An array submission counts once
        (its first job id); ``srun``/``salloc`` allocations are not counted.
        """
        log = self.log_dir / "slurmctld.log"
        try:
            text = log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [int(m.group(1)) for m in _SUBMIT_RE.finditer(text)]

    def queue(self) -> list[str]:
        """Ids (``%i``, e.g. ``12`` or ``9_[0-3]``) of the jobs still in the queue.

        Finished jobs are not included (they stay visible only with ``-t all``).
        """
        out = self.run("squeue", "-h", "-o", "%i").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def job_state(self, job_id: int | str) -> str | None:
        """State of a job (``PENDING``, ``RUNNING``, ``COMPLETED``, ...), finished or not.

        Returns ``None`` when the controller does not know the id. For an array job the
        state of its first listed task is returned.
        """
        proc = self.run("squeue", "-t", "all", "-h", "-o", "%T", "-j", str(job_id), check=False)
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        return lines[0] if proc.returncode == 0 and lines else None

    def wait_job(
        self,
        job_id: int | str,
        timeout: float = 60.0,
        states: frozenset[str] | set[str] = FINAL_JOB_STATES,
    ) -> str:
        """Poll until the job reaches one of ``states`` (default: any final state).

        Returns the state reached; raises :class:`TimeoutError` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        state = None
        while True:
            state = self.job_state(job_id)
            if state in states:
                return state
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"job {job_id} still {state} after {timeout:.0f}s (wanted one of"
                    f" {sorted(states)}); slurmctld.log tail:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def cancel_all(self) -> None:
        """Cancel every job in the queue (does not wait; see :meth:`wait_idle`)."""
        ids = self.run("squeue", "-h", "-o", "%A").stdout.split()
        if ids:
            # scancel's exit code says nothing about unknown ids; the queue is what counts.
            self.run("scancel", *sorted(set(ids)), check=False)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the queue is empty; raise :class:`TimeoutError` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.queue()
            if not left:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Slurm queue still not empty after {timeout:.0f}s: {left}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30, name: str = "slurmctld.log") -> str:
        """Last ``lines`` lines of one of the cluster's logs (for error messages)."""
        try:
            return _tail((self.log_dir / name).read_text(errors="replace"), lines)
        except FileNotFoundError:
            return f"(no {name})"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start a real single-node Slurm cluster for the session and stop it at the end.

    Sets ``os.environ["SLURM_CONF"]`` for the session (restored afterwards).
    """
    _preflight(SLURM_SCRIPT)
    # Ports 6817/6818 are fixed: pytest processes of other checkouts on this machine take
    # turns instead of failing on a cluster that another one started.
    turn = open(SLURM_TURN_LOCK, "w")  # noqa: SIM115 - held for the whole session
    fcntl.flock(turn, fcntl.LOCK_EX)
    cluster_dir = Path(tempfile.mkdtemp(prefix="jsd-slurm-", dir="/tmp"))
    started = _run_script([SLURM_SCRIPT, "start", cluster_dir], SCRIPT_START_TIMEOUT)
    if started.returncode != 0:
        stopped = _run_script([SLURM_SCRIPT, "stop", cluster_dir], SCRIPT_STOP_TIMEOUT)
        if stopped.returncode == 0:
            shutil.rmtree(cluster_dir, ignore_errors=True)
        turn.close()
        need_service(
            f"could not start the Slurm test cluster (scripts/slurm-cluster.sh start"
            f" {cluster_dir}, exit {started.returncode}):\n{_tail(started.stdout)}"
        )
    conf = str(cluster_dir / "slurm.conf")
    cluster = SlurmCluster(dir=cluster_dir, env={**os.environ, "SLURM_CONF": conf})
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield cluster
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        stopped = _run_script([SLURM_SCRIPT, "stop", cluster_dir], SCRIPT_STOP_TIMEOUT)
        if stopped.returncode != 0:
            turn.close()
            pytest.fail(
                f"could not stop the Slurm test cluster in {cluster_dir} (kept for"
                f" inspection; exit {stopped.returncode}):\n{_tail(stopped.stdout)}",
                pytrace=False,
            )
        shutil.rmtree(cluster_dir, ignore_errors=True)
        turn.close()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """Provide the session's Slurm cluster with an empty queue before and after the test."""
    if slurm_cluster.queue():
        slurm_cluster.cancel_all()
        slurm_cluster.wait_idle(timeout=60.0)
    yield slurm_cluster
    slurm_cluster.cancel_all()
    slurm_cluster.wait_idle(timeout=60.0)


# --------------------------------------------------------------------------- SSH


@dataclass(frozen=True)
class SSHNodes:
    """Real sshd servers, one per host address, all on ``port`` and sharing one host key.

    Log in as ``user`` with ``key_file``; ``known_hosts`` lists every host as
    ``[HOST]:PORT ssh-ed25519 ...`` (so ``RejectPolicy`` / ``StrictHostKeyChecking=yes``
    work). All nodes are this machine: they share its filesystem.
    """

    dir: Path
    port: int
    hosts: tuple[str, ...]
    key_file: Path
    known_hosts: Path
    user: str = "root"

    def ssh_args(self, host: str) -> list[str]:
        """Return an OpenSSH command prefix for ``host``: append the remote command."""
        return [
            "ssh",
            "-p",
            str(self.port),
            "-i",
            str(self.key_file),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            f"{self.user}@{host}",
        ]

    def connect(self, host: str, timeout: float = 10.0) -> paramiko.SSHClient:
        """Return a connected ``paramiko.SSHClient`` for ``host`` (``RejectPolicy``, our key).

        The caller closes it. Needs paramiko installed.
        """
        import paramiko

        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                host,
                port=self.port,
                username=self.user,
                key_filename=str(self.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
        except BaseException:
            client.close()
            raise
        return client

    def stop_host(self, host: str) -> None:
        """Take one node down: stop its sshd and end its sessions."""
        self._script("stop", str(self.dir), host)

    def start_host(self, host: str) -> None:
        """Bring a node back up (same host key, so ``known_hosts`` still matches)."""
        self._script("start", str(self.dir), str(self.port), host)

    def _script(self, *args: str) -> None:
        proc = _run_script([SSH_SCRIPT, *args], SCRIPT_START_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(
                f"scripts/ssh-nodes.sh {' '.join(args)} failed (exit {proc.returncode}):\n"
                f"{_tail(proc.stdout)}"
            )


def _can_bind(host: str, port: int) -> bool:
    """Whether a listening socket could be bound on ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as sshd does
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(hosts: Sequence[str] = SSH_HOSTS, attempts: int = 50) -> int:
    """Return a TCP port that is free on every address in ``hosts`` (asked of the kernel)."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((hosts[0], 0))
            port = int(sock.getsockname()[1])
        if all(_can_bind(host, port) for host in hosts):
            return port
    raise RuntimeError(f"no TCP port free on all of {list(hosts)} after {attempts} tries")


@pytest.fixture(scope="session")
def ssh_nodes() -> Iterator[SSHNodes]:
    """Start sshd on 127.0.0.1 and 127.0.0.2 (one free port) for the session."""
    _preflight(SSH_SCRIPT)
    nodes_dir = Path(tempfile.mkdtemp(prefix="jsd-ssh-", dir="/tmp"))
    output = ""
    port = 0
    for _ in range(3):  # the port may be taken between free_port() and sshd's bind
        port = free_port(SSH_HOSTS)
        started = _run_script(
            [SSH_SCRIPT, "start", nodes_dir, str(port), *SSH_HOSTS], SCRIPT_START_TIMEOUT
        )
        if started.returncode == 0:
            break
        output = started.stdout
        _run_script([SSH_SCRIPT, "stop", nodes_dir], SCRIPT_STOP_TIMEOUT)
    else:
        shutil.rmtree(nodes_dir, ignore_errors=True)
        need_service(
            f"could not start the SSH test nodes (scripts/ssh-nodes.sh start {nodes_dir}"
            f" PORT {' '.join(SSH_HOSTS)}):\n{_tail(output)}"
        )
    nodes = SSHNodes(
        dir=nodes_dir,
        port=port,
        hosts=SSH_HOSTS,
        key_file=nodes_dir / "id_ed25519",
        known_hosts=nodes_dir / "known_hosts",
    )
    try:
        yield nodes
    finally:
        stopped = _run_script([SSH_SCRIPT, "stop", nodes_dir], SCRIPT_STOP_TIMEOUT)
        if stopped.returncode != 0:
            pytest.fail(
                f"could not stop the SSH test nodes in {nodes_dir} (kept for inspection;"
                f" exit {stopped.returncode}):\n{_tail(stopped.stdout)}",
                pytrace=False,
            )
        shutil.rmtree(nodes_dir, ignore_errors=True)


# --------------------------------------------------------------------------- Flux

#: Where ../shared/flux/install.sh installs flux-core (the build has this prefix compiled in).
FLUX_PREFIX = Path("/opt/flux-core")
FLUX_BROKERS = 4
FLUX_START_TIMEOUT = 60.0


def flux_command() -> str | None:
    """The ``flux`` to test with: the one on PATH, else the shared build's, else None."""
    found = shutil.which("flux")
    if found:
        return found
    shared = FLUX_PREFIX / "bin" / "flux"
    return str(shared) if os.access(shared, os.X_OK) else None


@dataclass(frozen=True)
class FluxInstance:
    """A running ``flux start --test-size=4`` instance, reached through ``uri``.

    ``env`` is a complete environment for subprocesses: ``os.environ`` plus ``FLUX_URI``, the
    folder of ``flux`` first on ``PATH``, and ASCII job ids (``FLUX_F58_FORCE_ASCII``). Every
    broker is this machine (2 cores each here), all on one filesystem.
    """

    dir: Path
    uri: str
    flux: str
    brokers: int
    env: dict[str, str] = field(hash=False, repr=False)

    @property
    def bindir(self) -> str:
        """The folder of the ``flux`` command (put first on PATH for the code under test)."""
        return str(Path(self.flux).parent)

    def run(self, *args: str, check: bool = True,
            timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``flux ARGS...`` against this instance (raises on failure when ``check``)."""
        proc = subprocess.run([self.flux, *args], env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout,
                                                proc.stderr)
        return proc

    def jobs(self, name: str | None = None) -> list[dict[str, object]]:
        """Every job the instance knows (active or not), as ``flux jobs -a --json`` has it."""
        args = ["jobs", "-a", "--json", *([f"--name={name}"] if name else [])]
        data = json.loads(self.run(*args).stdout or "{}")
        return list(data.get("jobs", []))

    def drain(self, timeout: float = 60.0) -> None:
        """Cancel every job still queued or running and wait until none is left."""
        self.run("cancel", "--all", check=False)
        self.run("queue", "drain", f"--timeout={timeout:.0f}s", timeout=timeout + 10)


def _flux_env(flux_bin: str, uri: str | None) -> dict[str, str]:
    env = {**os.environ, "FLUX_F58_FORCE_ASCII": "1"}
    env["PATH"] = f"{Path(flux_bin).parent}{os.pathsep}{env.get('PATH', '')}"
    if uri:
        env["FLUX_URI"] = uri
    return env


@contextlib.contextmanager
def running_flux(brokers: int = FLUX_BROKERS) -> Iterator[FluxInstance]:
    """Start ``flux start --test-size=BROKERS``, yield it, shut it down and remove its folder.

    Gives up through :func:`need_service` when flux is missing or does not start; fails the
    test when the instance does not shut down (its folder is then kept, with the broker log).
    """
    flux_bin = flux_command()
    if flux_bin is None:
        need_service("flux is not installed: run ./scripts/test (it installs flux-core from"
                     " ../shared/flux/install.sh), or put flux on PATH")
    folder = Path(tempfile.mkdtemp(prefix="jsd-flux-", dir="/tmp"))
    urifile = folder / "uri"
    log = open(folder / "broker.log", "w")  # noqa: SIM115 - the broker writes it all along
    env = _flux_env(flux_bin, None)
    env.pop("FLUX_URI", None)  # a test run inside an instance still starts its own
    # The initial program publishes the URI, then keeps the instance up until shutdown.
    proc = subprocess.Popen(
        [flux_bin, "start", f"--test-size={brokers}", "bash", "-c",
         'echo "$FLUX_URI" >"$0.tmp" && mv "$0.tmp" "$0" && exec sleep infinity', str(urifile)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder,
        start_new_session=True)
    deadline = time.monotonic() + FLUX_START_TIMEOUT
    while not urifile.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not urifile.exists():
        _stop_flux(proc, flux_bin, None, env)
        log.close()
        text = _tail((folder / "broker.log").read_text(errors="replace"))
        shutil.rmtree(folder, ignore_errors=True)
        need_service(f"could not start Flux ({flux_bin} start --test-size={brokers},"
                     f" exit {proc.returncode}):\n{text}")
    uri = urifile.read_text().strip()
    try:
        yield FluxInstance(dir=folder, uri=uri, flux=flux_bin, brokers=brokers,
                           env=_flux_env(flux_bin, uri))
    finally:
        stopped = _stop_flux(proc, flux_bin, uri, env)
        log.close()
        if not stopped:
            pytest.fail(f"the Flux test instance did not shut down; its log is in {folder}",
                        pytrace=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def flux_instance() -> Iterator[FluxInstance]:
    """A 4-broker Flux instance for the whole session, shut down at its end."""
    with running_flux() as instance:
        yield instance


def _stop_flux(proc: subprocess.Popen[bytes], flux_bin: str, uri: str | None,
               env: dict[str, str]) -> bool:
    """Shut the instance down cleanly, else kill its process group; True if it stopped."""
    if uri and proc.poll() is None:
        subprocess.run([flux_bin, "shutdown", "--quiet"],
                       env={**env, "FLUX_URI": uri}, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=SCRIPT_STOP_TIMEOUT, check=False)
    try:
        proc.wait(timeout=30 if uri else 0.1)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # our own session: flux start and its brokers only
        proc.wait(timeout=30)
        return False


@pytest.fixture
def flux(flux_instance: FluxInstance, monkeypatch: pytest.MonkeyPatch) -> Iterator[FluxInstance]:
    """The session's Flux, reachable through os.environ for this test; its jobs ended after."""
    monkeypatch.setenv("FLUX_URI", flux_instance.uri)
    monkeypatch.setenv("FLUX_F58_FORCE_ASCII", "1")
    monkeypatch.setenv("PATH", flux_instance.env["PATH"])
    yield flux_instance
    flux_instance.drain()


# --------------------------------------------------------------------------- Slurm, N nodes

SLURM_NODES_SCRIPT = REPO_ROOT / "scripts" / "slurm-nodes.sh"
#: Held while a session's multi-node cluster runs: its /24, port and namespace names are
#: fixed. Not the single-node cluster's lock, so one session can hold both.
SLURM_NODES_TURN_LOCK = "/tmp/jsd-slurm-nodes.turn.lock"
#: Node count of the session's multi-node cluster (the script also does 3 and more).
SLURM_NODES_COUNT = 2
SLURM_NODES_SUBNET = "10.231.77"


@dataclass(frozen=True)
class SlurmNodes(SlurmCluster):
    """A running multi-node Slurm cluster from ``scripts/slurm-nodes.sh``.

    Each node (``n1``, ``n2``, ...) has its own network namespace and address, hostname and
    ``/tmp``, a slurmd and an sshd on port 22 (root, ``key_file``, ``known_hosts``). Only
    ``shared`` (and the rest of this machine outside ``/tmp``) is seen by every node at the
    same path: put spec folders there.
    """

    addresses: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node names, in order."""
        return tuple(self.addresses)

    @property
    def shared(self) -> Path:
        """A folder every node sees at the same path (the nodes' ``/tmp`` is their own)."""
        return self.dir / "shared"

    @property
    def key_file(self) -> Path:
        """The client key authorized for root on every node."""
        return self.dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """``ADDRESS ssh-ed25519 ...`` for every node (port 22)."""
        return self.dir / "ssh" / "known_hosts"

    def node_tmp(self, node: str) -> Path:
        """Where node ``node``'s ``/tmp`` lives on this machine (to check what reached it)."""
        return self.dir / "nodes" / node / "tmp"

    def on_node(self, node: str, command: str, timeout: float = 30.0
                ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on ``node`` over ssh; returns the finished process."""
        return subprocess.run(
            ["ssh", "-i", str(self.key_file), "-o", f"UserKnownHostsFile={self.known_hosts}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-o", "IdentitiesOnly=yes", f"root@{self.addresses[node]}", command],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False)

    def kill_node(self, node: str) -> None:
        """A node failure: every process on ``node`` (slurmd, steps, jobs, sshd) is killed."""
        self._script("kill-node", node)

    def revive_node(self, node: str) -> None:
        """Boot ``node`` again (empty ``/tmp``) and wait until Slurm has it idle."""
        self._script("revive-node", node)

    def node_states(self) -> dict[str, str]:
        """``sinfo`` state of every node (``idle``, ``alloc``, ``down*``, ...)."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def _script(self, *args: str) -> None:
        proc = _run_script([SLURM_NODES_SCRIPT, args[0], self.dir, *args[1:]],
                           SCRIPT_START_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/slurm-nodes.sh {' '.join(args)} failed (exit"
                               f" {proc.returncode}):\n{_tail(proc.stdout)}")


@pytest.fixture(scope="session")
def slurm_nodes_cluster() -> Iterator[SlurmNodes]:
    """Start a real multi-node Slurm cluster for the session and stop it at the end.

    Unlike ``slurm_cluster`` it does not set ``SLURM_CONF`` for the session (the two
    clusters can run side by side): use ``slurm_nodes``, or pass ``cluster.env``.
    """
    _preflight(SLURM_NODES_SCRIPT)
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            need_service(f"{tool} is not installed (iproute2, util-linux)")
    turn = open(SLURM_NODES_TURN_LOCK, "w")  # noqa: SIM115 - held for the whole session
    fcntl.flock(turn, fcntl.LOCK_EX)
    cluster_dir = Path(tempfile.mkdtemp(prefix="jsd-nodes-", dir="/tmp"))
    started = _run_script([SLURM_NODES_SCRIPT, "start", cluster_dir, str(SLURM_NODES_COUNT)],
                          SCRIPT_START_TIMEOUT)
    if started.returncode != 0:
        _run_script([SLURM_NODES_SCRIPT, "stop", cluster_dir], SCRIPT_STOP_TIMEOUT)
        turn.close()
        need_service(f"could not start the multi-node Slurm cluster (scripts/slurm-nodes.sh"
                     f" start {cluster_dir}, exit {started.returncode}):\n"
                     f"{_tail(started.stdout)}")
    (cluster_dir / "shared").mkdir()
    addresses = {f"n{i}": f"{SLURM_NODES_SUBNET}.{10 + i}"
                 for i in range(1, SLURM_NODES_COUNT + 1)}
    cluster = SlurmNodes(dir=cluster_dir,
                         env={**os.environ, "SLURM_CONF": str(cluster_dir / "slurm.conf")},
                         addresses=addresses)
    try:
        yield cluster
    finally:
        stopped = _run_script([SLURM_NODES_SCRIPT, "stop", cluster_dir], SCRIPT_STOP_TIMEOUT)
        turn.close()
        if stopped.returncode != 0:
            pytest.fail(f"could not stop the multi-node cluster in {cluster_dir} (kept for"
                        f" inspection; exit {stopped.returncode}):\n{_tail(stopped.stdout)}",
                        pytrace=False)
        shutil.rmtree(cluster_dir, ignore_errors=True)


@pytest.fixture
def slurm_nodes(slurm_nodes_cluster: SlurmNodes,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmNodes]:
    """The session's multi-node cluster, every node up and the queue empty before and after;
    ``SLURM_CONF`` points at it during the test."""
    cluster = slurm_nodes_cluster
    down = [n for n, state in cluster.node_states().items() if state != "idle"]
    for node in down:  # a test that killed a node and failed before reviving it
        cluster.revive_node(node)
    if cluster.queue():
        cluster.cancel_all()
        cluster.wait_idle(timeout=60.0)
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    yield cluster
    cluster.cancel_all()
    cluster.wait_idle(timeout=60.0)
