"""A `--no-wait` batch on a real Slurm cluster: its sbatch calls overlap (at most
SUBMIT_PARALLEL at once), and every job id lands in the record of the task it runs."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
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
