"""The sbcast stager: where it sends, what it refuses, its script, and a real run in a job.

The full path (a spec staged with sbcast inside a 2-node job, incrementally) is in
tests/engine/test_slurm_nodes_e2e.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dodo_jobspec.stagers.base import StageItem, StagerSettings, StagingError
from dodo_jobspec.stagers.sbcast import SbcastStager
from tests.helpers import jobspec_do, write
from tests.services import SlurmNodes


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "inputs"
    (src / "deep").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "deep" / "b.txt").write_text("beta\n")
    return src


def test_relative_destinations_go_under_the_remote_root(tmp_path: Path) -> None:
    stager = SbcastStager(StagerSettings(remote_root="/scratch/run"))
    dests = [t.dest for t in stager.transfers([StageItem(_tree(tmp_path), "inputs")])]
    assert dests == ["/scratch/run/inputs/a.txt", "/scratch/run/inputs/deep/b.txt"]


@pytest.mark.parametrize(("root", "dest", "why"), [
    ("/scratch", "../etc", "escapes the remote root"),
    ("", "inputs", "needs an absolute destination or a remote_root"),
    ("/scratch/{host}", "inputs", "`{host}`"),
])
def test_destinations_it_cannot_serve_are_refused(tmp_path: Path, root: str, dest: str,
                                                  why: str) -> None:
    stager = SbcastStager(StagerSettings(remote_root=root))
    with pytest.raises(StagingError, match=why):
        stager.transfers([StageItem(_tree(tmp_path), dest)])


def test_outside_a_job_put_says_how_to_stage_instead(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(StagingError, match="-t slurm"):
        SbcastStager(StagerSettings(remote_root="/x")).put([StageItem(_tree(tmp_path), "in")])
    with pytest.raises(StagingError, match="cannot copy files back"):
        SbcastStager().get([StageItem(tmp_path, "/x")])


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_the_job_script_passes_shellcheck(tmp_path: Path) -> None:
    text = SbcastStager(StagerSettings(remote_root="/scratch/it's here")).job_script(
        [StageItem(_tree(tmp_path), "inputs")], str(tmp_path / "record"))
    script = tmp_path / "stage.sh"
    script.write_text(text)
    proc = subprocess.run(["shellcheck", "-S", "warning", str(script)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_a_transformer_that_runs_no_job_refuses_it_by_name(tmp_path: Path) -> None:
    _tree(tmp_path)
    spec = write(tmp_path, """
        version: 1
        tasks:
        - name: use
          steps: [{name: stage, path: inputs}]
          command: "true"
        """)
    (tmp_path / "jobspec-do.yaml").write_text(json.dumps({"stager": "sbcast",
                                                          "ssh": {"remote_root": "/tmp/x"}}))
    r = jobspec_do(spec, "-t", "local", cwd=tmp_path)
    assert r.returncode == 2  # refused before the run starts, as a request it cannot meet
    assert "stages inside the job" in r.stderr and "-t slurm" in r.stderr, r.stderr
    assert "tasks[0].steps[0]" in r.stderr and "nothing was submitted" in r.stderr


def test_put_inside_a_real_allocation_reaches_every_node(slurm_nodes: SlurmNodes) -> None:
    folder = slurm_nodes.shared / "sbcast-put"
    folder.mkdir()
    src = _tree(folder)
    code = ("import json, sys; from pathlib import Path;"
            "from dodo_jobspec.stagers.sbcast import SbcastStager;"
            "from dodo_jobspec.stagers.base import StageItem, StagerSettings;"
            "s = SbcastStager(StagerSettings(remote_root='/tmp/sbcast-put'));"
            f"r = s.put([StageItem(Path({str(src)!r}), 'inputs')]);"
            "print(json.dumps({n: [len(x.sent), len(x.skipped)] for n, x in r.nodes.items()}))")
    job = slurm_nodes.run("sbatch", "--parsable", "-N2", "-o", str(folder / "out"),
                          "--wrap", f"{sys.executable} -c \"{code}\" && "
                                    f"{sys.executable} -c \"{code}\"").stdout.strip()
    assert slurm_nodes.wait_job(job, timeout=60) == "COMPLETED", (folder / "out").read_text()
    first, second = (folder / "out").read_text().splitlines()[-2:]
    assert json.loads(first) == {"allocation": [2, 0]}
    assert json.loads(second) == {"allocation": [0, 2]}  # already on every node
    for node in slurm_nodes.nodes:
        copy = slurm_nodes.node_tmp(node) / "sbcast-put" / "inputs" / "deep" / "b.txt"
        assert copy.read_text() == "beta\n"
