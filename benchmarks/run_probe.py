"""Look inside one full local run: what each `posix_spawn` costs, and how wall time answers CPU.

Runs `jobspec-do run -q -j 2` on a fresh fan (or chain) workload in a child Python that times
every process start (`spawn` blocks until the child has exec'd) and every wait, and reports
jobspec-do's own CPU next to its children's. Two knobs turn the run into an experiment:

- ``--busy-us 0,100``: burn that many microseconds of Python (holding the GIL) in every task's
  bookkeeping. The wall-time difference per CPU-second added says how much a CPU saving in
  jobspec-do would buy: if every CPU-second came off the wall, it would be 1.0.
- ``--spawns ctypes,os``: start processes through ctypes (the default, which lets doit's other
  threads run while the child starts) or through ``os.posix_spawn`` (which holds the GIL).

Rounds are interleaved; medians are printed. The probe patches private functions of the
installed jobspec-do (``spawn.spawn``, ``_Spawned.wait``, ``UnitRunner._record``): it is a
measuring tool, not an example of the API.

    python benchmarks/run_probe.py --n 10000 --rounds 3 --busy-us 0,100 \\
        --workdir /dev/shm/jobspec-probe
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads  # a sibling module: benchmarks/ is not a package

PROBE = r"""
import atexit, json, os, resource, statistics, sys, time
from dodo_jobspec.transformers import local, spawn
from dodo_jobspec.tasks import unit

busy, how, report = float(sys.argv[1]) / 1e6, sys.argv[2], sys.argv[3]
starts, waits = [], []

def timed(fn, into):
    def call(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - t)
    return call

if how == "os":
    spawn.available = lambda: False  # the local transformer falls back to os.posix_spawn
    os.posix_spawn = timed(os.posix_spawn, starts)
else:
    spawn.spawn = timed(spawn.spawn, starts)
local._Spawned.wait = timed(local._Spawned.wait, waits)

if busy:
    record = unit.UnitRunner._record
    def slow_record(self, *args, **kwargs):
        end = time.perf_counter() + busy
        while time.perf_counter() < end:
            pass
        return record(self, *args, **kwargs)
    unit.UnitRunner._record = slow_record

def dump():
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    with open(report, "w") as fh:
        json.dump({"start_ms": statistics.median(starts) * 1e3 if starts else None,
                   "wait_ms": statistics.median(waits) * 1e3 if waits else None,
                   "cpu_s": me.ru_utime + me.ru_stime,
                   "children_cpu_s": kids.ru_utime + kids.ru_stime,
                   "switches": me.ru_nvcsw + me.ru_nivcsw}, fh)
atexit.register(dump)

from dodo_jobspec.cli import app as cli
sys.argv = ["jobspec-do", "run", "-q", "-j", "2", sys.argv[4]]
cli.console()
"""


def one_run(kind: str, n: int, folder: Path, busy_us: float, how: str) -> dict[str, float]:
    """One fresh run; its wall time and what the probe inside it measured."""
    shutil.rmtree(folder, ignore_errors=True)
    spec = workloads.write(kind, n, folder)
    report = folder / "probe.json"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", PROBE, str(busy_us), how, str(report), spec.name],
                   cwd=folder, check=True)
    wall = time.perf_counter() - t
    return {"wall_s": wall, **json.loads(report.read_text())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=workloads.KINDS, default="fan")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy-us", default="0", help="comma-separated µs of Python per task")
    ap.add_argument("--spawns", default="ctypes", help="comma-separated: ctypes, os")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).parent / "work" / "probe")
    args = ap.parse_args()
    variants = [(float(b), how) for how in args.spawns.split(",")
                for b in args.busy_us.split(",")]
    samples: dict[tuple[float, str], list[dict[str, float]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            print(f"round {r + 1}: busy {v[0]:g} µs, {v[1]} spawn", file=sys.stderr)
            samples[v].append(one_run(args.kind, args.n, args.workdir, *v))
    shutil.rmtree(args.workdir, ignore_errors=True)

    def med(v: tuple[float, str], key: str) -> float:
        return statistics.median(s[key] for s in samples[v])

    print(f"| {args.kind} N={args.n} | wall (s) | one spawn blocks (ms) | one wait (ms) | "
          "jobspec-do CPU (s) | children CPU (s) | context switches |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        print(f"| busy {v[0]:g} µs, {v[1]} | {med(v, 'wall_s'):.2f} | {med(v, 'start_ms'):.3f} "
              f"| {med(v, 'wait_ms'):.3f} | {med(v, 'cpu_s'):.2f} | "
              f"{med(v, 'children_cpu_s'):.2f} | {med(v, 'switches'):,.0f} |")
    base = variants[0]
    for v in variants[1:]:
        if v[1] == base[1] and med(v, "cpu_s") > med(base, "cpu_s"):
            ratio = ((med(v, "wall_s") - med(base, "wall_s"))
                     / (med(v, "cpu_s") - med(base, "cpu_s")))
            print(f"\nwall seconds per added CPU-second (busy {v[0]:g} µs): {ratio:.2f}")
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, kernel {os.uname().release}, {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
