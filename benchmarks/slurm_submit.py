"""Slurm submission rate: jobspec-do against a raw `sbatch` loop, side by side on one cluster.

Two modes, both against one real Slurm cluster (SLURM_CONF, or ``--start DIR`` to start a
private one with scripts/slurm-cluster.sh and stop it at the end):

``--mode loop`` (the default; #23's target: jobspec-do at >= 0.8x the loop's rate). Interleaved
over ``--rounds``, rotating which case goes first, each case from a fresh folder and with the
queue emptied (scancel, then until squeue is empty) before it:

  loop          a shell loop of ``sbatch --parsable -o OUT -e ERR t.sh`` for N jobs (one
                trivial script file, as jobspec-do submits a script file per task)
  no-wait       the whole ``jobspec-do run --no-wait -q -t slurm fan.yaml`` process, N
                independent tasks: every sbatch of one tick, records included
  loop-chain    the loop with each job ``--dependency=afterok:<previous id>``
  no-wait-chain ``jobspec-do run --no-wait`` of a chain of N tasks (each needs the one
                before, so each sbatch waits for the previous job id)
  blocking      ``jobspec-do run -q -t slurm -j J fan.yaml`` until every job is done, beside
  loop+wait     the loop, then polling squeue (0.2 s) until its jobs have left the queue

With ``--baseline DIR`` (another checkout of jobspec-do, e.g. a `git worktree` of main) every
jobspec-do case may also be asked for as ``CASE@base``: the same command run by DIR's code
(this venv's Python with DIR first on sys.path), interleaved in the same rounds, so that a
change is timed beside what it changes at the same load:

    python benchmarks/slurm_submit.py --start /tmp/bench-slurm --install here \
        --baseline /tmp/main-checkout --cases loop-chain,no-wait-chain,no-wait-chain@base

Each jobspec-do case is checked: exactly N distinct job ids recorded, one per task, and
the state folder says queued (or completed); a failed check makes the exit status 1.

    python benchmarks/slurm_submit.py --start /tmp/bench-slurm -n 200 --rounds 3

``--mode transformer`` (in-process, SlurmTransformer.submit() one at a time): N separate tasks
against one N-replica task (a job array), each until all done.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dodo_jobspec.spec.model import Spec, Unit  # noqa: E402
from dodo_jobspec.spec.resolve import load  # noqa: E402
from dodo_jobspec.transformers.base import TransformerOptions, UnitContext  # noqa: E402
from dodo_jobspec.transformers.slurm import SlurmTransformer  # noqa: E402


def spec_text(kind: str, n: int) -> str:
    """N tasks running `true`, or one task with N replicas."""
    if kind == "array":
        return f"version: 1\nname: array\ntasks:\n- {{name: t, replicas: {n}, command: [true]}}\n"
    return "version: 1\nname: separate\ntasks:\n" + "".join(
        f"- {{name: t{i}, command: [true]}}\n" for i in range(n))


def context(spec: Spec, unit: Unit, root: Path) -> UnitContext:
    work = root / unit.key
    return UnitContext(spec=spec, workdir=work, attempt=1, token=uuid.uuid4().hex,
                       stdout=work / "stdout.1", stderr=work / "stderr.1", cwd=root)


def measure(kind: str, n: int, root: Path) -> dict[str, float | int | str]:
    """Submit the workload, then poll until every job is terminal."""
    folder = root / kind
    folder.mkdir(parents=True)
    path = folder / "spec.yaml"
    path.write_text(spec_text(kind, n))
    t = SlurmTransformer(TransformerOptions(poll_interval=0.5))
    spec = load(path, default_resources=t.default_resources)
    units = t.units(spec)
    contexts = [context(spec, u, folder) for u in units]  # outside the timed loop
    start = time.perf_counter()
    ids = [t.submit(u, ctx) for u, ctx in zip(units, contexts, strict=True)]
    submitted = time.perf_counter() - start
    pending = set(ids)
    while pending:
        done = t.status(sorted(pending))
        pending -= {i for i, st in done.items() if st.state.terminal}
        if pending:
            time.sleep(0.5)
    total = time.perf_counter() - start
    states = t.status(ids)
    failed = sum(1 for st in states.values() if st.state.value != "completed")
    return {"case": kind, "tasks": n, "sbatch_calls": len(ids),
            "submit_seconds": round(submitted, 3),
            "tasks_submitted_per_second": round(n / submitted, 1),
            "sbatch_calls_per_second": round(len(ids) / submitted, 1),
            "seconds_until_all_done": round(total, 2), "not_completed": failed}


def wait_empty_queue(timeout: float = 120) -> None:
    """Until squeue lists no pending or running job (finished ones stay for MinJobAge)."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                         check=True).stdout.strip():
        if time.monotonic() > deadline:
            raise SystemExit("the Slurm queue did not empty; is another workload running?")
        time.sleep(0.2)


