"""The unit runner: how long a local task holds its slot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dodo_jobspec.plan import build
from dodo_jobspec.state import StateDir
from dodo_jobspec.tasks.gate import SlotGate
from dodo_jobspec.tasks.unit import RunOptions, UnitRunner
from dodo_jobspec.transformers.base import TransformerOptions
from dodo_jobspec.transformers.local import LocalTransformer
from tests.helpers import load_text


def test_a_slot_is_held_while_the_process_runs_not_while_its_records_are_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run gives doit more threads than slots so that one task's bookkeeping overlaps the
    next task's process: that only works if the slot is free before the records are written."""
    monkeypatch.chdir(tmp_path)
    spec = load_text(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "echo ran > a.txt"}
        """)
    gate = SlotGate(1)
    transformer = LocalTransformer(TransformerOptions(jobs=1))
    runner = UnitRunner(spec, StateDir(tmp_path / "state", spec), transformer, RunOptions(),
                        lambda *event: None, gate=gate, machine_cores=os.cpu_count() or 1)
    during_process: list[int] = []
    during_records: list[int] = []
    wait, record = transformer.wait, runner._record

    def watched_wait(job_id: str):  # type: ignore[no-untyped-def]
        during_process.append(gate.free)
        return wait(job_id)

    def watched_record(*args, **kwargs):  # type: ignore[no-untyped-def]
        during_records.append(gate.free)
        return record(*args, **kwargs)

    monkeypatch.setattr(transformer, "wait", watched_wait)
    monkeypatch.setattr(runner, "waiter", watched_wait)
    monkeypatch.setattr(runner, "_record", watched_record)
    (pu,) = build(spec, submits_groups=False)
    assert runner.run(pu).ok
    assert (tmp_path / "a.txt").read_text() == "ran\n"
    assert during_process == [0], "the process ran without holding its slot"
    assert during_records == [1], "the slot was still held while the records were written"
