"""The steps that run before a task: ``write`` a file, ``stage`` a path to the task's nodes.

Each step is its own doit task whose target is a small receipt, and the task lists the
receipt as a file_dep: a step runs again only when what it moves changed, and then the task
runs again too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Problem
from ..plan import PlannedUnit
from ..records.state import StateDir, atomic_write
from ..spec.model import Group, Spec, Task, Unit
from ..transformers.base import Transformer
from .unit import EventSink, Outcome

if TYPE_CHECKING:
    from ..bursters.base import Burster


def step_label(unit: str, step: str, path: str) -> str:
    """How the console names a step: apart from its task (``install (write job.sh)``), whose
    own start and end it would otherwise seem to be."""
    return f"{unit} ({step} {path})"


@dataclass(frozen=True)
class StageConfig:
    """Which stager moves staged paths, and to which nodes."""

    stager: str = "shared"
    nodes: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)


def _stage_steps(unit: Unit) -> list[tuple[Task, str]]:
    """(task, spec path) of every stage step of ``unit``: its own, or its tasks' for a group
    (which a batch scheduler runs as one job)."""
    tasks = [t for t in unit.walk() if isinstance(t, Task)] if isinstance(unit, Group) \
        else [unit] if isinstance(unit, Task) else []
    return [(t, s.spec_path) for t in tasks for s in t.steps if s.name == "stage"]


def in_job(config: StageConfig) -> bool:
    """Whether ``config``'s stager stages from inside the job (sbcast), not before it."""
    from .. import plugins

    return bool(plugins.load(plugins.STAGERS, config.stager).in_job)


def prologue_problems(plan: list[PlannedUnit], config: StageConfig, transformer: Transformer,
                      spec: Spec) -> list[Problem]:
    """Stage steps the run could not carry out, found before anything is submitted: an
    in-job stager's script needs a transformer that runs it in the job (a group's tasks'
    steps too: they run in the group's job)."""
    if transformer.runs_prologue:
        return []
    staged = [found for pu in plan for owner in pu.step_units
              for found in _stage_steps(owner.node)]
    if not staged or not in_job(config):  # the stager is loaded only when it will be used
        return []
    return [Problem(
        f"task '{task.name}': its stage step stages inside the job ({config.stager} stager), "
        f"which the {transformer.name} transformer cannot run",
        (path,), "use -t slurm, or a stager that sends before the job (--stager ssh with "
        "`nodes:`, or flux-archive on Flux)", str(spec.path)) for task, path in staged]


def burst_refusal(config: StageConfig) -> Callable[[Unit, Burster], str | None]:
    """For the burst policy: why ``unit``'s stage steps cannot follow it to ``burster``
    (None: they can, or it has none).

    - ``shared``: nothing moves; a place that runs the unit's job at all reads its script
      and writes its logs in the spec's folder, so it sees that filesystem too.
    - an in-job stager (sbcast): the script goes with the job; the target's transformer must
      run it (Slurm does).
    - any other stager sends to the primary's nodes before the job (ssh's `nodes:`,
      flux-archive's instance): the target's nodes would not have the files.
    """
    def refusal(unit: Unit, burster: Burster) -> str | None:
        staged = _stage_steps(unit)
        if not staged or config.stager == "shared":
            return None
        task = staged[0][0].name
        if in_job(config):
            target = burster.transformer()
            if target.runs_prologue:
                return None
            return (f"task '{task}' stages inside the job ({config.stager} stager), which "
                    f"the {target.name} transformer there cannot run")
        return (f"task '{task}' has stage steps, and the {config.stager} stager sends to "
                f"the primary's nodes before the job, not to {burster.label}'s")

    return refusal