def drain() -> None:
    """Cancel every job and wait for an empty queue: one case's jobs must not slow the next."""
    subprocess.run(["scancel", "--me"], capture_output=True, check=False)
    wait_empty_queue()


# --- --mode loop: jobspec-do against a raw sbatch loop ---------------------------------------

LOOP = r"""set -e
cd "$1"; n=$2
for i in $(seq "$n"); do
    sbatch --parsable -o "out/$i.out" -e "out/$i.err" t.sh >> ids.txt
done
"""
LOOP_CHAIN = r"""set -e
cd "$1"; n=$2
prev=$(sbatch --parsable -o out/1.out -e out/1.err t.sh); echo "$prev" >> ids.txt
for i in $(seq 2 "$n"); do
    prev=$(sbatch --parsable --dependency="afterok:$prev" --kill-on-invalid-dep=yes \
           -o "out/$i.out" -e "out/$i.err" t.sh)
    echo "$prev" >> ids.txt
done
"""
CASES = ("loop", "no-wait", "loop-chain", "no-wait-chain", "loop+wait", "blocking")
PEER = {"no-wait": "loop", "no-wait-chain": "loop-chain", "blocking": "loop+wait"}
BASE = "@base"  # suffix of a case run by the --baseline checkout's code


def base_case(case: str) -> str:
    """The case a ``CASE@base`` runs (``no-wait-chain@base`` -> ``no-wait-chain``)."""
    return case.removesuffix(BASE)


def workload_spec(kind: str, n: int) -> str:
    """N tasks running `true`: independent (fan) or each after the one before (chain)."""
    lines = ["version: 1", f"name: {kind}", "tasks:"]
    for i in range(n):
        after = f", depends_on: [t{i - 1}]" if kind == "chain" and i else ""
        lines.append(f"- {{name: t{i}, command: [true]{after}}}")
    return "\n".join(lines) + "\n"


def prepare(case: str, n: int, folder: Path) -> None:
    """The case's input files, written before (and outside) the timed part."""
    folder.mkdir(parents=True)
    case = base_case(case)
    if case.startswith("loop"):
        (folder / "out").mkdir()
        (folder / "t.sh").write_text("#!/bin/sh\ntrue\n")
        (folder / "run.sh").write_text(LOOP_CHAIN if case == "loop-chain" else LOOP)
    else:
        kind = "chain" if case.endswith("chain") else "fan"
        (folder / "spec.yaml").write_text(workload_spec(kind, n))


def command(case: str, n: int, folder: Path, jsd: list[str], jobs: int) -> list[str]:
    """The timed command line of ``case`` (``jsd``: the jobspec-do that runs it)."""
    case = base_case(case)
    if case.startswith("loop"):
        return ["bash", str(folder / "run.sh"), str(folder), str(n)]
    if case == "blocking":
        return [*jsd, "run", "-q", "-t", "slurm", "-j", str(jobs), "spec.yaml"]
    return [*jsd, "run", "--no-wait", "-q", "-t", "slurm", "spec.yaml"]


def wait_gone(ids: set[str], timeout: float = 600) -> None:
    """Until none of ``ids`` is pending or running (a user's loop would poll like this)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                             check=True).stdout.split()
        if not ids.intersection(out) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def check(case: str, n: int, folder: Path, jsd: list[str]) -> str | None:
    """Why the case did not submit exactly N jobs, one per task, or None.

    jobspec-do's records are read through `status --json` (what a user reads), not files."""
    if base_case(case).startswith("loop"):
        ids = (folder / "ids.txt").read_text().split()
        ok = len(ids) == len(set(ids)) == n and all(i.isdigit() for i in ids)
        return None if ok else f"{case}: {len(set(ids))} distinct job ids for {n} jobs"
    out = subprocess.run([*jsd, "status", "--json", "spec.yaml"], cwd=folder,
                         capture_output=True, text=True, check=False)
    try:
        units = json.loads(out.stdout)["units"]
    except (ValueError, KeyError) as exc:
        return f"{case}: `jobspec-do status --json` gave no units ({exc}): {out.stderr[-300:]}"
    ids = {u["job_id"] for u in units if str(u.get("job_id") or "").isdigit()
           and u.get("state") in ("queued", "running", "done", "completed")}
    if len(units) != n or len(ids) != n:
        states = sorted({str(u.get("state")) for u in units})
        return f"{case}: {len(ids)} distinct job ids for {len(units)} of {n} tasks ({states})"
    return None


