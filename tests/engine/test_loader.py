"""The doit task list with O(1) membership behaves exactly like the plain list doit expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from doit.control import TaskControl
from doit.task import Task

from dodo_jobspec.engine.loader import DepList


def test_deplist_matches_a_list_through_doits_implicit_deps() -> None:
    producers = [Task(f"p{i}", actions=[], targets=[f"/t/{i}"]) for i in range(50)]
    consumer = Task("c", actions=[], file_dep=[f"/t/{i}" for i in range(50)] + ["/t/3"],
                    task_dep=["p7"])
    consumer.task_dep = DepList(consumer.task_dep)
    TaskControl.set_implicit_deps({}, [*producers, consumer])
    # doit keeps file_dep as a set, so only membership and uniqueness are defined.
    assert consumer.task_dep[0] == "p7" and len(consumer.task_dep) == 50
    assert sorted(consumer.task_dep) == sorted(f"p{i}" for i in range(50))
    assert "p49" in consumer.task_dep and "nope" not in consumer.task_dep


def test_deplist_membership_follows_every_mutation() -> None:
    deps = DepList(["a"])
    deps.extend(["b", "c"])
    deps += ["d"]
    deps.insert(0, "e")
    deps.remove("b")
    assert deps.pop() == "d"
    deps[0] = "f"
    del deps[1]
    assert list(deps) == ["f", "c"]
    assert all(x in deps for x in ("f", "c"))
    assert not any(x in deps for x in ("a", "b", "d", "e"))
    deps.clear()
    assert "f" not in deps and list(deps) == []


def test_loader_gives_only_wide_fan_ins_a_deplist() -> None:
    """The quadratic check only bites tasks with many inputs; the rest keep doit's plain
    list (a set per task would cost memory at 100,000 tasks)."""
    from dodo_jobspec.engine.loader import DEPLIST_MIN, Loader

    wide = {"name": "wide", "actions": [],
            "file_dep": [f"/t/{i}" for i in range(DEPLIST_MIN + 1)]}
    narrow = {"name": "narrow", "actions": [], "file_dep": ["/t/0"]}
    tasks = {t.name: t for t in Loader([wide, narrow], {}).load_tasks(None, [])}
    assert isinstance(tasks["wide"].task_dep, DepList)
    assert type(tasks["narrow"].task_dep) is list


@pytest.mark.parametrize("digest,transformer", [
    ("ab" * 32, "local"), ("", "slurm"), ("x", 'we"ird\\näme ✓'), ("0", "")])
def test_identity_check_saves_the_digest_doits_config_changed_saves(
        digest: str, transformer: str, tmp_path: Path) -> None:
    """The cheaper identity check must store what doit's own would: databases written
    before it (or by the `advance` path) keep matching, so nothing re-runs for it."""
    from types import SimpleNamespace

    from doit.tools import config_changed

    from dodo_jobspec.engine.loader import _IdentityChanged

    done = tmp_path / "done.json"
    done.write_text('{"state": "completed"}')
    task = SimpleNamespace(targets=[str(done), str(tmp_path / "out.txt")])
    config = {"digest": digest, "transformer": transformer}
    ours, doits = _IdentityChanged(digest, transformer), config_changed(dict(config))
    assert not ours.__dict__  # slots only: memory per task
    assert repr(ours) == repr(config_changed(dict(config)))
    assert ours._calc_digest() == doits._calc_digest()
    assert ours(task, {"_config_changed": doits._calc_digest()}) is True
    assert ours(task, {"_config_changed": "something else"}) is False
    done.write_text("")  # an empty completion record says nothing: the unit runs again
    assert ours(task, {"_config_changed": doits._calc_digest()}) is False


def test_action_tells_doit_success_failure_and_error() -> None:
    from doit.exceptions import TaskError, TaskFailed

    from dodo_jobspec.engine.loader import _Action
    from dodo_jobspec.tasks.unit import Outcome

    def boom() -> Outcome:
        raise RuntimeError("kaput")

    ok = _Action(lambda x: Outcome(x == 1), 1)
    task = Task("t", actions=[ok])
    assert task.actions == [ok] and ok.task is task  # doit keeps our action as it is
    assert ok.execute() is None and ok.values == {} and ok.result is None
    failed = _Action(lambda: Outcome(False, "exit 3")).execute()
    assert isinstance(failed, TaskFailed) and failed.message == "exit 3"
    error = _Action(boom).execute()
    assert isinstance(error, TaskError) and "kaput" in error.get_msg()


def test_loaded_tasks_are_frozen_out_of_the_collectors_sight() -> None:
    import gc

    from dodo_jobspec.engine.loader import Loader

    gc.unfreeze()
    try:
        Loader([{"name": "a", "actions": []}], {}).load_tasks(None, [])
        assert gc.get_freeze_count() > 0 and gc.isenabled()
    finally:
        gc.unfreeze()
