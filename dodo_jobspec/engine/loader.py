"""Planned units -> doit task dicts, Make-style.

Each unit's completion record (``done.json``) is its target; its dependents list that record
as a ``file_dep``. So doit's own up-to-date check answers every question: a unit re-runs when
its definition changed (``config_changed``), an input changed or an output is missing, or
anything upstream re-ran (the upstream record's content changed).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from doit import control
from doit.action import BaseAction
from doit.cmd_base import TaskLoader2
from doit.exceptions import InvalidTask, TaskError, TaskFailed
from doit.task import Task as DoitTask
from doit.tools import config_changed

from ..plan import PlannedUnit, owned_step_task, replica_task
from ..records.state import StateDir
from ..spec.model import Task
from ..tasks.steps import StepRunner
from ..tasks.unit import Outcome, UnitRunner

# doit calls inspect.signature() on every uptodate callable, on every run of every task, to
# decide which magic arguments to pass; an explicit __signature__ answers that at once.
_TASK_VALUES = inspect.Signature([
    inspect.Parameter("task", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    inspect.Parameter("values", inspect.Parameter.POSITIONAL_OR_KEYWORD)])


_NO_CAPTURE = {"capture": False}  # shared: doit copies it into each task's IOConfig


class _ConfigChanged(config_changed):  # type: ignore[misc]
    """doit's config_changed, with its call signature precomputed."""

    __signature__ = _TASK_VALUES


class _IdentityChanged(_ConfigChanged):
    """``config_changed({"digest": ..., "transformer": ...})``, with the same digest computed
    without building a sorted JSON encoder on every check (a tenth of a trivial task's Python
    time): the saved values, and so existing databases, stay doit's. The config is kept as a
    (digest, transformer) pair in slots: one of these lives per task, 100,000 in a big run."""

    __slots__ = ("config", "config_digest", "encoder")

    def __init__(self, digest: str, transformer: str) -> None:
        super().__init__((digest, transformer))

    def __repr__(self) -> str:
        digest, transformer = self.config
        return f"config_changed({{'digest': {digest!r}, 'transformer': {transformer!r}}})"

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        if not super().__call__(task, values):
            return False
        # The completion record (the first target) exists, or doit would not ask; an empty
        # one (cut short by a power loss, or truncated) says nothing: run the unit again, and
        # its records are written afresh.
        try:
            return os.stat(task.targets[0]).st_size > 0
        except (OSError, IndexError):
            return False

    def configure_task(self, task: Any) -> None:
        # doit's appends a lambda (a function and its closure cell, ~230 bytes per task) that
        # reads config_digest when the task succeeds; a bound method reads the same.
        task.value_savers.append(self._saved)

    def _saved(self) -> dict[str, str]:
        return {"_config_changed": self.config_digest}

    def _calc_digest(self) -> str:
        digest, transformer = self.config
        text = f'{{"digest": {json.dumps(digest)}, "transformer": {json.dumps(transformer)}}}'
        return hashlib.md5(text.encode("utf-8")).hexdigest()


class _Unchanged:
    """doit uptodate: True while ``path`` holds exactly ``content`` (a write step's file)."""

    __signature__ = inspect.Signature([])

    def __init__(self, path: os.PathLike[str], content: bytes) -> None:
        self.path = path
        self.content = content

    def __call__(self) -> bool:
        try:
            with open(self.path, "rb") as fh:
                return fh.read() == self.content
        except OSError:
            return False


class _Action(BaseAction):  # type: ignore[misc]
    """A doit action that calls ``fn(*args)`` and tells its Outcome in doit's terms.

    A BaseAction of our own, not a callable that doit wraps in a PythonAction: that one swaps
    sys.stdout, asks inspect for the callable's magic arguments and fills a __dict__ on every
    run of every task (a tenth of a trivial task's Python time), and a 100,000-task run keeps
    one action per task. doit reads ``out``, ``err``, ``result`` and ``values`` after execute().
    """

    __slots__ = ("args", "err", "fn", "out", "task")
    result = None
    values: dict[str, Any] = {}  # read only: doit merges it into task.values

    def __init__(self, fn: Callable[..., Outcome], *args: Any) -> None:
        self.fn = fn
        self.args = args
        self.task = None
        self.out = self.err = None

    def execute(self, out: Any = None, err: Any = None) -> TaskFailed | TaskError | None:
        try:
            outcome = self.fn(*self.args)
        except Exception as exc:  # as doit's PythonAction: the task errs, the run goes on
            return TaskError("PythonAction Error", exc)
        return None if outcome.ok else TaskFailed(outcome.message or "failed")

    def __str__(self) -> str:
        return f"Python: jobspec-do {getattr(self.fn, '__name__', 'action')}"

    def __repr__(self) -> str:
        return f"<jobspec-do action {getattr(self.fn, '__qualname__', self.fn)!r}>"


def task_dicts(plan: list[PlannedUnit], runner: UnitRunner, steps: StepRunner,
               state: StateDir, local_replicas: bool) -> list[dict[str, Any]]:
    """One doit task per unit (plus one per replica and per step), dependencies first."""
    return list(iter_task_dicts(plan, runner, steps, state, local_replicas))


