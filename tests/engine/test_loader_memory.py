"""What a full local run keeps per task in doit's objects (#23: ≤ 100 MiB at 10,000 tasks).

Not timed: bytes allocated are counted with tracemalloc, and the slimmed doit nodes are
looked at after a real run, fan and chain, on doit's threaded and sequential runners.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from doit import control
from doit.task import Task, dict_to_task

from dodo_jobspec.engine import loader
from tests.helpers import counts, write


def _dicts(n: int) -> list[dict[str, Any]]:
    """Task dicts shaped as engine/loader.py makes them for a unit with one output."""
    def act() -> None:
        return None

    return [{"name": f"t{i}", "actions": [loader._Action(act)], "file_dep": [],
             "targets": [f"/state/tasks/t{i}/done.json", f"/work/out/{i}.txt"],
             "uptodate": [loader._IdentityChanged("d" * 32, "local")],
             "io": loader._NO_CAPTURE, "meta": {"unit": f"t{i}"}} for i in range(n)]


def _bytes_per_task(make: Any, n: int = 2000) -> float:
    dicts = _dicts(n)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tasks = [make(d) for d in dicts]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(tasks) == n
    return (after - before) / n


def test_a_slim_task_costs_well_under_doits() -> None:
    """doit's Task keeps 34 attributes in a dictionary of its own (~1.6 KB); in slots, with
    a bound method for its saved digest and no empty sets of its own, a task costs about
    half of doit's."""
    slim, plain = _bytes_per_task(loader.make_task), _bytes_per_task(dict_to_task)
    assert slim < 0.6 * plain, (slim, plain)


def test_a_slim_task_is_doits_task_to_doit() -> None:
    d = _dicts(1)[0]
    slim, plain = loader.make_task(dict(d)), dict_to_task(dict(d))
    assert isinstance(slim, Task) and not slim.__dict__
    for name in vars(plain):
        if name in ("file_dep", "calc_dep"):  # empty: one shared frozenset, read alike
            assert getattr(slim, name) is loader._NONE and getattr(plain, name) == set()
            continue
        assert type(getattr(slim, name)) is type(getattr(plain, name)), name
    assert slim.targets == plain.targets and slim.name == "t0"
    # doit's thread runner hands a task between threads by name; the rest is shared.
    slim.update_from_pickle(slim.pickle_safe_dict())
    assert not slim.__dict__ and slim.name == "t0"
    with pytest.raises(TypeError, match="threads"):
        slim.__getstate__()
    with pytest.raises(Exception, match="invalid field"):
        loader.make_task({**d, "bogus": 1})


SPECS = {
    "fan": """
        version: 1
        tasks:
        """ + "".join(f"""
        - {{name: t{i}, command: "echo {i} > o{i}.txt; echo x >> count.t{i}",
           outputs: [o{i}.txt]}}""" for i in range(12)) + """
        - {name: all, command: "cat o*.txt > all.txt; echo x >> count.all",
           inputs: [""" + ", ".join(f"o{i}.txt" for i in range(12)) + """],
           outputs: [all.txt]}
        """,
    "chain": """
        version: 1
        tasks:
        - {name: t0, command: "echo 0 > o0.txt; echo x >> count.t0", outputs: [o0.txt]}
        """ + "".join(f"""
        - {{name: t{i}, command: "cat o{i - 1}.txt > o{i}.txt; echo x >> count.t{i}",
           inputs: [o{i - 1}.txt], outputs: [o{i}.txt]}}""" for i in range(1, 12)),
}


@pytest.mark.parametrize("shape", list(SPECS))
def test_finished_nodes_let_go_and_the_run_is_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    from dodo_jobspec.cli.app import main

    nodes: list[Any] = []
    real = loader._SlimDispatcher._update_waiting

    def spy(self: Any, processed: Any) -> None:
        real(self, processed)
        nodes[:] = list(self.nodes.values())

    monkeypatch.setattr(loader._SlimDispatcher, "_update_waiting", spy)
    monkeypatch.chdir(tmp_path)
    spec = write(tmp_path, SPECS[shape])
    assert main([str(spec), "-q", "-j", "2"]) == 0
    ran = counts(tmp_path)
    assert len(ran) == (13 if shape == "fan" else 12) and set(ran.values()) == {1}
    # Every node finished, and every one gave up its wait sets; but the last: doit's runner
    # stops asking its dispatcher once nothing is left, so the last result never reaches it.
    assert len(nodes) == len(ran)
    assert all(n.run_status == "successful" for n in nodes)
    kept = [n.task.name for n in nodes if not (isinstance(n, loader._SlimNode)
            and n.waiting_me is loader._NONE and n.wait_run is loader._NONE
            and n.ancestors == ())]
    assert kept in ([], ["task/all" if shape == "fan" else "task/t11"]), kept
    # doit's own classes are back for anyone else in this process.
    assert control.TaskDispatcher is not loader._SlimDispatcher
    assert control.ExecNode is not loader._SlimNode
    # A second run: doit reads what the slim tasks saved; everything is up to date.
    (tmp_path / ".jobspec-do" / "spec" / "noop.manifest").unlink()
    assert main([str(spec), "-q", "-j", "2"]) == 0
    assert counts(tmp_path) == ran


def test_slim_dispatch_overlapping_runs_leave_doits_classes() -> None:
    """Two runs in one process whose spans overlap without nesting (A in, B in, A out,
    B out): doit's own classes are back at the end, whatever the order."""
    original = control.TaskDispatcher, control.ExecNode
    a, b = loader.slim_dispatch(), loader.slim_dispatch()
    a.__enter__()
    b.__enter__()
    assert control.TaskDispatcher is loader._SlimDispatcher
    a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    assert (control.TaskDispatcher, control.ExecNode) == original
