"""The probes in benchmarks/ still run against the package as it is (they patch its internals).

Tiny sizes and no timing assertions: what they measure is for benchmarks/README.md, not a test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import FluxInstance, SlurmCluster

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _table(stdout: str) -> list[list[str]]:
    """The data rows of the first Markdown table in ``stdout``, split into cells."""
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]


def test_run_probe_times_a_real_run(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(BENCH / "run_probe.py"), "--n", "20",
                          "--rounds", "1", "--busy-us", "0,50000", "--spawns", "ctypes,os",
                          "--workdir", str(tmp_path / "probe")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = _table(out.stdout)
    assert [r[0] for r in rows] == ["busy 0 µs, ctypes", "busy 50000 µs, ctypes", "busy 0 µs, os",
                                    "busy 50000 µs, os"]
    for row in rows:
        wall, start, _wait, cpu, _children, _switches = row[1:]
        # The starts went through the patched spawn (a median exists), and the run cost CPU.
        assert float(wall) > 0 and float(start) > 0 and float(cpu) > 0, row
    # 50 ms of Python per task is 1 s more CPU, well above the run-to-run noise of the base
    # (5 ms, i.e. 0.1 s, was not: CI once saw the busy run cost less CPU than the idle one).
    assert "wall seconds per added CPU-second (busy 50000 µs)" in out.stdout
    assert not (tmp_path / "probe").exists()  # its workload is removed afterwards


def test_spawn_latency_prints_every_case() -> None:
    out = subprocess.run([sys.executable, str(BENCH / "spawn_latency.py"), "--n", "20"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = _table(out.stdout)
    assert len(rows) == 6
    assert all(float(alone) > 0 and float(overlapped) > 0 for _, alone, overlapped in rows)


def test_budget_runs_the_skeleton_against_xargs(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(BENCH / "budget.py"), "--n", "30", "--rounds", "1",
                          "--busy-us", "0,200", "--launchers", "direct,shell",
                          "--workdir", str(tmp_path / "budget")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = _table(out.stdout)
    assert [r[0] for r in rows] == ["xargs", "skeleton, 0 µs", "skeleton, 200 µs",
                                    "slot shells, 0 µs", "slot shells, 200 µs"]
    assert rows[0][2] == "1.00"  # xargs is the floor the others are divided by
    assert all(float(wall) > 0 and float(ratio) > 0 for _, wall, ratio in rows)
    assert not (tmp_path / "budget").exists()


def test_report_benchmark_measures_a_real_run(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(BENCH / "report.py"), "--n", "20", "--rounds", "1",
                          "--no-browser", "--workdir", str(tmp_path / "report")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    [row] = _table(out.stdout)
    n, floor, build, build1, render, command, mb, laid_out, chromium = row
    assert n == "20" and float(floor) > 0 and float(build.split()[0]) > 0 and float(build1) > 0
    assert float(render) > 0 and float(command) > 0
    assert 0 < float(mb) < 1 and laid_out == chromium == "—"
    assert not (tmp_path / "report").exists()  # its workload is removed afterwards


def test_flux_submit_compares_jobspec_do_with_flux_itself(flux: FluxInstance) -> None:
    out = subprocess.run([sys.executable, str(BENCH / "flux_submit.py"), "--n", "4",
                          "--rounds", "1"], capture_output=True, text=True, timeout=180,
                         env=flux.env)
    assert out.returncode == 0, out.stderr
    rows = _table(out.stdout)
    assert [r[0] for r in rows] == ["jobspec-do, 4 tasks", "jobspec-do, 1 task x 4 replicas",
                                    "flux.job.submit_async", "flux submit loop"]
    assert rows[2][2] == "1.00"  # submit_async is what the others are divided by
    assert all(float(seconds) > 0 for _, seconds, _ratio in rows)


def test_slurm_submit_times_jobspec_do_beside_an_sbatch_loop(tmp_path: Path,
                                                             slurm: SlurmCluster) -> None:
    out = subprocess.run([sys.executable, str(BENCH / "slurm_submit.py"), "-n", "3",
                          "--rounds", "1", "--install", "here", "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env=slurm.env)
    assert out.returncode == 0, out.stdout + out.stderr  # its checks passed: 3 ids, 3 tasks
    rows = {r[0]: r for r in _table(out.stdout)}
    assert list(rows) == ["loop", "no-wait", "loop-chain", "no-wait-chain", "loop+wait",
                          "blocking"]
    for case, peer in (("no-wait", "loop"), ("no-wait-chain", "loop-chain"),
                       ("blocking", "loop+wait")):
        # The ratio is the peer's median over the case's: the two columns agree.
        # Medians are printed to the millisecond and the ratio to two decimals, so the
        # ratio recomputed from the printed medians is close, not equal.
        ratio = float(rows[peer][1]) / float(rows[case][1])
        shown = float(rows[case][4].removeprefix("x "))
        assert shown == pytest.approx(ratio, rel=0.03, abs=0.006), rows[case]


def test_slurm_submit_times_a_baseline_checkout_in_the_same_rounds(tmp_path: Path,
                                                                   slurm: SlurmCluster) -> None:
    """`--baseline DIR`: CASE@base is the same command run by DIR's code, checked the same
    way and compared with the same loop."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "dodo_jobspec").symlink_to(BENCH.parent / "dodo_jobspec")
    out = subprocess.run([sys.executable, str(BENCH / "slurm_submit.py"), "-n", "3",
                          "--rounds", "1", "--install", "here", "--workdir", str(tmp_path / "w"),
                          "--baseline", str(checkout),
                          "--cases", "loop-chain,no-wait-chain,no-wait-chain@base"],
                         capture_output=True, text=True, timeout=300, env=slurm.env)
    assert out.returncode == 0, out.stdout + out.stderr  # its checks passed: 3 ids, 3 tasks
    rows = {r[0]: r for r in _table(out.stdout)}
    assert list(rows) == ["loop-chain", "no-wait-chain", "no-wait-chain@base"]
    assert rows["no-wait-chain@base"][4].startswith("x ")  # against loop-chain
    script = (tmp_path / "w" / "jobspec-do-baseline").read_text()
    assert repr(str(checkout)) in script