def iter_task_dicts(plan: list[PlannedUnit], runner: UnitRunner, steps: StepRunner,
                    state: StateDir, local_replicas: bool) -> Iterator[dict[str, Any]]:
    """``task_dicts`` one at a time: `plan` checks each and lets it go, so 100,000 replicas
    are never 100,000 doit tasks alive at once."""
    for pu in plan:
        st = state.unit(pu.node)
        deps = [state.unit(d).done_str for d in pu.deps] + [str(p) for p in pu.inputs]
        node = pu.node
        # A task's own steps; for a group submitted as one job, its tasks' steps: all run
        # here before the job, and the job waits for every one of them.
        for owner in pu.step_units:
            task = owner.node
            assert isinstance(task, Task)
            for i, step in enumerate(task.steps):
                target = steps.receipt(owner, i)
                targets, uptodate = [str(target)], [_ConfigChanged(steps.fingerprint(owner, i))]
                if step.name == "write":
                    # What it writes is its output: missing (a target) or changed (compared
                    # with what it writes) makes the step, and so its task, out of date.
                    written = steps.path(owner, i)
                    targets.append(str(written))
                    uptodate.append(_Unchanged(written, (step.content or "").encode()))
                yield {
                    "name": owned_step_task(pu, owner, i, step.name),
                    "actions": [_Action(steps.run, owner, i)],
                    "file_dep": [*deps, *steps.sources(owner, i)],
                    "targets": targets,
                    "uptodate": uptodate,
                    "io": _NO_CAPTURE,
                    "meta": {"unit": task.name, "kind": step.name, "path": step.path},
                }
                # What a step moves is also what the task reads: list it, so the task re-runs
                # even when the step's receipt is unchanged (a shared filesystem sends nothing).
                deps += [str(target), *steps.sources(owner, i)]
        identity = (node.digest, runner.transformer.name)
        if isinstance(node, Task) and node.replicas > 1 and local_replicas:
            replica_done = []
            # One check for all replicas: they share the definition (and it keeps no state
            # of a task between calls); 100,000 copies of it were 100,000 objects.
            same = [_IdentityChanged(*identity)]
            for r in range(node.replicas):
                target = f"{st.dir_str}/done.r{r}.json"
                replica_done.append(target)
                yield {
                    "name": replica_task(node.key, r),
                    "actions": [_Action(runner.run_replica, pu, r)],
                    "file_dep": deps, "targets": [target],
                    "uptodate": same, "io": _NO_CAPTURE,
                    "meta": {"unit": node.name, "replica": r},
                }
            deps = replica_done
            action = _Action(runner.finish_replicas, pu)
        else:
            action = _Action(runner.run, pu)
        yield {
            "name": node.key,
            "actions": [action],
            "file_dep": deps,
            "targets": [st.done_str, *(str(p) for p in pu.outputs)],
            "uptodate": [_IdentityChanged(*identity)],
            "io": _NO_CAPTURE,
            "meta": {"unit": node.name, "group": True} if node.is_group else {"unit": node.name},
        }


DEPLIST_MIN = 32  # below this many inputs the quadratic check costs nothing


class DepList(list):  # type: ignore[type-arg]
    """A task's task_dep list with O(1) membership.

    doit adds implicit dependencies with ``if name not in task.task_dep: append`` for every
    file_dep (doit/control.py add_implicit_task_dep): a task waiting on N others costs N^2
    comparisons. At 100,000 tasks fanning into one, that was 200+ s of every full check.
    """

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self._members = set(self)

    def __contains__(self, item: object) -> bool:
        return item in self._members

    def append(self, item: Any) -> None:
        super().append(item)
        self._members.add(item)

    def extend(self, items: Any) -> None:
        items = list(items)
        super().extend(items)
        self._members.update(items)

    def __iadd__(self, items: Any) -> DepList:  # type: ignore[override]
        self.extend(items)
        return self

    def _resync(self) -> None:
        self._members = set(self)

    def insert(self, index: Any, item: Any) -> None:
        super().insert(index, item)
        self._members.add(item)

    def remove(self, item: Any) -> None:
        super().remove(item)
        self._resync()

    def pop(self, index: Any = -1) -> Any:
        item = super().pop(index)
        self._resync()
        return item

    def clear(self) -> None:
        super().clear()
        self._members = set()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._resync()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._resync()


_NONE: frozenset[Any] = frozenset()


