"""How long `posix_spawn` blocks its caller, by what the caller and the machine are doing.

posix_spawn (glibc: CLONE_VM|CLONE_VFORK) returns once the child has exec'd and the caller is
running again, so the call lasts as long as the child, then the caller, wait for a CPU: it is
scheduling, not copying. On these 2-core machines, with the previous child still running, the
call blocks ~0.13 ms from a caller that was idle and ~0.55 ms from one that has just been busy,
whatever its heap holds: a heap built a second earlier does not do it, half a second of CPU
without any objects does. A caller that was idle stays quick even while another process spins
on one of the two CPUs. Which kernel heuristic reads the caller's past is not pinned down:
a probe reading which CPU each child ran on found the call slow on either.

jobspec-do is a busy caller: during a run it works on every task's bookkeeping. Inside it the
call is slow for a second reason of the same kind: ctypes releases the GIL while the child
starts, so doit's other threads run and take the CPUs. `benchmarks/run_probe.py` measures the
call inside a full run, either way.

    python benchmarks/spawn_latency.py            # one row per case, medians in ms
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BURN = "t = time.perf_counter()\nwhile time.perf_counter() - t < 0.5:\n    pass"
OBJECTS = "keep = [str(i) * 3 for i in range(1_000_000)]"
CASES = {
    "idle before": "",
    "busy 0.5 s before (no objects)": BURN,
    "1M small objects built just before": OBJECTS,
    "1M small objects, then 1 s asleep": OBJECTS + "\ntime.sleep(1)",
    "one 100 MB buffer built just before": "keep = b'x' * 100_000_000",
    "idle before, another process busy": "",
}
HOG_CASES = {"idle before, another process busy"}

PROBE = """
import os, sys, time
{before}
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


def measure(before: str, overlap: int, n: int, hog: bool = False) -> float:
    """Median seconds one posix_spawn call blocks, in a fresh process that first runs
    ``before``; with ``hog``, while another process spins on a CPU."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
    try:
        out = subprocess.run([sys.executable, "-c", PROBE.format(before=before), str(overlap),
                              str(n)], capture_output=True, text=True, check=True).stdout
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return statistics.median(float(x) for x in out.split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400, help="spawns per case (default 400)")
    args = parser.parse_args()
    print("| the caller, before the loop | alone (ms) | previous child still running (ms) |")
    print("|---|---|---|")
    for name, before in CASES.items():
        alone, overlapped = (measure(before, k, args.n, name in HOG_CASES) * 1e3 for k in (0, 1))
        print(f"| {name} | {alone:.3f} | {overlapped:.3f} |")
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, kernel {os.uname().release}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
