"""Submitting to Flux: `jobspec-do --no-wait -t flux` against Flux's own ways, in one run.

Cases (each submits N jobs running ``true`` and returns once all are submitted; the time to
run them is not counted, and the queue is drained between cases):

- ``jobspec-do, N tasks``: a spec of N independent tasks, ``jobspec-do --no-wait -t flux``
  as a user runs it (a new process: start-up, validation, plan, five records per task).
- ``jobspec-do, 1 task x N replicas``: one task with ``replicas: N`` (one submission, --cc).
- ``flux.job.submit_async``: Flux's Python API in this process, N futures, then their ids
  (the floor: no process per job, nothing recorded).
- ``flux submit loop``: ``flux submit true`` N times from a shell loop (a process per job).

Rounds are interleaved; medians are printed with each case's ratio to ``submit_async``.
Uses the instance at $FLUX_URI, else starts ``flux start --test-size=4`` (stopped at the end).

    python benchmarks/flux_submit.py --n 200 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dodo_jobspec.transformers import flux_bindings  # noqa: E402


def spec_text(kind: str, n: int) -> str:
    """N tasks running `true`, or one task with N replicas."""
    if kind == "replicas":
        return ("version: 1\nname: replicas\ntasks:\n"
                f"- {{name: t, replicas: {n}, command: [true]}}\n")
    return "version: 1\nname: separate\ntasks:\n" + "".join(
        f"- {{name: t{i}, command: [true]}}\n" for i in range(n))


def jobspec_do_case(kind: str, n: int, work: Path) -> Callable[[], int]:
    """A fresh spec folder per round; returns the number of jobs the run submitted."""
    def run() -> int:
        folder = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
        spec = folder / "spec.yaml"
        spec.write_text(spec_text(kind, n))
        proc = subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", "--no-wait", "-q",
                               "-t", "flux", str(spec)], cwd=folder, capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"jobspec-do failed ({proc.returncode}): {proc.stderr}")
        return n
    return run


def submit_async_case(n: int) -> Callable[[], int]:
    bindings = flux_bindings.find()
    if bindings is None:
        raise SystemExit(f"the flux Python bindings: {flux_bindings.why_missing()}")
    flux = bindings.module
    handle = flux.Flux()

    def run() -> int:
        js = flux.job.JobspecV1.from_command(["true"])
        js.cwd = os.getcwd()
        js.environment = dict(os.environ)
        futures = [flux.job.submit_async(handle, js) for _ in range(n)]
        return len([f.get_id() for f in futures])
    return run


def cli_loop_case(n: int) -> Callable[[], int]:
    def run() -> int:
        subprocess.run(["bash", "-c", f'for i in $(seq {n}); do flux submit true; done'],
                       check=True, stdout=subprocess.DEVNULL)
        return n
    return run


@contextmanager
def instance() -> Iterator[None]:
    """$FLUX_URI's instance, or a 4-broker one started here for the run."""
    if os.environ.get("FLUX_URI"):
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix="jsd-bench-flux-"))
    uri = folder / "uri"
    proc = subprocess.Popen(["flux", "start", "--test-size=4", "bash", "-c",
                             f'echo "$FLUX_URI" > {uri}.tmp && mv {uri}.tmp {uri} && '
                             "exec sleep infinity"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while not uri.exists():
        if proc.poll() is not None:
            raise SystemExit("flux start failed")
        time.sleep(0.05)
    os.environ["FLUX_URI"] = uri.read_text().strip()
    try:
        yield
    finally:
        subprocess.run(["flux", "shutdown", "--quiet"], check=False, capture_output=True)
        proc.wait(timeout=60)
        del os.environ["FLUX_URI"]
        shutil.rmtree(folder, ignore_errors=True)


def drain() -> None:
    subprocess.run(["flux", "queue", "drain", "--timeout=300s"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="jobs per case (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--skip-cli-loop", action="store_true",
                    help="leave out the flux submit loop (about 0.13 s per job)")
    args = ap.parse_args()
    if shutil.which("flux") is None:
        raise SystemExit("flux is not on PATH (see ../shared/flux/README.md)")
    os.environ["FLUX_F58_FORCE_ASCII"] = "1"
    with instance(), tempfile.TemporaryDirectory(prefix="jsd-bench-") as tmp:
        work = Path(tmp)
        cases: dict[str, Callable[[], int]] = {
            f"jobspec-do, {args.n} tasks": jobspec_do_case("separate", args.n, work),
            f"jobspec-do, 1 task x {args.n} replicas": jobspec_do_case("replicas", args.n, work),
            "flux.job.submit_async": submit_async_case(args.n),
        }
        if not args.skip_cli_loop:
            cases["flux submit loop"] = cli_loop_case(args.n)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, case in cases.items():
                drain()
                start = time.perf_counter()
                submitted = case()
                times[name].append(time.perf_counter() - start)
                assert submitted == args.n, (name, submitted)
        drain()
    floor = statistics.median(times["flux.job.submit_async"])
    print(f"| {args.n} jobs, median of {args.rounds} | seconds to submit | x submit_async |")
    print("|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {med / floor:.2f} |")


if __name__ == "__main__":
    main()
