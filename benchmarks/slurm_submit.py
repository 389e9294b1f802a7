"""Submissions per second through SlurmTransformer.submit(): N separate tasks vs one N-replica task.

Needs a running Slurm cluster reachable through SLURM_CONF, or ``--start DIR`` to start a private
one with scripts/slurm-cluster.sh (and stop it at the end). Each case submits, then polls
``status`` until every job is terminal, and reports both the submit rate and the time to done.

    python benchmarks/slurm_submit.py --start /tmp/bench-slurm -n 200
"""

from __future__ import annotations

import argparse
import json
import os
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
    deadline = time.monotonic() + timeout
    while subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                         check=True).stdout.strip():
        if time.monotonic() > deadline:
            raise SystemExit("the Slurm queue did not empty; is another workload running?")
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="tasks / replicas (default 200)")
    ap.add_argument("--start", type=Path, metavar="DIR",
                    help="start a private cluster in DIR with scripts/slurm-cluster.sh first")
    ap.add_argument("--json", action="store_true", help="print the results as JSON lines")
    args = ap.parse_args()
    script = REPO / "scripts" / "slurm-cluster.sh"
    if args.start:
        subprocess.run(["bash", str(script), "start", str(args.start)], check=True)
        os.environ["SLURM_CONF"] = str(args.start.resolve() / "slurm.conf")
    elif "SLURM_CONF" not in os.environ:
        raise SystemExit("set SLURM_CONF to a running cluster's slurm.conf, or pass --start DIR")
    try:
        with tempfile.TemporaryDirectory(prefix="jsd-bench-") as tmp:
            for kind in ("separate", "array"):
                wait_empty_queue()
                row = measure(kind, args.n, Path(tmp))
                print(json.dumps(row) if args.json else
                      f"{row['case']:>8}: {row['tasks']} tasks in {row['sbatch_calls']} sbatch "
                      f"call(s), submitted in {row['submit_seconds']} s "
                      f"({row['tasks_submitted_per_second']} tasks/s, "
                      f"{row['sbatch_calls_per_second']} sbatch/s); all done after "
                      f"{row['seconds_until_all_done']} s; not completed: {row['not_completed']}")
    finally:
        if args.start:
            subprocess.run(["bash", str(script), "stop", str(args.start)], check=False)


if __name__ == "__main__":
    main()
