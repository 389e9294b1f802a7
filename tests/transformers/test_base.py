"""What every transformer checks before anything runs (transformers/base.py)."""

from __future__ import annotations

from pathlib import Path

from dodo_jobspec.transformers.local import LocalTransformer
from dodo_jobspec.transformers.slurm import ClusterInfo, SlurmNode, SlurmTransformer
from tests.helpers import load_text

GROUP_WITH_STEP = """
    version: 1
    groups:
    - name: g
      tasks:
      - name: t
        steps: [{name: stage, path: inputs}]
        command: "cat inputs/a"
    tasks:
    - name: outside
      steps: [{name: stage, path: inputs}]
      command: "cat inputs/a"
    """


def test_a_step_inside_a_group_submitted_as_one_job_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    spec = load_text(tmp_path, GROUP_WITH_STEP)
    cluster = ClusterInfo((SlurmNode("n1", 4, 0, "debug"),), "debug")
    problems = SlurmTransformer(cluster=cluster).check(spec)
    assert [p.path for p in problems] == [("groups[0].tasks[0].steps[0]",)]
    assert "task 't'" in problems[0].message and "group 'g' is one job" in problems[0].message
    assert "move the step" in (problems[0].hint or "")


def test_the_local_transformer_runs_steps_inside_groups(tmp_path: Path) -> None:
    (tmp_path / "inputs").mkdir()
    assert LocalTransformer().check(load_text(tmp_path, GROUP_WITH_STEP)) == []