def time_case(case: str, n: int, folder: Path, jsd: list[str], jobs: int
              ) -> tuple[float, float, str | None]:
    """Run one case from its fresh folder: its wall time, its CPU time (user + system, the
    process and what it waited for: its sbatch calls), and why it failed (or None)."""
    prepare(case, n, folder)
    drain()
    argv = command(case, n, folder, jsd, jobs)
    case = base_case(case)
    with open(folder / "out.log", "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        # A blocking wait: no polling granularity in the time. wait4 also gives the CPU,
        # which tracks the wall time once other sessions hold the two cores.
        _, raw, usage = os.wait4(proc.pid, 0)
        proc.returncode = rc = os.waitstatus_to_exitcode(raw)
        cpu = usage.ru_utime + usage.ru_stime
        if case == "loop+wait" and rc == 0:
            wait_gone(set((folder / "ids.txt").read_text().split()))
        seconds = time.perf_counter() - start
    if rc != 0:
        return seconds, cpu, f"{case}: exit {rc}; see {folder / 'out.log'}"
    return seconds, cpu, check(case, n, folder, jsd)


def jobspec_command(how: str, workdir: Path) -> list[str]:
    """jobspec-do as a user installs it (a wheel of this tree in a fresh venv), or this venv's."""
    if how == "here":
        return [str(Path(sys.executable).parent / "jobspec-do")]
    sys.path.insert(0, str(REPO / "benchmarks"))
    import install  # a sibling module: this file is run as a script

    print("installing a wheel of this tree ...", file=sys.stderr)
    return [str(install.install(REPO, workdir / "venv"))]


def baseline_command(checkout: Path, workdir: Path) -> list[str]:
    """jobspec-do from another checkout's code, run by this venv's Python: a script of the
    same shape as the installed entry point, with the checkout first on sys.path. Its
    bytecode is compiled first, so that no round pays for it."""
    checkout = checkout.resolve()
    if not (checkout / "dodo_jobspec" / "cli" / "quick.py").is_file():
        raise SystemExit(f"--baseline {checkout}: not a jobspec-do checkout")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(checkout / "dodo_jobspec")],
                   check=True)
    script = workdir / "jobspec-do-baseline"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(checkout)!r})\n"
                      "from dodo_jobspec.cli.quick import console\nsys.exit(console())\n")
    script.chmod(0o755)
    return [str(script)]


