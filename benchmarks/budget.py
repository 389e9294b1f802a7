"""How much Python a task may cost before a full run falls behind 1.5x the `xargs -P2` floor.

A skeleton of the least a runner must do, without doit, records or anything of jobspec-do's:
one thread starts the fan workload's commands through `os.posix_spawn` (logs to files, as
jobspec-do's local transformer does), keeps ``--jobs`` of them running, waits on their pidfds,
and spends ``--busy-us`` microseconds of Python on each one that ends (standing for the
bookkeeping). It runs in a fresh process that first builds a heap of 1M small objects, as
jobspec-do holds its spec, plan and doit's tasks. Interleaved with `xargs -P2` on the same
commands; medians and ratios to xargs are printed.

``--launchers direct,shell`` adds a second skeleton that starts nothing itself: it hands each
command to one of ``--jobs`` long-lived ``/bin/sh`` processes ("slot shells") through a pipe,
and reads back the pid and the exit status, so the process start happens in a small, idle
process, as in xargs, and not in the busy Python one.

    python benchmarks/budget.py --n 5000 --busy-us 0,100,200,400 --rounds 3 \\
        --launchers direct,shell --workdir /dev/shm/jsd-budget

Linux only (pidfds).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads  # a sibling module: benchmarks/ is not a package

SKELETON = r"""
import os, select, sys, time
keep = [str(i) * 3 for i in range(1_000_000)]
cmds, jobs, busy = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1e6
lines = open(cmds).read().splitlines()
os.makedirs("logs", exist_ok=True)
create = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
poll, running, nxt = select.poll(), {}, 0
start = time.perf_counter()
while nxt < len(lines) or running:
    while len(running) < jobs and nxt < len(lines):
        logs = [(os.POSIX_SPAWN_OPEN, fd, f"logs/{nxt}.{fd}", create, 0o644) for fd in (1, 2)]
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", lines[nxt]], os.environ,
                             file_actions=logs, setsid=True)
        fd = os.pidfd_open(pid)
        running[fd] = pid
        poll.register(fd, select.POLLIN)
        nxt += 1
    for fd, _ in poll.poll():
        poll.unregister(fd)
        os.close(fd)
        _, status = os.waitpid(running.pop(fd), 0)
        if status:
            sys.exit(f"a command failed: {status}")
        end = time.perf_counter() + busy
        while time.perf_counter() < end:
            pass
print(time.perf_counter() - start)
"""

# The same skeleton, but each command is started by a slot shell: the Python side writes one
# line and reads two (the pid at once, the exit status when it ends).
SHELL_SKELETON = r"""
import os, select, shlex, subprocess, sys, time
keep = [str(i) * 3 for i in range(1_000_000)]
cmds, jobs, busy = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1e6
lines = open(cmds).read().splitlines()
os.makedirs("logs", exist_ok=True)
SLOT = 'while IFS= read -r line; do eval "$line"; p=$!; echo "$p"; wait "$p"; echo "$?"; done'
slots = [subprocess.Popen(["/bin/sh", "-c", SLOT], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE) for _ in range(jobs)]
poll, free, bufs, running, nxt = select.poll(), list(range(jobs)), {}, 0, 0
owner = {}
for j, slot in enumerate(slots):
    fd = slot.stdout.fileno()
    poll.register(fd, select.POLLIN)
    owner[fd], bufs[fd] = j, b""

def ended(fd, status):
    global running
    if status != b"0":
        sys.exit(f"a command failed: {status}")
    running -= 1
    free.append(owner[fd])
    end = time.perf_counter() + busy
    while time.perf_counter() < end:
        pass

start = time.perf_counter()
while nxt < len(lines) or running:
    while free and nxt < len(lines):
        slot = slots[free.pop()]
        fd = slot.stdout.fileno()
        os.write(slot.stdin.fileno(), (f"( exec /bin/sh -c {shlex.quote(lines[nxt])} ) "
                                       f"</dev/null >logs/{nxt}.1 2>logs/{nxt}.2 &\n").encode())
        while b"\n" not in bufs[fd]:
            bufs[fd] += os.read(fd, 4096)
        _pid, _, bufs[fd] = bufs[fd].partition(b"\n")
        nxt += 1
        running += 1
        if b"\n" in bufs[fd]:  # a quick command's status came with its pid
            status, _, bufs[fd] = bufs[fd].partition(b"\n")
            ended(fd, status)
    for fd, _ in poll.poll():
        bufs[fd] += os.read(fd, 4096)
        if b"\n" in bufs[fd]:
            status, _, bufs[fd] = bufs[fd].partition(b"\n")
            ended(fd, status)
print(time.perf_counter() - start)
"""
LAUNCHERS = {"direct": ("skeleton", SKELETON), "shell": ("slot shells", SHELL_SKELETON)}


def timed(cmd: list[str], cwd: Path, inside: bool) -> float:
    """Seconds ``cmd`` takes in ``cwd`` (which must succeed); with ``inside``, the seconds it
    prints itself (the skeleton leaves out its start-up and the building of its heap)."""
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=inside, text=True).stdout
    return float(out) if inside else time.perf_counter() - start


def fresh(folder: Path, n: int) -> Path:
    """An empty work folder with the fan's command list (without its final gather)."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "out").mkdir(parents=True)
    cmds = folder / "cmds.txt"
    cmds.write_text(workloads.xargs_commands("fan", n))
    return cmds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--busy-us", default="0,100,200,400",
                    help="comma-separated µs of Python per task")
    ap.add_argument("--launchers", default="direct",
                    help="comma-separated: direct (the runner starts each process), shell "
                         "(long-lived /bin/sh processes start them)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path(__file__).parent / "work" / "budget")
    args = ap.parse_args()
    busy = [float(b) for b in args.busy_us.split(",")]
    launchers = [LAUNCHERS[name] for name in args.launchers.split(",")]
    names = ["xargs", *(f"{label}, {b:g} µs" for label, _ in launchers for b in busy)]
    programs = {label: program for label, program in launchers}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            print(f"round {r + 1}: {name}", file=sys.stderr)
            cmds = fresh(args.workdir, args.n)
            if name == "xargs":
                cmd = ["sh", "-c", f"xargs -P{args.jobs} -I{{}} sh -c '{{}}' < {cmds.name}"]
            else:
                label, amount = name.split(", ")
                cmd = [sys.executable, "-c", programs[label], cmds.name, str(args.jobs),
                       amount.split(" ")[0]]
            samples[name].append(timed(cmd, args.workdir, name != "xargs"))
            made = len(list((args.workdir / "out").iterdir()))
            if made != args.n:  # a launcher that skips commands must not look fast
                sys.exit(f"{name}: {made} of {args.n} outputs written")
    shutil.rmtree(args.workdir, ignore_errors=True)
    floor = statistics.median(samples["xargs"])
    print(f"| fan N={args.n}, -j {args.jobs} | wall (s) | ratio to xargs |")
    print("|---|---|---|")
    for name in names:
        wall = statistics.median(samples[name])
        print(f"| {name} | {wall:.2f} | {wall / floor:.2f} |")
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, kernel {os.uname().release}, {args.rounds} rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
