"""A `--no-wait` batch on a real Slurm cluster: its sbatch calls overlap (at most
SUBMIT_PARALLEL at once), and every job id lands in the record of the task it runs. A chain:
the next unit's intent and script are written while the previous sbatch runs, and a kill at
any moment still submits each task once."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dodo_jobspec.transformers.base import TransformerOptions
from dodo_jobspec.transformers.slurm import SUBMIT_PARALLEL, ClusterInfo, SlurmTransformer
from tests.helpers import jobspec_do, write
from tests.services import SlurmCluster

# An sbatch in front of the real one. It marks itself in flight, waits (up to 5 s) until it
# sees another call in flight, writes how many it saw, submits through the real sbatch, and
# unmarks itself. One call at a time would never see a second: every call would write 1.
WRAPPER = """#!/bin/bash
d={marks}
touch "$d/in.$$"
for _ in $(seq 50); do
    [ "$(find "$d" -name 'in.*' | wc -l)" -ge 2 ] && break
    sleep 0.1
done
find "$d" -name 'in.*' | wc -l >> {seen}
{real} "$@"; rc=$?
rm -f "$d/in.$$"
exit $rc
"""

N = 8


def test_a_batch_goes_to_slurm_concurrently_and_each_id_is_recorded_for_its_task(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    real = shutil.which("sbatch")
    assert real is not None
    bin_dir, marks = tmp_path / "bin", tmp_path / "marks"
    bin_dir.mkdir()
    marks.mkdir()
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(WRAPPER.format(marks=marks, seen=tmp_path / "seen", real=real))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    work = tmp_path / "work"
    work.mkdir()
    spec = write(work, "version: 1\ntasks:\n" + "".join(
        f"- {{name: t{i}, command: 'echo t{i} > out.t{i}'}}\n" for i in range(N)))
    r = jobspec_do(spec, "-t", "slurm", "--no-wait", cwd=work,
                   env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr

    seen = [int(x) for x in (tmp_path / "seen").read_text().split()]
    assert len(seen) == N  # every submission went through the wrapper, once
    assert max(seen) >= 2, seen  # some calls overlapped
    assert max(seen) <= SUBMIT_PARALLEL, seen  # never more at once than the bound

    units = json.loads(jobspec_do("status", spec, "--json", cwd=work).stdout)["units"]
    ids = {u["name"]: u["job_id"] for u in units}
    assert sorted(ids) == sorted(f"t{i}" for i in range(N))
    assert len(set(ids.values())) == N
    # Slurm's own name for each recorded id is the task's (--job-name), and once the jobs
    # have run, each task's output is its own: no id was recorded against another task.
    queue = slurm.run("squeue", "--me", "-t", "all", "-h", "-o", "%i|%j").stdout
    names = dict(line.split("|", 1) for line in queue.split())
    assert {name: names.get(job) for name, job in ids.items()} == {n: n for n in ids}
    for job in ids.values():
        assert slurm.wait_job(job) == "COMPLETED"
    assert {p.name: p.read_text().strip() for p in work.glob("out.*")} == {
        f"out.t{i}": f"t{i}" for i in range(N)}


def test_threads_rendering_at_once_all_get_the_clusters_answer(slurm: SlurmCluster) -> None:
    """sinfo is asked once; a thread that comes while it runs waits for the answer rather
    than taking "sinfo did not answer" and choosing resources without the cluster."""
    transformer = SlurmTransformer(TransformerOptions())
    transformer.env = slurm.env
    start = threading.Barrier(4)

    def ask(_: int) -> ClusterInfo | None:
        start.wait()
        return transformer.cluster

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    assert answers[0] is not None and answers[0].nodes
    assert all(a is answers[0] for a in answers)


# An sbatch in front of the real one, for a chain t0 -> t1 -> ...: it notes whether the intent
# of the unit it submits (its --comment token) is in the journal already, and whether the next
# unit's script appears while it runs (it waits up to 5 s for it); with FAIL present, the call
# for t0 fails as sbatch does.
CHAIN_WRAPPER = """#!/bin/bash
script="${{@: -1}}"
name=$(sed -n 's/^#SBATCH --job-name=//p' "$script")
token=$(sed -n 's/^#SBATCH --comment=//p' "$script")
seen=NO-INTENT
grep -qF "\\"$token\\"" {work}/.jobspec-do/*/journal.jsonl && seen=intent
echo "$name $seen" >> {log}
n=${{name#t}}
if [ "$n" -lt {last} ]; then
    next="{work}/.jobspec-do/*/tasks/t$((n + 1))/job.*.sbatch"
    for _ in $(seq 50); do compgen -G "$next" > /dev/null && break; sleep 0.1; done
    when=late
    compgen -G "$next" > /dev/null && when=ahead
    echo "$name $when" >> {log}
fi
if [ "$name" = t0 ] && [ -e {fail} ]; then
    echo "sbatch: error: Batch job submission failed" >&2
    exit 1