class StepRunner:
    """Runs the write and stage steps of tasks."""

    def __init__(self, state: StateDir, config: StageConfig, emit: EventSink) -> None:
        self.state = state
        self.config = config
        self.emit = emit

    def _task(self, pu: PlannedUnit) -> Task:
        assert isinstance(pu.node, Task)
        return pu.node

    def receipt(self, pu: PlannedUnit, index: int) -> Path:
        return self.state.unit(pu.node).dir / f"step{index}.json"

    def job_script(self, pu: PlannedUnit, index: int) -> Path:
        """Where an in-job stager's script for step ``index`` lives (run by the job)."""
        return self.state.unit(pu.node).dir / f"step{index}.job.sh"

    def path(self, pu: PlannedUnit, index: int) -> Path:
        step = self._task(pu).steps[index]
        p = Path(step.path)
        return p if p.is_absolute() else pu.cwd / p

    def sources(self, pu: PlannedUnit, index: int) -> list[str]:
        """Files whose content the step moves (its file_dep)."""
        step = self._task(pu).steps[index]
        if step.name != "stage":
            return []
        root = self.path(pu, index)
        if root.is_dir():
            return sorted(str(p) for p in root.rglob("*") if p.is_file())
        return [str(root)] if root.exists() else []

    def files(self, pu: PlannedUnit) -> list[Path]:
        """Every file the steps of ``pu`` make or move (a group submitted as one job: its
        tasks' steps): part of what the unit ran with."""
        out: list[Path] = []
        for owner in pu.step_units:
            for i in range(len(self._task(owner).steps)):
                out.append(self.receipt(owner, i))
                out.extend(Path(s) for s in self.sources(owner, i))
        return out

    def fingerprint(self, pu: PlannedUnit, index: int) -> dict[str, Any]:
        step = self._task(pu).steps[index]
        return {"step": [step.name, step.path, step.content, step.executable],
                "stager": self.config.stager, "nodes": list(self.config.nodes)}

    def run(self, pu: PlannedUnit, index: int) -> Outcome:
        step = self._task(pu).steps[index]
        self.state.unit(pu.node).ensure()
        try:
            detail = self._write(pu, index) if step.name == "write" else self._stage(pu, index)
        except Exception as exc:
            self.emit("failed", step_label(pu.node.name, step.name, step.path), str(exc))
            return Outcome(False, f"{step.name} step {step.path}: {exc}")
        atomic_write(self.receipt(pu, index), json.dumps({"step": step.name, "path": step.path,
                                                          "detail": detail}))
        self.emit("step", step_label(pu.node.name, step.name, step.path), detail)
        return Outcome(True, detail)

    def _write(self, pu: PlannedUnit, index: int) -> str:
        step = self._task(pu).steps[index]
        target = self.path(pu, index)
        root = pu.cwd.resolve()
        if root not in target.resolve().parents:
            raise ValueError(f"{step.path} would be written outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, step.content or "")
        if step.executable:
            os.chmod(target, 0o755)
        return f"wrote {len(step.content or '')} bytes"

    def _stage(self, pu: PlannedUnit, index: int) -> str:
        from .. import plugins
        from ..stagers.base import StageItem, StagerSettings

        step = self._task(pu).steps[index]
        source = self.path(pu, index)
        cls = plugins.load(plugins.STAGERS, self.config.stager)
        options = {"progress": sys.stderr.isatty(), **self.config.settings}
        settings = StagerSettings(nodes=self.config.nodes, **options)
        # Same absolute path on every node, unless a remote_root says where the spec's folder
        # lives there: then the path as written (relative to the task's cwd) goes under it.
        relative = not Path(step.path).is_absolute() and settings.remote_root
        dest = step.path if relative else str(source.resolve())
        script = self.job_script(pu, index)
        with cls(settings) as stager:
            if cls.in_job:
                # The nodes are known only when the job starts: the job stages, and this step
                # leaves it the script (a change of what is staged re-runs the step, and so
                # the task).
                record = self.state.unit(pu.node).dir / f"step{index}.sent"
                text = stager.job_script([StageItem(source, dest)], str(record))
                atomic_write(script, text)
                digest = hashlib.sha256(text.encode()).hexdigest()[:12]
                return (f"{self.config.stager} inside the job: {script.name} (sha256 {digest}), "
                        f"what it sends is recorded in {record.name}")
            script.unlink(missing_ok=True)  # a stager changed from in-job to before-the-job
            report = stager.put([StageItem(source, dest)])
        return str(report)