class _SlimTask(DoitTask):  # type: ignore[misc]
    """doit's Task, its attributes in slots.

    A doit Task sets 34 attributes, past what CPython's shared-key instance dictionaries hold,
    so each task carried a dictionary of its own: 1.6 KB of a task's 3.4 KB, 16 MB of a
    10,000-task run's peak. In slots they take 8 bytes each. Nothing else changes: the same
    __init__ runs, and doit reads and writes the same attribute names (an attribute doit
    might add later lands in the instance dictionary, which stays available for it)."""

    __slots__ = tuple(vars(DoitTask("_probe", None)))

    def pickle_safe_dict(self) -> dict[str, Any]:
        """The name alone: doit's thread runner names the task by it and hands the rest
        between threads this way, but both threads share this very object (doit copies
        ``__dict__`` out and back in; here it is empty). jobspec-do runs doit with threads
        (``-P thread``) or none."""
        return {"name": self.name}

    def update_from_pickle(self, pickle_obj: dict[str, Any]) -> None:
        """As doit's, through the slots (doit's fills ``__dict__``, which the slots shadow:
        a dictionary per task for nothing)."""
        for name, value in pickle_obj.items():
            setattr(self, name, value)

    def __getstate__(self) -> Any:
        # doit's would pickle the (empty) __dict__ alone: a process runner would get a task
        # without its attributes. jobspec-do never runs one; if it ever did, say so at once.
        raise TypeError("jobspec-do's doit tasks run in threads, not pickled to processes")


def make_task(d: dict[str, Any]) -> DoitTask:
    """doit's ``dict_to_task`` (the same checks), building a ``_SlimTask``."""
    if "actions" not in d:
        raise InvalidTask(f"Task {d['name']} must contain 'actions' field")
    unknown = d.keys() - DoitTask.valid_attr.keys()
    if unknown:
        raise InvalidTask(f"Task {d['name']} contains invalid field: {sorted(unknown)}")
    task = _SlimTask(**d)
    # An empty set is 216 bytes, and most tasks have two (no calc_dep; a fan's tasks no
    # file_dep): one shared empty frozenset instead. doit adds to these only while it builds
    # a task, or from calc_dep results, which jobspec-do's tasks have none of.
    if not task.file_dep:
        task.file_dep = _NONE
    if not task.calc_dep:
        task.calc_dep = _NONE
    return task


class _SlimNode(control.ExecNode):  # type: ignore[misc]
    """doit's ExecNode (one per task, all alive until the run ends), its attributes in slots."""

    __slots__ = tuple(vars(control.ExecNode(DoitTask("_probe", None), None)))

    def __init__(self, task: Any, parent: Any) -> None:
        super().__init__(task, parent)
        if self.calc_dep is _NONE:  # the task's shared empty one (make_task): doit clears it
            self.calc_dep = set()


class _SlimDispatcher(control.TaskDispatcher):  # type: ignore[misc]
    """doit's TaskDispatcher, letting go of what a finished node no longer needs.

    doit keeps every task's ExecNode to the end of the run (a later task looks up whether
    its dependency finished), each with four sets and four lists for the bookkeeping of its
    waits: ~1 KB a task, 10 MB at 10,000, all of it dead once the task has a final status.
    A finished node is never waited for again (doit adds a waiter only to a node whose status
    is None or 'run') and its own waits are over; only a task with setup tasks is stepped
    again after it is processed, and jobspec-do makes none (such a node is left alone)."""

    def _update_waiting(self, processed: Any) -> None:
        super()._update_waiting(processed)
        if processed is None or processed.run_status in (None, "run") \
                or processed.task.setup_tasks:
            return
        processed.waiting_me = processed.wait_run = processed.wait_run_calc = _NONE
        processed.calc_dep = _NONE
        processed.task_dep = processed.ancestors = ()
        processed.bad_deps = processed.ignored_deps = ()


@contextlib.contextmanager
def slim_dispatch() -> Iterator[None]:
    """doit's dispatcher and nodes as above, for the run inside (doit's own names after).
    Nested (a run inside a run's process that is already in one): left as it is."""
    if control.TaskDispatcher is _SlimDispatcher:
        yield
        return
    saved = control.TaskDispatcher, control.ExecNode
    control.TaskDispatcher, control.ExecNode = _SlimDispatcher, _SlimNode
    try:
        yield
    finally:
        control.TaskDispatcher, control.ExecNode = saved


class Loader(TaskLoader2):  # type: ignore[misc]
    """Hands doit our task dicts and configuration; no dodo.py involved."""

    def __init__(self, dicts: list[dict[str, Any]], config: dict[str, Any]) -> None:
        super().__init__()
        self.dicts = dicts
        self.config = config

    def setup(self, opt_values: dict[str, Any]) -> None:
        pass

    def load_doit_config(self) -> dict[str, Any]:
        return self.config

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Any]:
        # The spec, the plan and doit's tasks live until the run ends: built with the
        # collector paused (each collection would walk them all again) and then frozen, out
        # of the sight of every collection during the run (a tenth of its CPU at 5,000 tasks).
        was = gc.isenabled()
        gc.disable()
        try:
            tasks = [make_task(d) for d in self.dicts]
            self.dicts = []  # doit copied what it needs; a run's dicts are not needed again
            for task in tasks:
                if len(task.file_dep) > DEPLIST_MIN:  # a set per task: memory at 100k tasks
                    task.task_dep = DepList(task.task_dep)
            gc.freeze()
        finally:
            if was:
                gc.enable()
        return tasks
