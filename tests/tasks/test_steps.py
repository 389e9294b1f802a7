"""Which stage steps can follow a task that bursts to another place (tasks/steps.py's
burst_refusal, asked by the burst policy before anything is submitted there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec.bursters.base import Capacity
from dodo_jobspec.bursters.flux import FluxBurster
from dodo_jobspec.bursters.local import LocalBurster
from dodo_jobspec.bursters.policy import BurstPolicy
from dodo_jobspec.bursters.slurm import SlurmBurster
from dodo_jobspec.tasks.steps import StageConfig, burst_refusal
from tests.helpers import load_text

SPEC = """
    version: 1
    tasks:
    - {name: staged, steps: [{name: stage, path: data}], command: "true"}
    - {name: plain, command: "true"}
    groups:
    - name: outer
      tasks:
      - {name: inner, steps: [{name: stage, path: data}], command: "true"}
    """


class _Roomy:
    """A place that would take anything: only the staging can refuse."""

    def capacity(self) -> Capacity:
        return Capacity(64, 64)

    def refuses(self, req: object) -> None:
        return None


class Flux(_Roomy, FluxBurster):
    pass


class Slurm(_Roomy, SlurmBurster):
    pass


class Local(_Roomy, LocalBurster):
    pass


@pytest.mark.parametrize("stager, target, refused", [
    ("shared", Flux, None),  # nothing moves: the target reads the spec's folder anyway
    ("ssh", Local, "the ssh stager sends to the primary's nodes before the job"),
    ("flux-archive", Flux, "the flux-archive stager sends to the primary's nodes"),
    ("sbcast", Slurm, None),  # the script goes with the job, and Slurm runs it there
    ("sbcast", Flux, "which the flux transformer there cannot run"),
])
def test_stage_steps_follow_a_burst_only_where_the_target_can_stage(
        tmp_path: Path, stager: str, target: type, refused: str | None) -> None:
    spec = load_text(tmp_path, SPEC)
    place = target(target.Settings(name="there"))
    policy = BurstPolicy([place], staging=burst_refusal(StageConfig(stager)))
    for name in ("staged", "outer"):  # a task, and a group whose task stages
        unit = spec.find(name)[0]
        why = policy.refusal(unit, place, None)
        taker, reasons = policy.first_taker(unit, None)
        if refused is None:
            assert why is None and taker is place
        else:
            task = "staged" if name == "staged" else "inner"
            assert why is not None and refused in why and f"task '{task}'" in why, why
            assert taker is None and reasons == [f"there: {why}"]
    # A task without stage steps goes anywhere the place can take it.
    assert policy.first_taker(spec.find("plain")[0], None)[0] is place
