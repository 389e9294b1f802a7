"""Conformance tests any burster package runs against its plugin (needs pytest).

In the package's tests, import these and provide a ``burster`` fixture: an instance aimed at
a real place the tests may submit small jobs to (``sh -c`` commands of a few seconds)::

    from dodo_jobspec.bursters.conformance import *  # noqa: F403

    @pytest.fixture
    def burster(tmp_path):
        return MyBurster(MyBurster.Settings(uri=...), tmp_path / "state")

What they hold a burster to: it is registered under its name; its settings are a dataclass
that survives a task's record; it refuses what it can never take before anything is
submitted; a task runs once, its exit code is reported, its job is found again by token
(when its transformer can re-attach) and can be cancelled; and ``withdraw`` says True only
for a job that never ran.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path

import pytest

from .. import plugins
from ..errors import PluginError
from ..spec.model import Counts, Resource, ResourceRequest, Task
from ..spec.resolve import load
from ..transformers.base import JobState, JobStatus, UnitContext
from .base import Burster, BurstSettings, from_record

__all__ = [
    "test_a_failing_task_reports_its_exit_code",
    "test_a_job_can_be_cancelled",
    "test_a_task_runs_once_and_is_found_by_its_token",
    "test_it_is_registered_under_its_name",
    "test_it_refuses_what_it_can_never_take",
    "test_its_settings_survive_a_record",
    "test_withdraw_says_true_only_for_a_job_that_never_ran",
]

WAIT = 120.0  # seconds any test job may take, queueing included


def test_it_is_registered_under_its_name(burster: Burster) -> None:
    assert burster.name in plugins.names(plugins.BURSTERS), \
        f"register {type(burster).__name__} under the dodo_jobspec.bursters entry point"
    assert plugins.load(plugins.BURSTERS, burster.name) is type(burster)


def test_its_settings_survive_a_record(burster: Burster) -> None:
    settings = type(burster).Settings
    assert dataclasses.is_dataclass(settings) and issubclass(settings, BurstSettings)
    settings()  # every field has a default: --burst NAME works without a config entry
    again = from_record(burster.to_record(), burster.state_dir)
    assert type(again) is type(burster) and again.settings == burster.settings


def test_it_refuses_what_it_can_never_take(burster: Burster) -> None:
    huge = ResourceRequest(None, Resource("node", 100000), Counts(100000, 100000, 1, 0))
    reason = burster.refuses(huge)
    assert isinstance(reason, str) and reason
    one = ResourceRequest(None, Resource("core", 1), Counts(0, 1, 1, 0))
    assert burster.refuses(one) is None


def test_a_task_runs_once_and_is_found_by_its_token(burster: Burster, tmp_path: Path) -> None:
    task, ctx = _task(burster, tmp_path, f"echo ran >> {tmp_path}/ran.txt")
    transformer = burster.transformer()
    job_id = transformer.submit(task, ctx)
    if transformer.can_reattach:
        assert transformer.find(task, ctx) == job_id
    status = _wait(burster, job_id)
    assert status.state == JobState.COMPLETED, status
    assert (tmp_path / "ran.txt").read_text() == "ran\n"


def test_a_failing_task_reports_its_exit_code(burster: Burster, tmp_path: Path) -> None:
    task, ctx = _task(burster, tmp_path, "exit 3")
    status = _wait(burster, burster.transformer().submit(task, ctx))
    assert status.state == JobState.FAILED and status.exit_code == 3, status


def test_a_job_can_be_cancelled(burster: Burster, tmp_path: Path) -> None:
    task, ctx = _task(burster, tmp_path, f"sleep 300; echo ran >> {tmp_path}/ran.txt")
    transformer = burster.transformer()
    job_id = transformer.submit(task, ctx)
    transformer.cancel([job_id])
    status = _wait(burster, job_id)
    assert status.state in (JobState.CANCELED, JobState.FAILED), status
    assert not (tmp_path / "ran.txt").exists()


def test_withdraw_says_true_only_for_a_job_that_never_ran(burster: Burster,
                                                          tmp_path: Path) -> None:
    task, ctx = _task(burster, tmp_path, f"echo ran >> {tmp_path}/ran.txt")
    job_id = burster.transformer().submit(task, ctx)
    if type(burster).withdraw is Burster.withdraw:
        # A burster that takes no queued job back must say so, by name, and leave the job
        # to run to its end, once (a move from it is then never attempted).
        with pytest.raises(PluginError, match=burster.name):
            burster.withdraw(job_id)
        withdrawn = False
    else:
        withdrawn = burster.withdraw(job_id)
    status = _wait(burster, job_id)
    if withdrawn:
        assert status.state != JobState.COMPLETED and not (tmp_path / "ran.txt").exists()
    else:  # it had started: it must run to its end, once
        assert status.state == JobState.COMPLETED, status
        assert (tmp_path / "ran.txt").read_text() == "ran\n"


# -- helpers ------------------------------------------------------------------------------------
def _task(burster: Burster, folder: Path, command: str) -> tuple[Task, UnitContext]:
    """One task running ``command`` under /bin/sh, and the context of its first attempt."""
    name = f"conf-{secrets.token_hex(3)}"
    path = folder / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\ntasks:\n- name: {name}\n"
                    f"  command: {command!r}\n")
    transformer = burster.transformer()
    spec = load(path, default_resources=transformer.default_resources or Resource("core", 1))
    task = spec.nodes[next(iter(spec.nodes))]
    assert isinstance(task, Task)
    work = folder / "state" / name
    work.mkdir(parents=True)
    return task, UnitContext(spec=spec, workdir=work, attempt=1,
                             token=f"jsd-conf-{secrets.token_hex(6)}", stdout=work / "stdout.1",
                             stderr=work / "stderr.1", cwd=folder)


def _wait(burster: Burster, job_id: str) -> JobStatus:
    transformer = burster.transformer()
    if not transformer.polled:
        return transformer.wait(job_id)
    deadline = time.monotonic() + WAIT
    while True:
        status = transformer.status([job_id]).get(job_id, JobStatus(JobState.LOST))
        if status.state.terminal:
            return status
        assert time.monotonic() < deadline, f"job {job_id} still {status.state} after {WAIT}s"
        time.sleep(0.3)
