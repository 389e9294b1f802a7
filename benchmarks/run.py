"""Time jobspec-do against its peers (GNU make, plain doit, the `xargs -P` floor, Snakemake when
importable) on the fan and chain workloads, interleaved round by round, and print medians,
ratios and peak memory as a table (and JSON with --json).

    python benchmarks/run.py --n 1000 --rounds 3
    python benchmarks/run.py --n 10000 --rounds 1 --kinds fan --json /tmp/bench.json

Phases, each timed as its own process (wall clock) with its peak RSS:
  full      the full run, from a clean folder
  noop      the same command again in that folder: everything is up to date
  dry       the closest dry-run/plan equivalent, in a fresh clean folder (everything would run)
  dry_done  the same dry-run in the up-to-date folder (everything is up to date)
  plan      `jobspec-do plan SPEC` (validate + plan) in a clean folder; jobspec-do only
  plan_done `jobspec-do plan SPEC` in the up-to-date folder; jobspec-do only

See benchmarks/README.md for what each column means and how to read the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import install  # sibling modules: this file is run as a script
import workloads

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GNU_TIME = Path("/usr/bin/time")
PHASES = ("full", "noop", "dry", "dry_done", "plan", "plan_done")
DEFAULT_TOOLS = ("jobspec-do", "make", "doit", "xargs", "snakemake")
# Where --fs NAME puts its work folders unless NAME=DIR says otherwise.
FS_DEFAULT = {"tmpfs": Path("/dev/shm/jobspec-bench"), "ext4": HERE / "work"}

# Fallback when /usr/bin/time is missing: a fresh Python child runs the command and reports the
# largest RSS among its waited-for descendants (RUSAGE_CHILDREN), in KiB on Linux.
RSS_SNIPPET = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(f'{kib}\\n')\n"
    "sys.exit(rc)\n"
)


# ---------------------------------------------------------------------------------------------
# Tools


def script(name: str) -> str:
    """Path of console script ``name`` in this interpreter's scripts folder, else on PATH.

    The interpreter's own folder comes first so a pyenv/asdf shim (a shell script that costs
    ~0.2 s per call here) is not timed as if it were the tool."""
    direct = Path(sysconfig.get_path("scripts")) / name
    if direct.exists():
        return str(direct)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(name)
    return found


@dataclass
class Tool:
    """How one tool runs a workload: argv per phase (None = the tool has no such phase)."""

    name: str
    full: list[str]
    noop: list[str] | None
    dry: list[str] | None
    plan: list[str] | None = None
    # Extra no-op check on the no-op run's stdout: returns a problem, or None when fine.
    noop_stdout_check: Callable[[str], str | None] | None = None

    def argv(self, phase: str) -> list[str] | None:
        """The command of ``phase`` (dry_done/plan_done reuse dry/plan)."""
        return {"full": self.full, "noop": self.noop, "dry": self.dry, "dry_done": self.dry,
                "plan": self.plan, "plan_done": self.plan}[phase]


def _jobspec_noop_stdout(out: str) -> str | None:
    return None if not out.strip() else f"`run -q` printed something on a no-op: {out[:200]!r}"


def _make_noop_stdout(out: str) -> str | None:
    return None if "Nothing to be done" in out else f"make did work on a no-op: {out[:200]!r}"


def _doit_noop_stdout(out: str) -> str | None:
    ran = [line for line in out.splitlines() if not line.startswith("-- ")]
    return None if not ran else f"doit ran tasks on a no-op: {ran[:3]!r}"


def make_tool(name: str, main_file: str, jobs: int, jobspec_cmd: list[str]) -> Tool:
    """The commands of tool ``name`` for a workload whose main file is ``main_file`` (relative
    to the work folder, which is the working directory of every command)."""
    if name == "jobspec-do" or name.startswith("jobspec-do@"):
        run = [*jobspec_cmd, "run", "-q", "-j", str(jobs), main_file]
        return Tool(name, full=run, noop=run,
                    dry=[*jobspec_cmd, "run", "-q", "--dry-run", "-j", str(jobs), main_file],
                    plan=[*jobspec_cmd, "plan", main_file],
                    noop_stdout_check=_jobspec_noop_stdout)
    if name == "make":
        run = ["make", f"-j{jobs}"]
        return Tool(name, full=run, noop=run, dry=["make", "-n", f"-j{jobs}"],
                    noop_stdout_check=_make_noop_stdout)
    if name == "doit":
        doit = [script("doit")]
        run = [*doit, "-n", str(jobs), "-P", "thread"]
        return Tool(name, full=run, noop=run, dry=[*doit, "list", "--all", "--status"],
                    noop_stdout_check=_doit_noop_stdout)
    if name == "xargs":
        return Tool(name, full=["sh", main_file], noop=None, dry=None)
    if name == "snakemake":
        run = [script("snakemake"), "--cores", str(jobs), "--quiet"]
        return Tool(name, full=run, noop=run,
                    dry=[script("snakemake"), "-n", "--cores", str(jobs), "--quiet"])
    raise ValueError(f"unknown tool {name!r}")


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Sample:
    """One timed command."""

    seconds: float
    rss_kib: int | None
    status: str  # ok | fail | timeout
    rc: int | None
    # user + system CPU of the command and every descendant it waited for: unlike the wall
    # clock, barely moved by other work on a loaded machine.
    cpu_s: float | None = None


def measure(argv: list[str], cwd: Path, logs: Path, timeout: float, sync: bool) -> Sample:
    """Run ``argv`` in ``cwd`` once: wall time, peak RSS (largest single process of the tree,
    via /usr/bin/time -f %M or a fresh Python child's RUSAGE_CHILDREN), exit status. stdout and
    stderr go to ``logs``.out/.err; after ``timeout`` seconds the process group is killed."""
    rss_file = logs.with_suffix(".rss")
    if GNU_TIME.exists():
        cmd = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *argv]
    else:
        cmd = [sys.executable, "-c", RSS_SNIPPET, str(rss_file), *argv]
    if sync:
        os.sync()  # flush the previous run's dirty pages now, not during this run
    with open(logs.with_suffix(".out"), "wb") as out, open(logs.with_suffix(".err"), "wb") as err:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        # Not proc.wait(timeout=...): that polls with sleeps of up to 50 ms, which would round
        # every time up to the next poll. A timer thread kills the group; wait() blocks.
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            rc = proc.wait()
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            timer.cancel()
    if expired.is_set():
        return Sample(seconds, None, "timeout", None)
    rss = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        rss = int(rss_file.read_text().split()[-1])  # last line; GNU time may prepend a note
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(seconds, rss, "ok" if rc == 0 else "fail", rc, cpu)


# ---------------------------------------------------------------------------------------------
# Correctness checks


def check_outputs(folder: Path, kind: str, n: int) -> list[str]:
    """Problems with out/ after a full run: missing, extra or wrong files."""
    want = workloads.expected_outputs(kind, n)
    out = folder / "out"
    have = {f"out/{p.name}" for p in out.iterdir()}
    problems = []
    if missing := sorted(set(want) - have):
        problems.append(f"{len(missing)} missing outputs, e.g. {missing[:3]}")
    if extra := sorted(have - set(want)):
        problems.append(f"{len(extra)} unexpected files in out/, e.g. {extra[:3]}")
    wrong = [p for p in sorted(set(want) & have) if (folder / p).read_text() != want[p]]
    if wrong:
        problems.append(f"{len(wrong)} outputs with wrong content, e.g. {wrong[0]}: "
                        f"{(folder / wrong[0]).read_text()!r} != {want[wrong[0]]!r}")
    return problems


def mtimes(folder: Path) -> dict[str, int]:
    """out/ file name -> st_mtime_ns."""
    return {p.name: p.stat().st_mtime_ns for p in (folder / "out").iterdir()}


def check_untouched(before: dict[str, int], folder: Path, what: str) -> list[str]:
    """Problems if out/ changed since ``before`` (something re-ran)."""
    after = mtimes(folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return [f"{what}: {len(changed)} outputs rewritten, e.g. {changed[:3]}"] if changed else []


# ---------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class ToolResult:
    """Every sample of one tool on one workload."""

    commands: dict[str, str]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    skipped: str | None = None

    def median(self, phase: str) -> float | str | None:
        """Median seconds of ``phase``; 'timeout'/'fail' if any sample was; None if never run."""
        got = self.samples.get(phase, [])
        if not got:
            return None
        for bad in ("timeout", "fail"):
            if any(s.status == bad for s in got):
                return bad
        return statistics.median(s.seconds for s in got)

    def median_cpu(self, phase: str) -> float | None:
        """Median CPU seconds of ``phase``'s successful samples; None if none."""
        got = [s.cpu_s for s in self.samples.get(phase, []) if s.status == "ok" and s.cpu_s]
        return statistics.median(got) if got else None

    def peak_mib(self, phases: tuple[str, ...] = PHASES) -> float | None:
        """Largest peak RSS over the samples of ``phases``, in MiB."""
        rss = [s.rss_kib for p in phases for s in self.samples.get(p, []) if s.rss_kib]
        return max(rss) / 1024 if rss else None


def log(msg: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def run_workload(kind: str, n: int, tools: list[str], args: argparse.Namespace,
                 root: Path, fs: str, commands: dict[str, list[str]]) -> dict:
    """All rounds of one workload in ``root`` (on file system ``fs``); returns its JSON-ready
    result. ``commands``: how to call each jobspec-do variant (the name "jobspec-do" or
    "jobspec-do@LABEL")."""
    wl_dir = root / f"{kind}-{n}"
    wl_dir.mkdir(parents=True)
    results: dict[str, ToolResult] = {}
    checks: list[dict] = []
    phases = [p for p in PHASES if p.split("_")[0] in args.phases]
    load_before = os.getloadavg()

    def record_check(tool: str, what: str, problems: list[str]) -> None:
        checks.append({"tool": tool, "check": what, "ok": not problems, "problems": problems})
        for p in problems:
            log(f"  CHECK FAILED [{kind}-{n} {tool}] {what}: {p}")

    for rnd in range(args.rounds):
        shift = rnd % len(tools)  # rotate who goes first, so no tool always follows the same one
        for name in tools[shift:] + tools[:shift]:
            if name in results and results[name].skipped:
                continue
            first = rnd == 0
            clean = wl_dir / f"r{rnd + 1}-{name}-clean"
            work = wl_dir / f"r{rnd + 1}-{name}"
            main = workloads.write(kind, n, work, name.split("@")[0], args.jobs).name
            tool = make_tool(name, main, args.jobs, commands.get(name, []))
            res = results.setdefault(name, ToolResult(
                {p: shlex.join(a) for p in phases if (a := tool.argv(p)) is not None}))

            def timed(phase: str, folder: Path, tool: Tool = tool, res: ToolResult = res,
                      rnd: int = rnd) -> Sample | None:
                argv = tool.argv(phase)
                if argv is None or phase not in phases:
                    return None
                s = measure(argv, folder, folder.parent / f"r{rnd + 1}-{tool.name}-{phase}",
                            args.timeout, not args.no_sync)
                res.samples.setdefault(phase, []).append(s)
                rss = f"{s.rss_kib / 1024:.0f} MiB" if s.rss_kib else "? MiB"
                log(f"[{fs} {kind}-{n} r{rnd + 1}] {tool.name:<10} {phase:<9} "
                    f"{s.seconds:8.3f} s {rss:>8} {s.status if s.status != 'ok' else ''}")
                if s.status == "fail":
                    err = folder.parent / f"r{rnd + 1}-{tool.name}-{phase}.err"
                    log("    " + err.read_text(errors="replace")[-600:].replace("\n", "\n    "))
                return s

            # Dry-run and plan from a clean folder, in its own copy: the full run below starts
            # from a folder no other phase has touched.
            if ("dry" in phases and tool.dry) or ("plan" in phases and tool.plan):
                workloads.write(kind, n, clean, name.split("@")[0], args.jobs)
                for phase in ("dry", "plan"):
                    s = timed(phase, clean)
                    if first and s and s.status == "ok":
                        leaked = [p.name for p in (clean / "out").iterdir()]
                        record_check(name, f"{phase} (clean) ran nothing",
                                     [f"out/ has {len(leaked)} files"] if leaked else [])
                if args.cleanup == "each":
                    shutil.rmtree(clean)

            s = timed("full", work)
            if s is None or s.status != "ok":
                if s is not None and s.status == "timeout":
                    res.skipped = f"full run timed out after {args.timeout:.0f} s"
                if args.cleanup == "each":
                    shutil.rmtree(work, ignore_errors=True)
                continue
            if first:
                record_check(name, "full run wrote every output, right content",
                             check_outputs(work, kind, n))
            before = mtimes(work)
            s = timed("noop", work)
            if first and s and s.status == "ok":
                problems = check_untouched(before, work, "no-op")
                if tool.noop_stdout_check:
                    out = (wl_dir / f"r1-{name}-noop.out").read_text(errors="replace")
                    if (p := tool.noop_stdout_check(out)) is not None:
                        problems.append(p)
                record_check(name, "no-op re-ran nothing", problems)
            for _ in range(args.noop_repeat - 1):  # a few ms each: more samples, less noise
                timed("noop", work)
            if args.noop_repeat > 1 and first and (s := res.samples.get("noop")):
                record_check(name, f"{len(s)} no-ops re-ran nothing",
                             check_untouched(before, work, "repeated no-op"))
            for phase in ("dry_done", "plan_done"):
                s = timed(phase, work)
                if first and s and s.status == "ok":
                    record_check(name, f"{phase} ran nothing",
                                 check_untouched(before, work, phase))
            if args.cleanup == "each":
                shutil.rmtree(work, ignore_errors=True)
    return {
        "kind": kind, "n": n, "rounds": args.rounds, "fs": fs, "workdir_fs": filesystem(root),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "tools": {name: {
            "commands": r.commands, "skipped": r.skipped,
            "median_s": {p: r.median(p) for p in phases if r.samples.get(p)},
            "median_cpu_s": {p: r.median_cpu(p) for p in phases if r.samples.get(p)},
            "peak_rss_mib": r.peak_mib(),
            "peak_rss_mib_by_phase": {p: r.peak_mib((p,)) for p in phases if r.samples.get(p)},
            "samples": {p: [vars(s) for s in ss] for p, ss in r.samples.items()},
        } for name, r in results.items()},
        "ratios": ratios(results),
        "checks": checks,
    }


def ratios(results: dict[str, ToolResult]) -> dict[str, dict[str, float]]:
    """Same-run ratios of medians: every tool's full run / the xargs floor's, and jobspec-do's
    no-op / every peer's no-op."""
    out: dict[str, dict[str, float]] = {"full_vs_xargs": {}, "jobspec_noop_vs": {},
                                        "jobspec_dry_vs": {}, "jobspec_dry_done_vs": {}}
    floor = results["xargs"].median("full") if "xargs" in results else None
    for name, r in results.items():
        full = r.median("full")
        if isinstance(floor, float) and isinstance(full, float) and floor > 0:
            out["full_vs_xargs"][name] = full / floor
    if "jobspec-do" in results:
        jd = results["jobspec-do"]
        for phase in ("noop", "dry", "dry_done"):
            mine = jd.median(phase)
            for name, r in results.items():
                theirs = r.median(phase)
                if isinstance(mine, float) and isinstance(theirs, float) and theirs > 0:
                    key = "jobspec_noop_vs" if phase == "noop" else f"jobspec_{phase}_vs"
                    out[key][name] = mine / theirs
    return out


# ---------------------------------------------------------------------------------------------
# Reporting


def _cmd_first_line(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def filesystem(path: Path) -> str:
    """Type of the filesystem holding ``path``, noting an ext4 without a journal: there, every
    file creation scans past inodes freed in the last minute (ext4's recently_deleted check)."""
    path = path.resolve()
    best, fstype, dev = "", "?", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mnt = parts[1]
            if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) \
                    and len(mnt) >= len(best):
                best, fstype, dev = mnt, parts[2], parts[0]
    if fstype == "ext4":
        journal = Path("/sys/fs/ext4") / Path(dev).name / "journal_task"
        with contextlib.suppress(OSError):
            if journal.read_text().strip() == "<none>":
                fstype = "ext4 without journal"
    return f"{fstype} ({best})"


def machine_info(tools: list[str], jobspec_cmd: list[str], workdir: Path) -> dict:
    """Where and when: cores, CPU, memory, kernel, versions, the repo's commit."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    versions = {"python": platform.python_version()}
    if "jobspec-do" in tools:
        versions["jobspec-do"] = _cmd_first_line([*jobspec_cmd, "--version"])
    if "make" in tools:
        versions["make"] = _cmd_first_line(["make", "--version"])
    if "doit" in tools:
        versions["doit"] = _cmd_first_line([script("doit"), "--version"])
    if "xargs" in tools:
        versions["xargs"] = _cmd_first_line(["xargs", "--version"])
    if "snakemake" in tools:
        versions["snakemake"] = _cmd_first_line([script("snakemake"), "--version"])
    head = _cmd_first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "dodo_jobspec"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu": cpu,
        "memory": mem, "kernel": platform.release(), "versions": versions,
        "repo_commit": head + (" + uncommitted changes in dodo_jobspec/" if dirty else ""),
        "rss_method": "/usr/bin/time -f %M" if GNU_TIME.exists() else "RUSAGE_CHILDREN",
        "workdir": str(workdir), "workdir_fs": filesystem(workdir),
    }


def fmt_s(v: float | str | None) -> str:
    """Seconds cell."""
    if v is None:
        return "—"
    return v if isinstance(v, str) else f"{v:.3f} s" if v < 10 else f"{v:.1f} s"


def fmt_x(v: float | None) -> str:
    """Ratio cell."""
    return "—" if v is None else f"x {v:.2f}"


def table(wl: dict) -> str:
    """One workload's results as a Markdown table."""
    tools = wl["tools"]
    r = wl["ratios"]
    la, lb = wl["loadavg_before"], wl["loadavg_after"]
    lines = [f"### {wl['fs']}: {wl['kind']}, N = {wl['n']:,} — medians of {wl['rounds']} "
             f"interleaved round(s); load avg {la[0]:.2f} → {lb[0]:.2f}", "",
             "| tool | full run | x xargs floor | no-op re-run | jobspec-do ÷ tool (no-op) "
             "| dry-run, clean | dry-run, up to date | plan, clean | plan, up to date "
             "| peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in tools.items():
        m = t["median_s"]
        if t["skipped"] and "full" not in m:
            m = {"full": "timeout"}
        peak = t["peak_rss_mib"]
        lines.append(" | ".join([
            f"| {name}", fmt_s(m.get("full")), fmt_x(r["full_vs_xargs"].get(name)),
            fmt_s(m.get("noop")),
            "—" if name == "jobspec-do" else fmt_x(r["jobspec_noop_vs"].get(name)),
            fmt_s(m.get("dry")), fmt_s(m.get("dry_done")), fmt_s(m.get("plan")),
            fmt_s(m.get("plan_done")), "—" if peak is None else f"{peak:.0f} MiB",
        ]) + " |")
    bad = [c for c in wl["checks"] if not c["ok"]]
    n_ok = len(wl["checks"]) - len(bad)
    lines.append("")
    lines.append(f"checks: {n_ok} passed, {len(bad)} FAILED" if bad else
                 f"checks: all {n_ok} passed (outputs and contents after the full run; "
                 "nothing rewritten by no-op and dry-runs)")
    for c in bad:
        lines.append(f"  FAILED {c['tool']}: {c['check']}: {'; '.join(c['problems'])}")
    return "\n".join(lines)


def summary(workloads_run: list[dict], date: str) -> str:
    """Every workload on every file system in one table, the issue's shape: each tool's full
    run against the xargs floor and plain doit, and its no-op against make's, from this run."""
    lines = [f"### Summary ({date}): medians; ratios within the same file system and workload",
             "", "| file system | workload | tool | full run | x xargs -P2 | x plain doit "
             "| no-op re-run | x make no-op | no-op CPU | x make's | plan, clean "
             "| peak RSS, full run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def ratio(a: float | None, b: float | None) -> str:
        return "—" if a is None or not b else f"x {a / b:.2f}"

    for wl in workloads_run:
        tools = wl["tools"]

        def med(tool: str, phase: str, tools: dict = tools, key: str = "median_s"
                ) -> float | None:
            v = tools.get(tool, {}).get(key, {}).get(phase)
            return v if isinstance(v, float) else None

        for name, t in tools.items():
            if name == "xargs":
                peer = "—"
            else:
                peer = "—" if name == "doit" else ratio(med(name, "full"), med("doit", "full"))
            rss = t["peak_rss_mib_by_phase"].get("full")
            lines.append(" | ".join([
                f"| {wl['fs']}", f"{wl['kind']} {wl['n']:,}", name,
                fmt_s(t["median_s"].get("full", "timeout" if t["skipped"] else None)),
                ratio(med(name, "full"), med("xargs", "full")), peer,
                fmt_s(t["median_s"].get("noop")),
                "—" if name == "make" else ratio(med(name, "noop"), med("make", "noop")),
                fmt_s(med(name, "noop", key="median_cpu_s")),
                "—" if name == "make" else ratio(med(name, "noop", key="median_cpu_s"),
                                                 med("make", "noop", key="median_cpu_s")),
                fmt_s(t["median_s"].get("plan")),
                "—" if rss is None else f"{rss:.0f} MiB"]) + " |")
    return "\n".join(lines)


def commands_legend(wl: dict) -> str:
    """The exact command of every tool and phase (run in the workload's folder)."""
    lines = ["commands (run in the work folder; stdout/stderr to files):"]
    for name, t in wl["tools"].items():
        seen: dict[str, list[str]] = {}
        for phase, cmd in t["commands"].items():
            seen.setdefault(cmd, []).append(phase)
        for cmd, ps in seen.items():
            lines.append(f"  {name:<10} {'/'.join(ps):<24} {cmd}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def _fs_arg(ap: argparse.ArgumentParser, item: str) -> tuple[str, Path]:
    name, _, folder = item.partition("=")
    if name not in FS_DEFAULT:
        ap.error(f"--fs: unknown file system {name!r}; choose from {', '.join(FS_DEFAULT)}")
    return name, Path(folder) if folder else FS_DEFAULT[name]


def _compare_arg(ap: argparse.ArgumentParser, item: str) -> tuple[str, str]:
    label, _, folder = item.partition("=")
    if not label or not folder or not (Path(folder) / "pyproject.toml").exists():
        ap.error(f"--compare {item!r}: give LABEL=DIR, DIR a jobspec-do checkout")
    return label, folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="1000", help="task counts, comma-separated (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--kinds", default="fan,chain", help="workloads (default fan,chain)")
    ap.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                    help="tools to compare (default: all; snakemake only when importable)")
    ap.add_argument("--phases", default="full,noop,dry,plan",
                    help="what to time (default full,noop,dry,plan; dry and plan also time "
                         "their up-to-date variants)")
    ap.add_argument("--noop-repeat", type=int, default=1, metavar="K",
                    help="time the no-op re-run K times per round (default 1): it takes "
                         "milliseconds, so one sample per round is mostly scheduling noise")
    ap.add_argument("-j", "--jobs", type=int, default=2,
                    help="parallelism for every tool (default 2)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds per command before it is killed and recorded as a timeout")
    ap.add_argument("--json", type=Path, help="also write every sample here")
    ap.add_argument("--workdir", type=Path, default=HERE / "work",
                    help="where the temporary work folders go (default benchmarks/work); "
                         "ignored with --fs")
    ap.add_argument("--fs", default="",
                    help="run everything once per file system, in one run: a comma-separated "
                         "list of tmpfs, ext4 (each with its default folder: "
                         f"{', '.join(f'{k} {v}' for k, v in FS_DEFAULT.items())}) or "
                         "NAME=DIR; DIR must be on NAME (checked), e.g. "
                         "--fs tmpfs,ext4=/mnt/ext4-journal/bench")
    ap.add_argument("--install", choices=("wheel", "here"), default="wheel",
                    help="time jobspec-do as a user installs it: a wheel of this tree pip-"
                         "installed in a fresh venv (default), or `here`: the console script "
                         "next to this Python (an editable install pays ~25 ms more per start)")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=DIR",
                    help="also time the jobspec-do of another checkout as jobspec-do@LABEL, "
                         "side by side (e.g. old=/tmp/perf-old from `git worktree add`)")
    ap.add_argument("--cleanup", choices=("end", "each", "never"), default="end",
                    help="when to delete the work folders: at the end of the whole run "
                         "(default), after each tool's round, or never. `each` makes every "
                         "file creation that follows slower on ext4 without a journal (see "
                         "README), most for the tool that creates the most files")
    ap.add_argument("--no-sync", action="store_true",
                    help="do not call sync(2) before each timed command")
    ap.add_argument("--jobspec-do", metavar="CMD",
                    help="how to call jobspec-do (default: the console script next to this "
                         "Python, not a shim), e.g. 'python -m dodo_jobspec.cli'")
    args = ap.parse_args(argv)
    args.ns = [int(x) for x in args.n.split(",")]
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.phases = [p for p in args.phases.split(",") if p]
    args.tools = [t for t in args.tools.split(",") if t]
    args.fs = [_fs_arg(ap, item) for item in args.fs.split(",") if item]
    args.compare = [_compare_arg(ap, item) for item in args.compare]
    for k in args.kinds:
        if k not in workloads.KINDS:
            ap.error(f"unknown kind {k!r}")
    for t in args.tools:
        if t not in DEFAULT_TOOLS:
            ap.error(f"unknown tool {t!r}; choose from {', '.join(DEFAULT_TOOLS)}")
    for p in args.phases:
        if p not in ("full", "noop", "dry", "plan"):
            ap.error(f"unknown phase {p!r}")
    if "full" not in args.phases:
        args.phases.insert(0, "full")  # everything else builds on the full run
    return args


def jobspec_commands(args: argparse.Namespace, scratch: Path) -> dict[str, list[str]]:
    """How to call each jobspec-do being timed: "jobspec-do" (this tree, or --jobspec-do),
    and "jobspec-do@LABEL" for each --compare LABEL=DIR. With --install wheel (the default)
    each tree is installed as a user would (benchmarks/install.py) under ``scratch``."""
    trees = [("jobspec-do", REPO)] + [(f"jobspec-do@{label}", Path(d).resolve())
                                      for label, d in args.compare]
    out: dict[str, list[str]] = {}
    for name, tree in trees:
        if name == "jobspec-do" and args.jobspec_do:
            out[name] = shlex.split(args.jobspec_do)
        elif args.install == "here" and name == "jobspec-do":
            out[name] = [script("jobspec-do")]
        elif args.install == "here":
            out[name] = ["env", f"PYTHONPATH={tree}", sys.executable, "-m", "dodo_jobspec.cli"]
        else:
            log(f"installing {tree} as a wheel for {name} ...")
            out[name] = [str(install.install(tree, scratch / name.replace("@", "-")))]
    return out


def fs_roots(args: argparse.Namespace, stamp: str) -> list[tuple[str, Path]]:
    """(label, run folder) per file system asked for with --fs, else --workdir's alone."""
    if not args.fs:
        return [(filesystem(args.workdir.parent if not args.workdir.exists() else args.workdir)
                 .split(" (")[0], args.workdir / f"run-{stamp}-{os.getpid()}")]
    roots = []
    for label, base in args.fs:
        found = filesystem(base)  # by mount point: the folder need not exist yet
        if not found.startswith(label):
            raise SystemExit(f"run.py: --fs {label}={base}: that folder is on {found}, not "
                             f"{label}; name a folder on {label} (see `findmnt`)")
        roots.append((found.split(" (")[0], base / f"run-{stamp}-{os.getpid()}"))
    return roots


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if a correctness check failed."""
    args = parse_args(argv)
    notes = []
    tools = list(args.tools)
    if "snakemake" in tools and importlib.util.find_spec("snakemake") is None:
        tools.remove("snakemake")
        notes.append("snakemake: skipped (not importable here; nothing was installed)")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    roots = fs_roots(args, stamp)
    scratch = Path(tempfile.mkdtemp(prefix="jsd-bench-install-"))
    try:
        commands = jobspec_commands(args, scratch)
        if "jobspec-do" in tools:  # the variants run right after the tree's own
            at = tools.index("jobspec-do") + 1
            tools[at:at] = [name for name in commands if name != "jobspec-do"]
        for label, root in roots:
            root.mkdir(parents=True)
            log(f"work folder ({label}): {root}")
        info = machine_info(tools, commands.get("jobspec-do", []), roots[0][1])
        info["workdirs"] = {label: f"{root} on {filesystem(root)}" for label, root in roots}
        info["jobspec_do_commands"] = {k: shlex.join(v) for k, v in commands.items()}
        out: dict = {"machine": info, "settings": {
            "ns": args.ns, "kinds": args.kinds, "tools": tools, "rounds": args.rounds,
            "jobs": args.jobs, "timeout_s": args.timeout, "phases": args.phases,
            "install": args.install, "sync_before_each": not args.no_sync}, "notes": notes,
            "workloads": []}
        try:
            for label, root in roots:
                for n in args.ns:
                    for kind in args.kinds:
                        out["workloads"].append(
                            run_workload(kind, n, tools, args, root, label, commands))
                        if args.json:  # keep what we have if a later workload is interrupted
                            args.json.write_text(json.dumps(out, indent=1))
        finally:
            if args.cleanup != "never":
                for _label, root in roots:
                    log(f"deleting {root} ...")
                    shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    v = info["versions"]
    print(f"## jobspec-do benchmark — {info['date']}\n")
    print(f"machine: {info['nproc']} cores usable ({info['cpu_count']} online), {info['cpu']}, "
          f"{info['memory']} RAM, Linux {info['kernel']}; Python {v['python']}")
    print("versions: " + "; ".join(f"{k}: {val}" for k, val in v.items() if k != "python"))
    print(f"repo: {info['repo_commit']}; -j {args.jobs} for every tool; peak RSS by "
          f"{info['rss_method']} (largest single process), max over phases")
    when = {"end": "deleted at the end of the whole run", "never": "kept",
            "each": "deleted after each tool's round"}[args.cleanup]
    for label, where in info["workdirs"].items():
        print(f"work folders ({label}): {where}, {when}")
    for name, cmd in info["jobspec_do_commands"].items():
        print(f"{name}: {cmd}" + (" (a wheel of that tree, pip-installed in a fresh venv)"
                                   if args.install == "wheel" and not args.jobspec_do else ""))
    for note in notes:
        print(f"note: {note}")
    if out["workloads"]:
        print()
        print(summary(out["workloads"], info["date"]))
    for wl in out["workloads"]:
        print()
        print(table(wl))
    if out["workloads"]:
        print()
        print(commands_legend(out["workloads"][0]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
        print(f"\nJSON: {args.json}")
    failed = any(not c["ok"] for wl in out["workloads"] for c in wl["checks"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