def versus_loop(args: argparse.Namespace, root: Path) -> int:
    """The interleaved rounds of every case; prints the table, returns the exit status."""
    jsd = jobspec_command(args.install, root)
    base = baseline_command(args.baseline, root) if args.baseline else jsd
    cases = [c for c in (*CASES, *(c + BASE for c in CASES)) if c in args.cases]
    samples: dict[str, list[float]] = {c: [] for c in cases}
    cpu: dict[str, list[float]] = {c: [] for c in cases}
    failures: list[str] = []
    load_before = os.getloadavg()
    for rnd in range(args.rounds):
        order = cases[rnd % len(cases):] + cases[:rnd % len(cases)]
        for case in order:
            seconds, used, failed = time_case(case, args.n, root / f"r{rnd}" / case,
                                              base if case.endswith(BASE) else jsd, args.jobs)
            samples[case].append(seconds)
            cpu[case].append(used)
            if failed:
                failures.append(f"round {rnd + 1}: {failed}")
            print(f"round {rnd + 1} {case}: {seconds:.3f} s, CPU {used:.3f} s"
                  + (f" FAILED {failed}" if failed else ""), file=sys.stderr)
    drain()
    load_after = os.getloadavg()
    med = {c: statistics.median(v) for c, v in samples.items()}
    slurm = subprocess.run(["sbatch", "--version"], capture_output=True, text=True).stdout
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} cores, "
          f"Linux {platform.release()}, Python {platform.python_version()}, {slurm.strip()}"
          f"; N = {args.n}, medians of {args.rounds} interleaved round(s); load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f}\n")
    print("| case | median s | all rounds s | submissions/s | rate vs its loop | CPU s "
          "(median) | CPU ms per job |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        peer = PEER.get(base_case(case))
        ratio = f"x {med[peer] / med[case]:.2f}" if peer in med else "—"
        used = statistics.median(cpu[case])
        print(f"| {case} | {med[case]:.3f} | {', '.join(f'{x:.3f}' for x in samples[case])} | "
              f"{args.n / med[case]:.1f} | {ratio} | {used:.2f} | {used / args.n * 1000:.1f} |")
    for f in failures:
        print(f"FAILED {f}")
    if args.json:
        args.json.write_text(json.dumps({
            "n": args.n, "rounds": args.rounds, "samples": samples, "cpu": cpu,
            "failures": failures,
            "load_before": load_before, "load_after": load_after, "commands": {
                c: command(c, args.n, Path("DIR"), base if c.endswith(BASE) else jsd,
                           args.jobs) for c in cases}}, indent=1))
    return 1 if failures else 0


# --- --mode transformer ----------------------------------------------------------------------

def transformer_cases(args: argparse.Namespace, root: Path) -> int:
    """N separate tasks against one N-replica task, through the transformer in-process."""
    for kind in ("separate", "array"):
        wait_empty_queue()
        row = measure(kind, args.n, root)
        print(json.dumps(row) if args.json else
              f"{row['case']:>8}: {row['tasks']} tasks in {row['sbatch_calls']} sbatch "
              f"call(s), submitted in {row['submit_seconds']} s "
              f"({row['tasks_submitted_per_second']} tasks/s, "
              f"{row['sbatch_calls_per_second']} sbatch/s); all done after "
              f"{row['seconds_until_all_done']} s; not completed: {row['not_completed']}")
    return 0


# Held (flock) while a Slurm cluster of ours runs: ports 6817/6818 are fixed, so the test
# fixtures of other checkouts (tests/services.py, the same file) take turns with us.
SLURM_TURN_LOCK = "/tmp/jsd-slurm.turn.lock"


def main() -> None:
    """Parse the options, start a cluster if asked, run the chosen mode."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("loop", "transformer"), default="loop")
    ap.add_argument("-n", type=int, default=200, help="tasks / jobs per case (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (loop mode)")
    ap.add_argument("--cases", type=lambda s: s.split(","), default=list(CASES),
                    help=f"loop mode: a comma-separated subset of {','.join(CASES)}")
    ap.add_argument("-j", "--jobs", type=int, default=64,
                    help="-j of the blocking case (default 64, jobspec-do's on a scheduler)")
    ap.add_argument("--install", choices=("wheel", "here"), default="wheel",
                    help="time a wheel of this tree in a fresh venv (default), or this venv's")
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help=f"another jobspec-do checkout: cases CASE{BASE} run its code")
    ap.add_argument("--workdir", type=Path, help="keep the work folders here (default: a "
                    "temporary folder, deleted at the end)")
    ap.add_argument("--start", type=Path, metavar="DIR",
                    help="start a private cluster in DIR with scripts/slurm-cluster.sh first")
    ap.add_argument("--json", type=Path, nargs="?", const=Path("/dev/stdout"),
                    help="loop mode: every sample to this file; transformer mode: JSON lines")
    args = ap.parse_args()
    unknown = {c for c in args.cases if base_case(c) not in CASES
               or (c.endswith(BASE) and base_case(c).startswith("loop"))}
    if unknown:
        ap.error(f"unknown case(s) {', '.join(sorted(unknown))}: choose from {', '.join(CASES)}"
                 f", and {BASE} after a jobspec-do one")
    if not args.baseline and any(c.endswith(BASE) for c in args.cases):
        ap.error(f"a case{BASE} needs --baseline DIR")
    script = REPO / "scripts" / "slurm-cluster.sh"
    turn = None
    if args.start:
        turn = open(SLURM_TURN_LOCK, "w")  # noqa: SIM115 - held until the cluster is stopped
        fcntl.flock(turn, fcntl.LOCK_EX)
        subprocess.run(["bash", str(script), "start", str(args.start)], check=True)
        os.environ["SLURM_CONF"] = str(args.start.resolve() / "slurm.conf")
    elif "SLURM_CONF" not in os.environ:
        raise SystemExit("set SLURM_CONF to a running cluster's slurm.conf, or pass --start DIR")
    status = 1
    try:
        with tempfile.TemporaryDirectory(prefix="jsd-bench-") as tmp:
            root = args.workdir or Path(tmp)
            root.mkdir(parents=True, exist_ok=True)
            status = (versus_loop if args.mode == "loop" else transformer_cases)(args, root)
    finally:
        if args.start:
            subprocess.run(["bash", str(script), "stop", str(args.start)], check=False)
        if turn is not None:
            turn.close()
    sys.exit(status)


if __name__ == "__main__":
    main()
