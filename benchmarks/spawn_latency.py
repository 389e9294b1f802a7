"""How long `posix_spawn` blocks its caller, by heap shape and by overlap with the previous child.

The full local run's floor on these machines is this number, not doit: posix_spawn (glibc's
CLONE_VM|CLONE_VFORK) returns once the child has exec'd. In a Python process holding many
small objects (jobspec-do holds its spec, plan and doit's tasks) while the previous child is
still running, it blocks 0.4-0.6 ms instead of ~0.13 ms. One large buffer does not do it; so
far nothing we tried does away with it (a launcher thread, pinning the child to our CPU).

    python benchmarks/spawn_latency.py            # one row per case, medians in ms
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "empty heap": "",
    "1M small objects": "keep = [str(i) * 3 for i in range(1_000_000)]",
    "one 100 MB buffer": "keep = b'x' * 100_000_000",
}

PROBE = """
import os, sys, time
{heap}
argv = ["/bin/sh", "-c", "echo 1 > /dev/null"]
overlap, n = int(sys.argv[1]), int(sys.argv[2])
times, pids = [], []
for _ in range(n):
    t = time.perf_counter()
    pids.append(os.posix_spawn(argv[0], argv, os.environ, setsid=True))
    times.append(time.perf_counter() - t)
    if len(pids) > overlap:
        os.waitpid(pids.pop(0), 0)
for pid in pids:
    os.waitpid(pid, 0)
print(" ".join(str(x) for x in times))
"""


def measure(heap: str, overlap: int, n: int) -> float:
    """Median seconds one posix_spawn call blocks, in a fresh process built with ``heap``."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(heap=heap), str(overlap), str(n)],
                         capture_output=True, text=True, check=True).stdout
    return statistics.median(float(x) for x in out.split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400, help="spawns per case (default 400)")
    args = parser.parse_args()
    print("| heap | alone (ms) | previous child still running (ms) |")
    print("|---|---|---|")
    for name, heap in CASES.items():
        alone, overlapped = (measure(heap, k, args.n) * 1e3 for k in (0, 1))
        print(f"| {name} | {alone:.3f} | {overlapped:.3f} |")
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, kernel {os.uname().release}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
