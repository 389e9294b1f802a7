"""Peak memory of `plan`, `run --dry-run` and `run` for a spec with many replicas.

Two workloads with the same number of replicas: one task with R replicas, and T tasks with
R/T replicas each. Every replicated task waits for a task `first` that fails, so `run`
starts no replica: it builds and checks everything, runs one process, and leaves doit's
database behind, after which `plan` and `--dry-run` go through doit's check task by task
(the expensive path; before any run they answer "it never ran" without doit).

    python benchmarks/replicas.py                                # R = 100,000, T = 100
    python benchmarks/replicas.py --replicas 1000 --tasks 10     # a quick look
    PYTHONPATH=/old/checkout python benchmarks/replicas.py --jobspec-do "python -m dodo_jobspec.cli"

Peak memory is each command's own maximum resident set (``os.wait4``), in MB.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


def spec_text(tasks: int, replicas: int) -> str:
    """A spec: `first` fails; ``tasks`` tasks of ``replicas`` replicas each wait for it."""
    lines = ["version: 1", "tasks:", "- name: first", '  command: "exit 1"']
    for i in range(tasks):
        lines += [f"- name: t{i}", '  command: "true"', f"  replicas: {replicas}",
                  "  depends_on: [first]"]
    return "\n".join(lines) + "\n"


def measure(argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """(seconds, peak MB, exit code) of one command."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, usage.ru_maxrss / 1024, proc.returncode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=100_000, help="replicas in all (R)")
    p.add_argument("--tasks", type=int, default=100, help="tasks sharing them (T)")
    p.add_argument("--workdir", type=Path, default=Path(__file__).parent / "work" / "replicas")
    p.add_argument("--jobspec-do", default="jobspec-do", help="the command to measure")
    args = p.parse_args()
    cmd = shlex.split(args.jobspec_do)
    rows = []
    for tasks in (1, args.tasks):
        each = args.replicas // tasks
        folder = args.workdir / f"{tasks}x{each}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / "spec.yaml").write_text(spec_text(tasks, each))
        label = f"{tasks} task{'s' if tasks > 1 else ''} x {each:,} replicas"
        steps = [("plan, never ran", ["plan"]), ("run --dry-run, never ran", ["run", "-n"]),
                 ("run (first fails)", ["run", "-q"]), ("plan, after the run", ["plan"]),
                 ("run --dry-run, after the run", ["run", "-n"])]
        for what, words in steps:
            seconds, mb, rc = measure([*cmd, *words, "spec.yaml"], folder)
            print(f"{label}: {what}: {seconds:.1f} s, {mb:.0f} MB (exit {rc})",
                  file=sys.stderr, flush=True)
            rows.append((label, what, seconds, mb))
    print("| workload | command | seconds | peak MB |\n|---|---|---:|---:|")
    for label, what, seconds, mb in rows:
        print(f"| {label} | {what} | {seconds:.1f} | {mb:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