def test_run_times_every_tool_on_each_file_system_in_one_run(tmp_path: Path) -> None:
    """`run.py --fs`: the same workloads on tmpfs and on the disk, one summary table."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        raise AssertionError("no /dev/shm: the tmpfs half of this benchmark cannot run here")
    tmpfs_dir = shm / f"jsd-bench-test-{tmp_path.name}"
    try:
        out = subprocess.run([sys.executable, str(BENCH / "run.py"), "--n", "3", "--rounds", "1",
                              "--kinds", "chain", "--tools", "jobspec-do,make,xargs",
                              "--install", "here", "--fs",
                              f"tmpfs={tmpfs_dir},ext4={tmp_path / 'disk'}"],
                             capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["rm", "-rf", str(tmpfs_dir)], check=True)
    assert out.returncode == 0, out.stderr
    summary = out.stdout.split("### Summary", 1)[1].split("\n\n", 2)[1]
    rows = _table(summary)
    assert [(r[0].split(" ")[0], r[1], r[2]) for r in rows] == [
        (fs, "chain 3", tool) for fs in ("tmpfs", "ext4") for tool in ("jobspec-do", "make",
                                                                       "xargs")]
    assert all(r[3].endswith(" s") for r in rows)  # every full run was timed
    assert rows[0][7] != "—" and rows[0][7].startswith("x ")  # jobspec-do's no-op against make's
    assert out.stdout.count("checks: all ") == 2
    assert not any(tmp_path.joinpath("disk").iterdir())  # its work folders are removed


def test_run_refuses_a_folder_on_another_file_system(tmp_path: Path) -> None:
    """A folder said to be on ext4 that is on tmpfs: refused by name, nothing timed."""
    folder = Path("/dev/shm") / f"jsd-bench-test-{tmp_path.name}"
    try:
        out = subprocess.run([sys.executable, str(BENCH / "run.py"), "--n", "3", "--rounds",
                              "1", "--install", "here", "--fs", f"ext4={folder}"],
                             capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    assert out.returncode != 0
    assert f"--fs ext4={folder}: that folder is on tmpfs" in out.stderr, out.stderr
    assert "###" not in out.stdout


def test_replicas_probe_measures_plan_and_dry_run(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(BENCH / "replicas.py"), "--replicas", "20",
                          "--tasks", "2", "--workdir", str(tmp_path / "replicas"),
                          "--jobspec-do", f"{sys.executable} -m dodo_jobspec.cli"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = _table(out.stdout)
    assert [r[:2] for r in rows[:5]] == [
        ["1 task x 20 replicas", "plan, never ran"],
        ["1 task x 20 replicas", "run --dry-run, never ran"],
        ["1 task x 20 replicas", "run (first fails)"],
        ["1 task x 20 replicas", "plan, after the run"],
        ["1 task x 20 replicas", "run --dry-run, after the run"]]
    assert len(rows) == 10 and all(float(r[3]) > 0 for r in rows)
    assert "run (first fails): " in out.stderr and "(exit 1)" in out.stderr  # `first` failed
    assert out.stderr.count("(exit 0)") == 8, out.stderr  # every plan and dry run answered
