"""How long `jobspec-do report` takes and how big its page is, at a size, after a real run.

    python benchmarks/report.py --n 100,10000 --rounds 3

For each N: the fan workload (N tasks + `gather`), every 1000th task made to fail, is run once
for real (`jobspec-do -k -j 2`); then, interleaved over the rounds, the journal's lines
(every unit's history and records) are read and parsed and nothing more (the floor), the
report's data and page are built in this process (`build` + `render`: what `jobspec-do
report` does after the spec is loaded; `build` again with one process reading the records,
its peer), the whole `jobspec-do report` command is timed, and, side by side, headless
chromium loads the page and an empty page (so its start-up can be taken off: the difference is
what the page costs the browser); the page also times itself from navigation to laid out
("laid out"). Medians; only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.workloads import jobspec  # noqa: E402
from dodo_jobspec.records.report import build  # noqa: E402
from dodo_jobspec.records.report_html import render  # noqa: E402
from dodo_jobspec.records.status import open_state  # noqa: E402

CLI = [sys.executable, "-m", "dodo_jobspec.cli"]


def _spec(folder: Path, n: int) -> Path:
    text = jobspec("fan", n)
    for i in range(7, n, 1000):  # a few failures: their rows lead the table, with stderr
        text = text.replace(f"  command: echo {i} > out/{i}.txt\n",
                            f"  command: echo {i} >&2; exit 3\n", 1)
    (folder / "out").mkdir()
    spec = folder / "fan.yaml"
    spec.write_text(text)
    return spec


# Injected into a copy of the page: the time from navigation to a laid-out page (the forced
# layout at the load event), as the page itself measures it, free of chromium's start-up.
PROBE = ("<script>addEventListener('load',function(){document.body.offsetHeight;"
         "document.documentElement.setAttribute('data-laid-out',performance.now().toFixed(0));"
         "});</script>")


def _chromium(page: Path, profile: Path) -> tuple[float, float]:
    """(wall seconds of a headless chromium --dump-dom, seconds to a laid-out page)."""
    probe = page.with_suffix(".probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    t0 = time.perf_counter()
    out = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-quic", "--no-first-run", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={profile}", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=300, check=True)
    wall = time.perf_counter() - t0
    m = re.search(r'data-laid-out="(\d+)"', out.stdout)
    if m is None:
        raise SystemExit(f"{page}: the page did not finish loading in chromium")
    return wall, int(m.group(1)) / 1000


def _floor(root: Path) -> float:
    """The peer of `build`: read the journal (every unit's history and job records) and
    parse each line's JSON, nothing else. What the report must do at least; `build` / this
    is its overhead."""
    t0 = time.perf_counter()
    with open(root / "journal.jsonl", "rb") as fh:
        for line in fh:
            json.loads(line)
    return time.perf_counter() - t0


def measure(n: int, rounds: int, workdir: Path, browser: bool) -> dict[str, float]:
    folder = workdir / f"n{n}"
    folder.mkdir(parents=True)
    spec = _spec(folder, n)
    run = subprocess.run([*CLI, "-k", "-q", "-j", "2", str(spec)], cwd=folder,
                         capture_output=True, text=True)
    if run.returncode not in (0, 1):
        raise SystemExit(f"the run failed: {run.stderr[-2000:]}")
    state = open_state(spec, None)
    page = folder / "report.html"
    blank = folder / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    # The command as an installed jobspec-do runs: from bytecode, not compiling every module
    # each time (as it would where PYTHONDONTWRITEBYTECODE is set); the caches stay in here.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    report_cmd = [*CLI, "report", str(spec), "-o", str(page)]
    subprocess.run(report_cmd, cwd=folder, capture_output=True, env=env, check=True)  # warm
    samples: dict[str, list[float]] = {"build": [], "build1": [], "render": [], "command": [],
                                       "browser": [], "blank": [], "laid_out": [], "floor": []}
    for r in range(rounds):
        samples["floor"].append(_floor(state.root))
        t0 = time.perf_counter()
        report = build(state.spec, state.root)
        t1 = time.perf_counter()
        text = render(report)
        t2 = time.perf_counter()
        samples["build"].append(t1 - t0)
        samples["render"].append(t2 - t1)
        t0 = time.perf_counter()
        build(state.spec, state.root, workers=1)  # its peer: the records read by one process
        samples["build1"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = subprocess.run(report_cmd, cwd=folder, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise SystemExit(f"`jobspec-do report` failed: {out.stderr}")
        samples["command"].append(time.perf_counter() - t0)
        if browser:
            samples["blank"].append(_chromium(blank, folder / f"profile-b{r}")[0])
            wall, laid_out = _chromium(page, folder / f"profile-p{r}")
            samples["browser"].append(wall)
            samples["laid_out"].append(laid_out)
    out = {k: statistics.median(v) for k, v in samples.items() if v}
    out["bytes"] = len(text.encode())
    out["rows"] = len(report.units)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="100,10000", help="comma-separated sizes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder, removed after")
    ap.add_argument("--no-browser", action="store_true", help="skip the chromium timing")
    args = ap.parse_args()
    browser = not args.no_browser and shutil.which("chromium") is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jsd-report-bench-"))
    try:
        print("| N tasks | records floor s | build s (x floor) | build, one process s | render s "
              "| `report` command s | page MB | laid out s | chromium wall s (page - blank) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in (int(x) for x in args.n.split(",")):
            m = measure(n, args.rounds, workdir, browser)
            chrome = (f"{m['browser']:.2f} - {m['blank']:.2f} = {m['browser'] - m['blank']:.2f}"
                      if "browser" in m else "—")
            laid = f"{m['laid_out']:.2f}" if "laid_out" in m else "—"
            print(f"| {n:,} | {m['floor']:.3g} | {m['build']:.3f} (x {m['build'] / m['floor']:.1f})"
                  f" | {m['build1']:.3f} | {m['render']:.3f} | {m['command']:.3f} | "
                  f"{m['bytes'] / 1e6:.2f} | {laid} | {chrome} |", flush=True)
        # Other work on the machine stretches every figure: say how much there was.
        print("\nload average (1, 5, 15 min) at the end: "
              + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