fi
exec {real} "$@"
"""


def _chain(tmp_path: Path, n: int) -> tuple[Path, Path, dict[str, str], Path]:
    """A chain of ``n`` tasks in tmp_path/work, an sbatch wrapper (CHAIN_WRAPPER) on PATH:
    (spec, work folder, environment, the wrapper's log)."""
    real = shutil.which("sbatch")
    assert real is not None
    work, bin_dir, log = tmp_path / "work", tmp_path / "bin", tmp_path / "log"
    work.mkdir()
    bin_dir.mkdir()
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(CHAIN_WRAPPER.format(work=work, log=log, last=n - 1, real=real,
                                            fail=tmp_path / "FAIL"))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    spec = write(work, "version: 1\ntasks:\n" + "".join(
        f"- {{name: t{i}, command: 'true'" + (f", depends_on: [t{i - 1}]" if i else "") + "}\n"
        for i in range(n)))
    return spec, work, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def test_a_chain_writes_the_next_intent_and_script_while_sbatch_runs(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    """Only the previous job id is left to wait for between two sbatch calls of a chain, and
    still every intent is in the journal before its sbatch starts (crash safety)."""
    spec, work, env, log = _chain(tmp_path, 3)
    r = jobspec_do(spec, "-t", "slurm", "--no-wait", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert log.read_text().split("\n") == [
        "t0 intent", "t0 ahead", "t1 intent", "t1 ahead", "t2 intent", ""]
    units = json.loads(jobspec_do("status", spec, "--json", cwd=work).stdout)["units"]
    ids = [u["job_id"] for u in sorted(units, key=lambda u: u["name"])]
    assert len(set(ids)) == 3 and all(ids)
    # Each waits on the one before, inside Slurm.
    deps = dict(line.split("|") for line in slurm.run(
        "squeue", "--me", "-h", "-t", "all", "-o", "%i|%E").stdout.split())
    assert deps[ids[1]].startswith(f"afterok:{ids[0]}")
    assert deps[ids[2]].startswith(f"afterok:{ids[1]}")


def test_a_chain_whose_first_submission_fails_submits_nothing_after_it(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    """The next unit's intent was recorded while the failing sbatch ran: it is closed as
    blocked and never sent; once sbatch works, --resume submits the whole chain once."""
    spec, work, env, log = _chain(tmp_path, 3)
    (tmp_path / "FAIL").touch()
    before = len(slurm.submitted_job_ids())
    r = jobspec_do(spec, "-t", "slurm", "--no-wait", cwd=work, env=env)
    assert r.returncode == 1, r.stderr
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["t0", "t0"]
    assert len(slurm.submitted_job_ids()) == before
    units = {u["name"]: u for u in json.loads(
        jobspec_do("status", spec, "--json", cwd=work).stdout)["units"]}
    assert units["t0"]["state"] == "failed"
    # t1's intent was written while t0's sbatch ran: its attempt is closed as blocked. t2
    # came after t0's answer, and never had an attempt.
    assert (units["t1"]["state"], units["t2"]["state"]) == ("blocked", "never run")
    assert not any(u["job_id"] for u in units.values())

    (tmp_path / "FAIL").unlink()
    r = jobspec_do(spec, "-t", "slurm", "--no-wait", "--resume", cwd=work, env=env)
    assert r.returncode == 0, r.stderr
    assert len(slurm.submitted_job_ids()) - before == 3
    units = {u["name"]: u for u in json.loads(
        jobspec_do("status", spec, "--json", cwd=work).stdout)["units"]}
    assert len({u["job_id"] for u in units.values()}) == 3
    assert all(u["job_id"] for u in units.values())


def test_a_chain_killed_at_any_moment_is_submitted_once_per_task(
        tmp_path: Path, slurm: SlurmCluster) -> None:
    """kill -9 while sbatch calls and the next intents overlap, again and again, then run to
    the end: no task is submitted twice, none is lost."""
    n = 24
    spec = write(tmp_path, "version: 1\ntasks:\n" + "".join(
        f"- {{name: t{i}, command: 'true'" + (f", depends_on: [t{i - 1}]" if i else "") + "}\n"
        for i in range(n)))
    before = len(slurm.submitted_job_ids())
    cmd = [sys.executable, "-m", "dodo_jobspec.cli", "run", "--no-wait", "-q", "-t", "slurm",
           str(spec)]
    for step in (2, 3, 5, 4):
        # Killed once `step` more submissions reached slurmctld: somewhere in the chain, at
        # whatever point of its intent, script, sbatch, record sequence the run then is.
        seen = len(slurm.submitted_job_ids())
        p = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while (len(slurm.submitted_job_ids()) < seen + step and p.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.002)
        p.kill()
        p.wait()
    r = jobspec_do(spec, "-t", "slurm", "--no-wait", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(slurm.submitted_job_ids()) - before == n  # not one submitted twice
    units = json.loads(jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)["units"]
    ids = {u["job_id"] for u in units}
    assert len(units) == n and len(ids) == n and all(ids)
    # Each recorded job has a token of its own, and no other job in the queue carries one of
    # them (a second submission of an attempt would). Other tests' jobs share the queue.
    rows = [line.split("|", 1) for line in slurm.run(
        "squeue", "--me", "-h", "-t", "all", "-o", "%i|%k").stdout.split()]
    tokens = {comment for job, comment in rows if job in ids}
    assert len(tokens) == n
    assert sum(comment in tokens for _, comment in rows) == n
