"""The Flux transformer: a task becomes ``flux submit``, a group becomes ``flux batch``.

- Resources map to ``-N`` nodes, ``-n`` slots (tasks for submit, slots for batch), ``-c`` cores
  and ``-g`` gpus per slot; a request for nodes with no cores or gpus under them asks for whole
  nodes (``-x``), as ``flux submit -N`` alone would.
- Attributes: ``duration`` -> ``-t <seconds>s``, ``environment`` -> ``--env`` (``$`` doubled:
  Flux template-expands these values), ``cwd``/output/error, ``queue``/``bank`` -> their system
  attributes, every other attribute and ``requires`` -> ``--setattr=user.*`` as JSON. A token
  attribute lets ``find`` recognise a job whose id was never recorded.
- Replicas -> ``--cc=0-(N-1)``: one submission, N jobs, one job id each. The engine gets them
  joined by commas and hands that string back to ``status``/``cancel``. With --cc, Flux runs
  the command and options through str.format(), so a task whose texts hold ``{`` or ``}``
  (``${VAR:-x}``, JSON attributes) is submitted once per replica instead, with the same
  environment (JOBSPEC_REPLICA, FLUX_JOB_CC) and output names.
- A group -> a generated batch script (``# flux:`` directives) that submits its children
  waitable, each after the siblings it depends on or reads files from (order.py), runs
  ``local: true`` children in order as plain lines, writes each child's exit code
  into the child's state folder, and waits for every child before the allocation ends.
- A nested group -> ``flux batch`` of its own script, a file next to its parent's
  (``job.<attempt>.<group>.flux``), not a heredoc: flux batch reads every line of a script for
  directives and rejects one after the first command ("orphan directive"), so an inlined child
  script could not keep its own ``# flux:`` lines; as files, each script also runs by hand with
  ``flux batch FILE``. They are read when the parent script runs, on the allocation's first
  node: the shared filesystem the children's output and exit files already need.
- ``local: true`` top-level tasks run on this host through the local transformer.

When ``import flux`` works and FLUX_URI is set, submissions go through the Python API (no
process per job); the jobspec is the one the CLI would build from the same options.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import PluginError, Problem, suggest
from ..spec.model import Counts, Group, Resource, ResourceRequest, Spec, Task, Unit
from ..spec.resources import CORE_TYPES, GPU_TYPES
from . import flux_bindings
from .base import JobState, JobStatus, SubmitError, Transformer, TransformerOptions, UnitContext
from .flux_instance import InstanceInfo
from .local import LocalTransformer
from .order import launch_order

Runner = Callable[[Sequence[str]], tuple[int, str, str]]

TOKEN_ATTR = "user.jobspec_do.token"
API_ENV = "JOBSPEC_DO_FLUX_API"  # cli | python | auto: how jobs are submitted
LOCAL_PREFIX = "local:"
# Attributes that are Flux system attributes rather than free-form user data.
SYSTEM_ATTRS = {"queue": "system.queue", "bank": "system.bank"}

F58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
F58_PREFIXES = ("\u0192", "f")  # Flux prints U+0192; ASCII "f" is accepted everywhere
_JOB_ID = re.compile(r"^(?:[\u0192f][1-9A-HJ-NP-Za-km-z]+|[0-9]+|0x[0-9a-fA-F]+)$")
# flux batch reads RFC 36 directives with this pattern (flux/job/directives.py); a line that
# matches after the directive block is an "orphan directive" error, so scripts must avoid it.
_DIRECTIVE = re.compile(r"^([^\w]*)((?:flux|FLUX):)")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

_PENDING = {"NEW", "DEPEND", "PRIORITY", "SCHED"}
_ACTIVE = {"RUN", "CLEANUP"}
_STATE_BITS = {1: "NEW", 2: "DEPEND", 4: "PRIORITY", 8: "SCHED", 16: "RUN", 32: "CLEANUP",
               64: "INACTIVE"}
_RESULT_BITS = {1: "COMPLETED", 2: "FAILED", 4: "CANCELED", 8: "TIMEOUT"}
_SEVERITY = [JobState.FAILED, JobState.TIMEOUT, JobState.CANCELED, JobState.LOST]
WRAP = 100  # command lines longer than this are shown one option per line
PAD = "    "


def run_command(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run ``argv`` without a shell and return (exit code, stdout, stderr)."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, encoding="utf-8",
                              errors="replace", stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found on PATH"
    return proc.returncode, proc.stdout, proc.stderr


# -- one submission, independent of how it is made ---------------------------------------------
@dataclass(frozen=True)
class FluxJob:
    """Everything one ``flux submit``/``flux batch`` asks for, rendered as argv or as a jobspec.

    ``command`` is the task's argv, or for a batch the script path. Texts may hold ``{cc}``,
    which Flux replaces with the replica number when ``cc`` > 1.
    """

    kind: str  # "submit" or "batch"
    name: str
    command: tuple[str, ...]
    counts: Counts
    exclusive: bool
    duration: float | None
    cwd: str
    environment: tuple[tuple[str, str], ...]
    output: str
    error: str
    setattrs: tuple[tuple[str, Any], ...] = ()
    dependencies: tuple[str, ...] = ()
    cc: int = 1
    waitable: bool = False
    watch: bool = False
    # Option groups (joined by spaces) that the batch script carries as directives instead.
    in_script: frozenset[str] = frozenset()

    def resource_options(self) -> list[str]:
        """-N/-n/-c/-g/-x, the same letters for submit (tasks) and batch (slots)."""
        c = self.counts
        opts = ["-N", str(c.nodes)] if c.nodes > 0 else []
        opts += ["-n", str(c.slots), "-c", str(c.cores_per_slot)]
        if c.gpus_per_slot > 0:
            opts += ["-g", str(c.gpus_per_slot)]
        if self.exclusive and c.nodes > 0:
            opts.append("-x")
        return opts

    def job_options(self) -> list[list[str]]:
        """The options a batch script may carry as directives, one group per option."""
        groups = [self.resource_options(), [f"--job-name={self.name}"]]
        if self.duration:
            groups.append(["-t", _fsd(self.duration)])
        groups += [[f"--cwd={self.cwd}"], [f"--output={self.output}"],
                   [f"--error={self.error}"]]
        groups += [[f"--env={k}={_env_escape(v)}"] for k, v in self.environment]
        groups += [[f"--setattr={k}={_attr_text(v)}"] for k, v in self.setattrs]
        return groups

    def submission_options(self) -> list[list[str]]:
        """Options that belong to this submission only (never in a script's directives)."""
        groups = [["--flags=waitable"]] if self.waitable else []
        if self.cc > 1:
            groups.append([f"--cc=0-{self.cc - 1}"])
        if self.watch:
            groups.append(["--watch"])
        groups += [[f"--dependency=afterok:{d}"] for d in self.dependencies]
        return groups

    def argv_groups(self) -> list[list[str]]:
        """The command line as option groups (without those the script's directives set)."""
        opts = [g for g in self.job_options() if " ".join(g) not in self.in_script]
        return [["flux", self.kind], *self.submission_options(), *opts, list(self.command)]

    def argv(self) -> list[str]:
        """The exact argv of the CLI submission."""
        return [t for g in self.argv_groups() for t in g]

    def texts(self) -> list[str]:
        """Every text Flux runs through str.format() when submitting with --cc."""
        return [*self.command, self.name, self.output, self.error,
                *(f"{k}={v}" for k, v in self.environment),
                *(f"{k}={_attr_text(v)}" for k, v in self.setattrs), *self.dependencies]

    def copy(self, replica: int) -> FluxJob:
        """Replica ``replica`` as Flux's --cc makes it: ``{cc}`` substituted, FLUX_JOB_CC set."""
        def sub(text: str) -> str:
            return text.replace("{cc}", str(replica))

        env = tuple((k, sub(v)) for k, v in self.environment)
        if self.cc > 1:
            env += (("FLUX_JOB_CC", str(replica)),)
        return replace(self, command=tuple(sub(a) for a in self.command), name=sub(self.name),
                       output=sub(self.output), error=sub(self.error), environment=env, cc=1)

    def jobspec(self, jobspec_cls: Any, script: str | None = None,
                environ: Mapping[str, str] | None = None) -> Any:
        """A flux.job.JobspecV1 equal to what the CLI builds from ``argv()`` (cc must be 1)."""
        c = self.counts
        common = {"num_nodes": c.nodes or None, "exclusive": self.exclusive and c.nodes > 0}
        if self.kind == "batch":
            js = jobspec_cls.from_batch_command(
                script=script, jobname=self.name, num_slots=c.slots,
                cores_per_slot=c.cores_per_slot, gpus_per_slot=c.gpus_per_slot or None, **common)
        else:
            js = jobspec_cls.from_command(
                list(self.command), num_tasks=c.slots, cores_per_task=c.cores_per_slot,
                gpus_per_task=c.gpus_per_slot or None, **common)
        # The CLI copies the submitter's whole environment, then applies --env rules in order.
        js.environment = {**(os.environ if environ is None else environ), **dict(self.environment)}
        js.cwd = self.cwd
        if self.duration:
            js.duration = self.duration
        js.setattr("system.job.name", self.name)
        js.stdout = self.output
        js.stderr = self.error
        for key, value in self.setattrs:
            js.setattr(key, value)
        if self.dependencies:
            js.setattr("system.dependencies",
                       [{"scheme": "afterok", "value": d} for d in self.dependencies])
        return js


# -- the transformer ---------------------------------------------------------------------------
class FluxTransformer(Transformer):
    """Submits tasks with ``flux submit`` and groups with ``flux batch``."""

    name = "flux"
    description = "Flux Framework: flux submit for tasks, flux batch for groups"
    # What `flux submit` asks for when given no resource options: one task on one core.
    default_resources = Resource("core", 1)
    submits_groups = True

    def __init__(self, options: TransformerOptions | None = None) -> None:
        super().__init__(options)
        self.runner: Runner = run_command
        # None: use the Python API when it imports and FLUX_URI is set. The setting api, else
        # $JOBSPEC_DO_FLUX_API (cli|python|auto), decides otherwise.
        mode = self.options.settings.get("api") or os.environ.get(API_ENV, "auto")
        self.use_api: bool | None = {"cli": False, "python": True}.get(mode)
        self._local = LocalTransformer(options)
        self._api_lock = threading.Lock()
        self._handle: Any = None
        self._bindings: Any = None
        self._asked_instance = False
        self._instance: InstanceInfo | None = None
        # Why the Python API is not used although FLUX_URI is set (said once, on stderr).
        self.api_note: str | None = None

    # -- before anything is submitted -----------------------------------------------------------
    @property
    def instance(self) -> InstanceInfo | None:
        """The instance's queues and nodes (asked once), or None when it cannot be asked."""
        if not self._asked_instance:
            self._asked_instance = True
            self._instance = InstanceInfo.ask(self.runner)
        return self._instance

    def check(self, spec: Spec) -> list[Problem]:
        """The base checks, plus every queue the instance lacks and every request its nodes
        cannot satisfy (nothing is checked when the instance cannot be asked)."""
        problems = super().check(spec)
        nodes = [n for n in spec.nodes.values() if not (isinstance(n, Task) and n.local)]
        if not nodes or self.instance is None:
            return problems
        instance = self.instance
        for node in nodes:
            kind = "task" if isinstance(node, Task) else "group"
            queue = node.attributes.extra.get("queue")
            if queue is not None and str(queue) not in instance.queues:
                near = suggest(str(queue), instance.queues)
                problems.append(Problem(
                    f"{kind} '{node.name}' asks for queue '{queue}', which this Flux instance "
                    f"does not have: {instance.describe_queues()}",
                    (node.spec_path, "attributes", "queue"),
                    f"did you mean '{near}'?" if near else "remove the queue attribute, or "
                    "name one of the instance's queues", str(spec.path)))
            req, _why = self.choose(node)
            reason = instance.unfit(req.counts) if req is not None else None
            if reason is not None:
                problems.append(Problem(
                    f"{kind} '{node.name}' asks for {req.label}, which cannot run here: "
                    f"{reason}", (node.spec_path,),
                    "ask for fewer resources, or run it in a larger Flux instance",
                    str(spec.path)))
        return problems

    def unavailable(self) -> str | None:
        """No `flux` command, and no Python bindings with an instance to talk to."""
        if shutil.which("flux") is None and not self._api():
            return "flux is not on PATH: run inside a Flux instance, or add flux-core's bin " \
                   "folder to PATH"
        return None

    # -- what is submitted ----------------------------------------------------------------------
    def jobs(self, unit: Unit, ctx: UnitContext) -> list[FluxJob]:
        """The submissions a run makes for ``unit``: one, or one per replica (see replicas)."""
        if isinstance(unit, Group):
            return [self._group_job(unit, ctx)]
        job = self._task_job(unit, ctx.cwd, ctx.stdout, ctx.stderr, ctx.attempt,
                             token=ctx.token, after=_flatten(ctx.after_jobs))
        return _replicate(job, unit.replicas)

    def command(self, unit: Unit, ctx: UnitContext) -> list[str]:
        """The argv of the (first) submission for ``unit``."""
        return self.jobs(unit, ctx)[0].argv()

    def script_path(self, ctx: UnitContext, group: Group | None = None) -> Path:
        """Where the batch script of the unit (or of a nested ``group``) is written."""
        suffix = f".{_safe(group.name)}" if group is not None else ""
        return ctx.workdir / f"job.{ctx.attempt}{suffix}.flux"

    def render(self, unit: Unit, ctx: UnitContext) -> str:
        """The batch script text of a group (what ``flux batch`` is given)."""
        if not isinstance(unit, Group):
            raise PluginError(f"task '{unit.name}' is submitted directly; only groups have "
                              "a batch script")
        return self.scripts(unit, ctx)[self.script_path(ctx)]

    def scripts(self, unit: Group, ctx: UnitContext) -> dict[Path, str]:
        """Every script a group needs: its own, then one per nested group, by path."""
        out: dict[Path, str] = {}
        self._render(unit, ctx, _Frame(self.script_path(ctx), str(ctx.stdout),
                                       str(ctx.stderr), ctx.token, None), out)
        return out

    def describe(self, unit: Unit, ctx: UnitContext) -> str:
        if isinstance(unit, Task) and unit.local:
            return ("# runs on this host (local: true), not through Flux\n"
                    + self._local.describe(unit, ctx))
        req, why = self.choose(unit)
        head = f"# {unit.key}: {req.label if req else 'no resources'} ({why})"
        lines = [head]
        jobs = self.jobs(unit, ctx)
        if isinstance(unit, Task) and unit.replicas > 1:
            lines.append(_replica_note(unit.replicas, len(jobs)))
        if isinstance(unit, Task) and unit.attributes.watch:
            lines.append("# watch: true -> flux submit --watch streams the job's output and "
                         "returns when it ends")
        lines += [_shell(job.argv_groups()) for job in jobs]
        if isinstance(unit, Group):
            for path, text in self.scripts(unit, ctx).items():
                lines += [f"# --- {path} ---", text.rstrip("\n")]
        return "\n".join(lines)

    # -- running --------------------------------------------------------------------------------
    def submit(self, unit: Unit, ctx: UnitContext) -> str:
        if isinstance(unit, Task) and unit.local:
            _folders(ctx)
            return LOCAL_PREFIX + self._local.submit(unit, ctx)
        jobs, script = self._prepare(unit, ctx)
        if not self._api():
            return ",".join(self._submit_cli(unit, jobs, script))
        [result] = self._send_api([(unit, jobs, script)])
        if isinstance(result, PluginError):
            raise result
        return ",".join(result)

    def submit_many(self, items: Sequence[tuple[Unit, UnitContext]]) -> list[str | PluginError]:
        """Through the Python API, every jobspec is sent before any answer is awaited."""
        try:
            api = self._api()
        except SubmitError as exc:  # JOBSPEC_DO_FLUX_API=python without usable bindings
            return [exc for _ in items]
        if not api:
            return super().submit_many(items)
        results: list[str | PluginError] = []
        batch: list[tuple[Unit, list[FluxJob], str | None]] = []
        slots: list[int] = []
        for unit, ctx in items:
            if isinstance(unit, Task) and unit.local:
                results += super().submit_many([(unit, ctx)])
                continue
            try:
                batch.append((unit, *self._prepare(unit, ctx)))
            except PluginError as exc:
                results.append(exc)
                continue
            slots.append(len(results))
            results.append("")  # filled in below
        for slot, result in zip(slots, self._send_api(batch), strict=True):
            results[slot] = result if isinstance(result, PluginError) else ",".join(result)
        return results

    def _prepare(self, unit: Unit, ctx: UnitContext) -> tuple[list[FluxJob], str | None]:
        """Folders made, dependencies checked, scripts written: the unit's submissions."""
        _folders(ctx)
        _check_after(unit, ctx.after_jobs)
        script = self._write_scripts(unit, ctx) if isinstance(unit, Group) else None
        return self.jobs(unit, ctx), script

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        local = [j for j in job_ids if j.startswith(LOCAL_PREFIX)]
        for jid, st in self._local.status([j[len(LOCAL_PREFIX):] for j in local]).items():
            out[LOCAL_PREFIX + jid] = st
        remote = [j for j in job_ids if not j.startswith(LOCAL_PREFIX)]
        singles = list(dict.fromkeys(p for j in remote for p in _parts(j)))
        known = self._query(singles) if singles else {}
        for jid in remote:
            out[jid] = _combine([known.get(p, JobStatus(JobState.LOST)) for p in _parts(jid)])
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        local = [j[len(LOCAL_PREFIX):] for j in job_ids if j.startswith(LOCAL_PREFIX)]
        if local:
            self._local.cancel(local)
        ids = [p for j in job_ids if not j.startswith(LOCAL_PREFIX) for p in _parts(j)]
        if not ids:
            return
        rc, _out, err = self.runner(["flux", "cancel", *ids])
        # An already finished job is not an error: cancel means "stop it if it still runs".
        if rc != 0 and not re.search(r"inactive|unknown|not found|does not exist", err, re.I):
            raise PluginError(f"flux cancel {' '.join(ids)} failed: {err.strip()}")

    def child_place(self, lines: Sequence[str], group_nodes: str, direct: bool
                    ) -> tuple[str, float | None]:
        """Each line is ``T_RUN NODELIST RANKS`` of one child job (or a local child's start),
        with the ranks of the group's own instance: rank k of it is the k-th rank of the
        group job (one broker per rank, in order), so a direct child's ranks are told in the
        enclosing instance's numbers, as every other job's are. A child of a nested group
        is named by its nodes alone."""
        outer = _idset(group_nodes.rpartition("(rank")[2].lstrip("s ").rstrip(")")) \
            if group_nodes.endswith(")") else []
        hosts: dict[str, None] = {}
        ranks: dict[int, None] = {}
        starts = []
        for line in lines:
            parts = line.split()
            if len(parts) < 2:  # a job that never had resources
                continue
            with contextlib.suppress(ValueError):
                if float(parts[0]) > 0:
                    starts.append(float(parts[0]))
            hosts.update(dict.fromkeys(parts[1].split(",")))
            inner = _idset(parts[2]) if len(parts) > 2 else []
            if direct and outer and all(0 <= r < len(outer) for r in inner):
                ranks.update(dict.fromkeys(outer[r] for r in inner))
        where = ",".join(hosts)
        if where and ranks:
            names = sorted(ranks)
            where += f" (rank{'s' if len(names) > 1 else ''} {_idset_text(names)})"
        return where, min(starts) if starts else None

    def find(self, unit: Unit, ctx: UnitContext) -> str | None:
        """Jobs submitted with ``ctx.token``: listed by name, confirmed from their jobspec.

        The token is a jobspec attribute, which ``flux jobs`` does not show, so each job with
        the unit's name is looked up with ``flux job info ID jobspec`` (newest first).
        """
        if isinstance(unit, Task) and unit.local:
            return None
        rc, out, err = self.runner(["flux", "jobs", "-a", f"--name={unit.name}", "--json"])
        if rc != 0:
            raise PluginError(f"flux jobs failed while looking for {unit.key}: {err.strip()}")
        want = unit.replicas if isinstance(unit, Task) else 1
        found = []
        for job in _jobs_from_json(out):
            jid = _id_of(job)
            if jid and self._token_of(jid) == ctx.token:
                found.append(jid)
                if len(found) == want:
                    break
        if not found:
            return None
        if len(found) < want:
            # Only part of the replicas went in before the crash: start over cleanly.
            self.cancel(found)
            return None
        return ",".join(sorted(found, key=lambda j: _job_int(j) or 0))

    # -- building submissions -------------------------------------------------------------------
    def _task_job(self, task: Task, cwd: Path | str, stdout: Path | str, stderr: Path | str,
                  attempt: int, *, token: str | None = None, after: Sequence[str] = (),
                  waitable: bool = False, limit: float | None = None) -> FluxJob:
        req, _why = self.choose(task)
        replica = "{cc}" if task.replicas > 1 else "0"
        env = (*task.attributes.environment.items(), ("JOBSPEC_REPLICA", replica),
               ("JOBSPEC_ATTEMPT", str(attempt)))
        suffix = ".{cc}" if task.replicas > 1 else ""
        return FluxJob(
            kind="submit", name=task.name, command=tuple(_argv(task)),
            counts=req.counts if req else Counts(0, 1, 1, 0), exclusive=_whole_nodes(req),
            duration=_limit(task.attributes.duration, limit), cwd=str(cwd),
            environment=tuple(env), output=f"{stdout}{suffix}", error=f"{stderr}{suffix}",
            setattrs=_setattrs(task, req, token), dependencies=tuple(after),
            cc=task.replicas, waitable=waitable, watch=task.attributes.watch and not waitable)

    def _group_job(self, group: Group, ctx: UnitContext) -> FluxJob:
        return self._batch_job(group, self.script_path(ctx), ctx.cwd, str(ctx.stdout),
                               str(ctx.stderr), ctx.attempt, token=ctx.token,
                               after=_flatten(ctx.after_jobs))

    def _batch_job(self, group: Group, path: Path, cwd: Path | str, stdout: str, stderr: str,
                   attempt: int, *, token: str | None = None, after: Sequence[str] = (),
                   waitable: bool = False, limit: float | None = None) -> FluxJob:
        req, _why = self.choose(group)
        env = (*group.attributes.environment.items(), ("JOBSPEC_ATTEMPT", str(attempt)))
        job = FluxJob(
            kind="batch", name=group.name, command=(str(path),),
            counts=req.counts if req else Counts(0, 1, 1, 0), exclusive=_whole_nodes(req),
            duration=_limit(group.attributes.duration, limit), cwd=str(cwd),
            environment=tuple(env), output=stdout, error=stderr,
            setattrs=_setattrs(group, req, token), dependencies=tuple(after),
            waitable=waitable)
        return replace(job, in_script=frozenset(_directive_keys(job)))

    # -- batch scripts --------------------------------------------------------------------------
    def _render(self, group: Group, ctx: UnitContext, frame: _Frame,
                out: dict[Path, str]) -> None:
        """Render ``group``'s script into ``out`` (and, recursively, its nested groups')."""
        job = self._batch_job(group, frame.path, self._cwd(group, ctx), frame.stdout,
                              frame.stderr, ctx.attempt, token=frame.token, limit=frame.limit)
        lines = ["#!/bin/bash", *_directives(job),
                 "#", f"# jobspec-do: group '{group.name}', attempt {ctx.attempt}. Generated: "
                 "edits are lost on the next run.", "", _PREAMBLE.strip("\n"), ""]
        folders = sorted({str(self._folder(c, ctx)) for c in group.walk() if isinstance(c, Task)})
        if folders:
            lines += [_shell([["mkdir", "-p"], *[[f] for f in folders]]), ""]
        index = {id(c): i for i, c in enumerate(group.children, 1)}
        out[frame.path] = ""  # keep the parent's script first in the mapping
        for child, deps in launch_order(group, ctx.spec.path.parent):
            lines += [*self._child_block(child, deps, index, ctx, job.duration or frame.limit,
                                         out), ""]
        if any(not (isinstance(c, Task) and c.local) for c in group.children):
            lines += ["# Wait for every child, so the allocation does not end under them.",
                      "flux job wait --all >/dev/null || jd_failed=1"]
        lines += ["wait  # for the exit-code recorders", "exit $jd_failed", ""]
        out[frame.path] = "\n".join(lines)

    def _child_block(self, child: Unit, deps: list[Unit], index: dict[int, int],
                     ctx: UnitContext, limit: float | None, out: dict[Path, str]) -> list[str]:
        """The lines that start one child of a group script, after its siblings ``deps``."""
        i = index[id(child)]
        after = f", after {', '.join(d.key for d in deps)}" if deps else ""
        if isinstance(child, Task) and child.local:
            return [f"# -- {child.key}: local, so it runs here, in order{after}",
                    *self._local_lines(child, i, deps, index, ctx, limit)]
        req, why = self.choose(child)
        head = f"# -- {child.key}: {req.label if req else 'no resources'} ({why}){after}"
        if isinstance(child, Group):
            path = self.script_path(ctx, child)
            argvs = [self._nested(child, path, ctx, limit, out).argv_groups()]
            head += f"; a nested allocation, script {path}"
        else:
            folder = self._folder(child, ctx)
            job = self._task_job(child, self._cwd(child, ctx), folder / f"stdout.{ctx.attempt}",
                                 folder / f"stderr.{ctx.attempt}", ctx.attempt, waitable=True,
                                 limit=limit)
            argvs = [j.argv_groups() for j in _replicate(job, child.replicas)]
        return [head, *_submit_lines(child, i, argvs, deps, index, self._exitfile(child, ctx))]

    def _nested(self, group: Group, path: Path, ctx: UnitContext, limit: float | None,
                out: dict[Path, str]) -> FluxJob:
        """Render a nested group's script into ``out``; return its waitable batch job."""
        stdout, stderr = self._group_outputs(group, ctx)
        self._render(group, ctx, _Frame(path, stdout, stderr, None, limit), out)
        return self._batch_job(group, path, self._cwd(group, ctx), stdout, stderr, ctx.attempt,
                               waitable=True, limit=limit)

    def _local_lines(self, task: Task, i: int, deps: list[Unit], index: dict[int, int],
                     ctx: UnitContext, limit: float | None) -> list[str]:
        folder = self._folder(task, ctx)
        guard = _guard(deps, index, wait=True)
        body = [f"r{i}=0", f"jd_here {_quote(str(self._exitfile(task, ctx)))}"]
        for r in range(task.replicas):
            env = [f"{k}={v}" for k, v in task.attributes.environment.items()]
            env += [f"JOBSPEC_REPLICA={r}", f"JOBSPEC_ATTEMPT={ctx.attempt}"]
            duration = _limit(task.attributes.duration, limit)
            timeout = ["timeout", "-k", "5", _fsd(duration)] if duration else []
            suffix = f".{r}" if task.replicas > 1 else ""
            run = " ".join(_quote(a) for a in ["exec", *timeout, "env", *env, *_argv(task)])
            body.append(f"(cd {_quote(str(self._cwd(task, ctx)))} && {run}) "
                        f">{_quote(str(folder / f'stdout.{ctx.attempt}{suffix}'))} "
                        f"2>{_quote(str(folder / f'stderr.{ctx.attempt}{suffix}'))} "
                        f"|| r{i}=$?")
        body += [f"jd_exit {_quote(str(self._exitfile(task, ctx)))} \"$r{i}\"",
                 f"[ \"$r{i}\" = 0 ] || jd_failed=1"]
        if not guard:
            return body
        return [f"r{i}=", f"if {guard}; then", *_indent(body), "else",
                *_indent(_skip_lines(task, deps)), "fi"]

    def _folder(self, node: Unit, ctx: UnitContext) -> Path:
        """A descendant's state folder (the engine's, or one under the unit's own)."""
        return Path(ctx.children.get(node.key, ctx.workdir / node.key))

    def _exitfile(self, node: Unit, ctx: UnitContext) -> Path | None:
        if isinstance(node, Group) and node.key not in ctx.children:
            return None  # a nested group's own state is its children's
        return self._folder(node, ctx) / f"exit.{ctx.attempt}"

    def _group_outputs(self, group: Group, ctx: UnitContext) -> tuple[str, str]:
        if group.key in ctx.children:
            folder = Path(ctx.children[group.key])
            return str(folder / f"stdout.{ctx.attempt}"), str(folder / f"stderr.{ctx.attempt}")
        base = ctx.workdir / f"job.{ctx.attempt}.{_safe(group.name)}"
        return f"{base}.out", f"{base}.err"

    def _cwd(self, node: Unit, ctx: UnitContext) -> Path:
        """A descendant's cwd: the unit's, unless it sets its own (relative to the spec)."""
        if node.attributes.cwd is None or node.attributes.cwd == _top(node).attributes.cwd:
            return ctx.cwd
        return ctx.spec.path.parent / node.attributes.cwd

    def _write_scripts(self, unit: Group, ctx: UnitContext) -> str:
        scripts = self.scripts(unit, ctx)
        for path, text in scripts.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(path)
        return scripts[self.script_path(ctx)]

    # -- the two ways to submit -----------------------------------------------------------------
    def _api(self) -> bool:
        """Whether to submit through the Python bindings (decided once per transformer).

        Automatically: when FLUX_URI is set and bindings that match the instance import. With
        JOBSPEC_DO_FLUX_API=python, missing or mismatched bindings are an error instead.
        """
        if self.use_api is False:
            return False
        with self._api_lock:
            if self._handle is not None:
                return True
            if self.use_api is None and not os.environ.get("FLUX_URI"):
                self.use_api = False
                return False
            problem = self._connect()
            if problem is None:
                self.use_api = True
                return True
            if self.use_api:
                raise SubmitError(f"{problem} ({API_ENV}=python asks for the bindings; "
                                  f"{API_ENV}=cli uses the flux command instead)")
            if self.api_note is None:
                print(f"jobspec-do: warning: {problem}; submitting with the flux command",
                      file=sys.stderr)
            self.api_note = problem
            self.use_api = False
            return False

    def _connect(self) -> str | None:
        """Open a handle through bindings that fit the instance; else say why not."""
        bindings = flux_bindings.find()
        if bindings is None:
            return f"the flux Python bindings are not usable: {flux_bindings.why_missing()}"
        try:
            handle = bindings.module.Flux()
        except OSError as exc:
            return f"the flux Python bindings cannot reach $FLUX_URI: {exc}"
        try:
            version = str(handle.attr_get("version"))
        except (AttributeError, OSError):
            version = None  # the bindings cannot say: nothing to compare
        problem = flux_bindings.mismatch(bindings, version)
        if problem is None:
            self._bindings, self._handle = bindings, handle
        return problem

    def _submit_cli(self, unit: Unit, jobs: list[FluxJob], _script: str | None) -> list[str]:
        ids: list[str] = []
        for job in jobs:
            rc, out, err = self.runner(job.argv())
            got = _parse_ids(out)
            # --watch exits with the job's exit code, so printed ids mean it was submitted.
            if rc != 0 and not (job.watch and got):
                if ids or got:  # no half-submitted task: its replicas go in together or not
                    self.cancel(ids + got)
                raise _submit_error(unit, f"flux {job.kind}", rc, err)
            if len(got) != job.cc:
                self.cancel(ids + got)
                raise SubmitError(f"{unit.key}: flux {job.kind} printed {len(got)} job id(s), "
                                  f"expected {job.cc}: {out.strip()!r}", transient=True)
            ids += got
        return ids

    def _send_api(self, batch: Sequence[tuple[Unit, list[FluxJob], str | None]]
                  ) -> list[list[str] | PluginError]:
        """Submit every job of ``batch`` before waiting for any answer (Flux validates the
        requests it holds together), then collect each unit's ids. A unit with a refused job
        gets its error instead, and its other jobs are cancelled: all replicas or none."""
        flux = self._bindings.module
        rlimits = _cli_rlimits()
        sent: list[tuple[Unit, list[Any], Exception | None]] = []
        with self._api_lock:
            for unit, jobs, script in batch:
                futures: list[Any] = []
                error: Exception | None = None
                try:
                    for job in jobs:
                        for copy in [job.copy(r) for r in range(job.cc)] if job.cc > 1 else [job]:
                            js = copy.jobspec(flux.job.JobspecV1, script)
                            if rlimits:
                                js.setattr_shell_option("rlimit", rlimits)
                            futures.append(flux.job.submit_async(self._handle, js,
                                                                 waitable=job.waitable))
                except (OSError, ValueError) as exc:
                    error = exc
                sent.append((unit, futures, error))
            out: list[list[str] | PluginError] = []
            for unit, futures, error in sent:
                ids: list[str] = []
                for future in futures:
                    try:
                        ids.append(_normalize_id(str(future.get_id())))
                    except (OSError, ValueError) as exc:
                        error = error or exc
                if error is None:
                    out.append(ids)
                    continue
                if ids:
                    self.cancel(ids)
                out.append(_submit_error(unit, "flux.job.submit", 1, str(error)))
        return out

    # -- asking Flux ----------------------------------------------------------------------------
    def _query(self, ids: list[str]) -> dict[str, JobStatus]:
        rc, out, err = self.runner(["flux", "jobs", "--json", *ids])
        jobs = _jobs_from_json(out)
        if rc != 0 and not jobs and not re.search(r"unknown|not found", err, re.I):
            raise PluginError(f"flux jobs failed: {err.strip() or f'exit code {rc}'}")
        by_int = {_job_int(str(j.get("id", ""))): j for j in jobs}
        result = {}
        for jid in ids:
            job = by_int.get(_job_int(jid))
            if job is None and len(ids) == 1 and len(jobs) == 1 and "id" not in jobs[0]:
                job = jobs[0]
            if job is not None:
                result[jid] = job_status(job)
        return result

    def _token_of(self, jid: str) -> str | None:
        rc, out, _err = self.runner(["flux", "job", "info", jid, "jobspec"])
        if rc != 0:
            return None
        try:
            attrs = json.loads(out).get("attributes", {})
        except (ValueError, AttributeError):
            return None
        value: Any = attrs
        for part in TOKEN_ATTR.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return None if value is None else str(value)


@dataclass(frozen=True)
class _Frame:
    """Where one group's script goes and what its own job looks like."""

    path: Path
    stdout: str
    stderr: str
    token: str | None
    limit: float | None  # the enclosing allocation's time limit


# -- status ------------------------------------------------------------------------------------
def job_status(job: Mapping[str, Any]) -> JobStatus:
    """Map one job of ``flux jobs --json`` to the engine's states."""
    state = _name(job.get("state"), _STATE_BITS)
    result = _name(job.get("result"), _RESULT_BITS)
    if not state:  # only the combined status column: a state name or a result name
        status = str(job.get("status", "")).upper()
        state, result = (status, "") if status in _PENDING | _ACTIVE else ("INACTIVE", status)
    where, started = _placement(job)
    if state in _PENDING:
        return JobStatus(JobState.QUEUED, None, state.lower())
    if state in _ACTIVE:
        return JobStatus(JobState.RUNNING, where=where, started=started)
    status = _ended(job, result)
    return replace(status, where=where, started=started)


def _idset(text: str) -> list[int]:
    """Flux's idset text (``3``, ``[0-1]``, ``0,2-3``) as its ids in order; [] if malformed."""
    ids: list[int] = []
    for part in text.strip().strip("[]").split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return []
        ids += range(int(lo), int(hi or lo) + 1)
    return ids


def _idset_text(ids: list[int]) -> str:
    """Sorted ids as Flux writes an idset (``2``, ``0-1``, ``0,2-3``), without brackets."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def _placement(job: Mapping[str, Any]) -> tuple[str, float | None]:
    """Where a job runs or ran (its nodes, and its ranks: in a test instance every broker has
    the same host name) and when it began to run, from ``flux jobs --json``; ("", None)
    before it had resources (a job cancelled while pending never has)."""
    t_run = job.get("t_run")
    started = float(t_run) if isinstance(t_run, int | float) and t_run > 0 else None
    # Ranks come as an idset: "3", or "[0-1]" for several.
    nodes, ranks = str(job.get("nodelist") or ""), str(job.get("ranks") or "").strip("[]")
    if not nodes:
        return "", started
    plural = "s" if any(c in ranks for c in ",-") else ""
    return (f"{nodes} (rank{plural} {ranks})" if ranks else nodes), started


def _ended(job: Mapping[str, Any], result: str) -> JobStatus:
    """How an inactive job ended."""
    exc = job.get("exception") if isinstance(job.get("exception"), Mapping) else {}
    exc_type = exc.get("type") or job.get("exception_type") or ""
    note = str(exc.get("note") or job.get("exception_note") or "")
    code = job.get("returncode")
    code = int(code) if isinstance(code, int | float) else None
    if exc_type == "dependency":
        return JobStatus(JobState.CANCELED, code, f"never ran: {note or 'a dependency failed'}")
    if result == "COMPLETED":
        return JobStatus(JobState.COMPLETED, 0 if code is None else code)
    if result == "TIMEOUT":
        return JobStatus(JobState.TIMEOUT, code, note or "time limit reached")
    if result == "CANCELED":
        return JobStatus(JobState.CANCELED, code, note or "canceled")
    return JobStatus(JobState.FAILED, code, note)


def _name(value: Any, bits: Mapping[int, str]) -> str:
    if isinstance(value, int):
        return bits.get(value, "")
    return str(value or "").upper()


def _combine(parts: list[JobStatus]) -> JobStatus:
    """One status for a replicated task: running while any runs, else the worst outcome."""
    if len(parts) == 1:
        return parts[0]
    n = len(parts)
    done = [p for p in parts if p.state.terminal]
    where = "; ".join(dict.fromkeys(p.where for p in parts if p.where))
    starts = [p.started for p in parts if p.started is not None]
    started = min(starts) if starts else None
    if len(done) < n:
        state = (JobState.RUNNING if any(p.state is JobState.RUNNING for p in parts)
                 else JobState.QUEUED)
        return JobStatus(state, None, f"{len(done)} of {n} replicas done", where, started)
    bad = [p for p in parts if p.state is not JobState.COMPLETED]
    if not bad:
        return JobStatus(JobState.COMPLETED, 0, "", where, started)
    worst = min(bad, key=lambda p: _SEVERITY.index(p.state))
    codes = [p.exit_code for p in bad if p.exit_code is not None]
    info = f"{len(bad)} of {n} replicas did not complete"
    return JobStatus(worst.state, max(codes) if codes else None,
                     f"{info}: {worst.info}" if worst.info else info, where, started)


def _jobs_from_json(text: str) -> list[dict[str, Any]]:
    """Jobs from ``flux jobs --json``: {"jobs": [...]}, or one object for a single id."""
    text = text.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        return [j for j in data["jobs"] if isinstance(j, dict)]
    return [data] if isinstance(data, dict) and data else []


# -- job ids -----------------------------------------------------------------------------------
def _parse_ids(text: str) -> list[str]:
    """The job ids a submit printed: its leading lines (--watch prints output after them)."""
    ids = []
    for line in text.splitlines():
        if not _JOB_ID.match(line.strip()):
            break
        ids.append(_normalize_id(line))
    return ids


def _id_of(job: Mapping[str, Any]) -> str | None:
    """A job's id from ``flux jobs --json`` (an integer there) as f58."""
    value = job.get("id")
    if isinstance(value, int):
        return f58(value)
    return _normalize_id(str(value)) if value else None


def _normalize_id(jid: str) -> str:
    """Store ids in ASCII f58 (``f...``): Flux accepts it and it survives any locale."""
    jid = jid.strip()
    return "f" + jid[1:] if jid.startswith("\u0192") else jid


def _job_int(jid: str) -> int | None:
    """The integer behind an id in f58, decimal or hex form (None if it is none of these)."""
    jid = jid.strip()
    try:
        if jid.startswith(F58_PREFIXES):
            value = 0
            for ch in jid[1:]:
                value = value * 58 + F58_ALPHABET.index(ch)
            return value
        return int(jid, 16) if jid.startswith("0x") else int(jid)
    except ValueError:
        return None


def f58(value: int) -> str:
    """Encode an integer job id as ASCII f58 (as ``flux job id --to=f58plain`` does)."""
    digits = ""
    while True:
        value, rem = divmod(value, 58)
        digits = F58_ALPHABET[rem] + digits
        if value == 0:
            return "f" + digits


def _parts(jid: str) -> list[str]:
    return [p for p in jid.split(",") if p]


def _flatten(ids: Iterable[str]) -> list[str]:
    return [p for j in ids for p in _parts(j)]


def _folders(ctx: UnitContext) -> None:
    for path in {Path(ctx.stdout).parent, Path(ctx.stderr).parent}:
        path.mkdir(parents=True, exist_ok=True)


def _check_after(unit: Unit, after: Sequence[str]) -> None:
    local = [j for j in after if j.startswith(LOCAL_PREFIX)]
    if local:
        raise SubmitError(f"{unit.key}: a Flux job cannot wait for a task run on this host "
                          "(local: true); run without --no-wait so jobspec-do orders them")


def _submit_error(unit: Unit, what: str, rc: int, err: str) -> SubmitError:
    err = err.strip() or f"exit code {rc}"
    if re.search(r"failed or was canceled|can never be satisfied", err):
        return SubmitError(f"{unit.key}: {what} refused it: {err} (a job it depends on with "
                           "afterok has already failed or been canceled, so it can never run)")
    if re.search(r"connect|No such file or directory.*local|not found on PATH", err, re.I):
        return SubmitError(f"{unit.key}: cannot reach Flux: {err}", transient=True)
    return SubmitError(f"{unit.key}: {what} failed: {err}")


# -- the Python bindings -----------------------------------------------------------------------
def _cli_rlimits() -> dict[str, int] | None:
    """The soft limits `flux submit` propagates by default, so both paths match."""
    try:
        from flux.cli.base import get_filtered_rlimits  # type: ignore[import-not-found]
    except ImportError:
        return None
    return dict(get_filtered_rlimits())


# -- mapping the model -------------------------------------------------------------------------
def _argv(task: Task) -> list[str]:
    if isinstance(task.command, str):
        return ["/bin/sh", "-c", task.command]
    return list(task.command or ("true",))


def _whole_nodes(req: ResourceRequest | None) -> bool:
    """Nodes asked for with nothing under them (or marked exclusive) mean whole nodes."""
    if req is None or req.counts.nodes == 0:
        return False
    return _exclusive_node(req.tree) or not _has(req.tree, CORE_TYPES | GPU_TYPES)


def _exclusive_node(tree: Resource) -> bool:
    if tree.type == "node" and tree.exclusive:
        return True
    return any(_exclusive_node(c) for c in tree.with_)


def _has(tree: Resource, kinds: frozenset[str]) -> bool:
    return tree.type in kinds or any(_has(c, kinds) for c in tree.with_)


def _limit(duration: float | None, enclosing: float | None) -> float | None:
    """A child's time limit, dropped when the allocation's own limit already bounds it.

    A child inherits its group's duration, and a job asking for as long as the whole
    allocation may never fit into what is left of it.
    """
    if not duration or (enclosing and duration >= enclosing):
        return None
    return duration


def _setattrs(node: Unit, req: ResourceRequest | None,
              token: str | None) -> tuple[tuple[str, Any], ...]:
    attrs: list[tuple[str, Any]] = [(TOKEN_ATTR, token)] if token else []
    for key, value in node.attributes.extra.items():
        attrs.append((SYSTEM_ATTRS.get(key, f"user.{key}"), _plain(value)))
    requires = _requires(node, req)
    if requires:
        attrs.append(("user.requires", requires))
    return tuple(attrs)


def _requires(node: Unit, req: ResourceRequest | None) -> dict[str, Any]:
    """Requirements as data: Flux has no matching constraint, so they ride along for tools."""
    out: dict[str, Any] = {}
    if node.requires.mapping:
        out["mapping"] = _plain(node.requires.mapping)
    if node.requires.groups:  # alternatives: any one group satisfies
        out["groups"] = [{"name": n, "items": _plain(items)} for n, items in node.requires.groups]
    items = list(_tree_requires(req.tree)) if req else []
    if items:
        out["resources"] = _plain(items)
    return out


def _tree_requires(tree: Resource) -> Iterable[Mapping[str, Any]]:
    yield from tree.requires
    for child in tree.with_:
        yield from _tree_requires(child)


def _plain(value: Any) -> Any:
    """Mappings and tuples as plain JSON data."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _replicate(job: FluxJob, replicas: int) -> list[FluxJob]:
    """One --cc submission, or one submission per replica when --cc would garble a text.

    With --cc, Flux runs the command and most options through str.format(cc=N), and keeps
    ``{{...}}`` as a mustache template, so a ``{`` of the user's (``${HOME}``, ``awk '{...}'``,
    a JSON attribute) can be neither kept nor escaped.
    """
    if replicas <= 1:
        return [job]
    plain = replace(job, cc=1)
    if not any("{" in t or "}" in t for t in copy_texts(plain)):
        return [job]
    return [replace(job, cc=replicas).copy(r) for r in range(replicas)]


def copy_texts(job: FluxJob) -> list[str]:
    """The job's texts without this transformer's own ``{cc}`` placeholders."""
    return [t.replace("{cc}", "") for t in job.texts()]


def _replica_note(replicas: int, submissions: int) -> str:
    if submissions == 1:
        return (f"# {replicas} replicas: one submission with --cc, JOBSPEC_REPLICA and "
                "FLUX_JOB_CC = 0..N-1, output per replica")
    return (f"# {replicas} replicas: one submission each (a '{{' or '}}' in the command or "
            "options would be garbled by --cc)")


# -- text helpers ------------------------------------------------------------------------------
def _fsd(seconds: float) -> str:
    """A Flux standard duration in seconds (a bare number would mean minutes)."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds}s"


def _env_escape(value: str) -> str:
    # --env values go through string.Template, where `$$` is a literal `$`.
    return value.replace("$", "$$")


def _attr_text(value: Any) -> str:
    """A --setattr value: Flux parses it as JSON when it can, else keeps the string."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _safe(name: str) -> str:
    """``name`` as part of a file name; a changed name gets a hash so two cannot collide."""
    safe = _SAFE_NAME.sub("_", name)
    if safe == name:
        return name
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _top(node: Unit) -> Unit:
    top = node.top
    assert isinstance(top, Task | Group)
    return top


def _quote(arg: str) -> str:
    """shlex.quote, but never a line that flux batch would read as a '# flux:' directive."""
    quoted = shlex.quote(arg)
    if "\n" not in arg or not any(_DIRECTIVE.match(ln) for ln in quoted.split("\n")[1:]):
        return quoted
    # bash's $'...' keeps the whole argument on one line.
    body = arg.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t")
    return f"$'{body}'"


def _shell(groups: Sequence[Sequence[str]], raw: Mapping[int, str] | None = None,
           indent: str = "") -> str:
    """A quoted command line; a long one gets one option group per line.

    ``raw`` maps a group index to shell text inserted unquoted (e.g. ``"${deps[@]}"``).
    ``indent`` is where the line itself starts: continuation lines go one step further.
    Text inside a quoted argument is never indented (that would change the argument).
    """
    parts = [raw[i] if raw and i in raw else " ".join(_quote(t) for t in g)
             for i, g in enumerate(groups) if g or (raw and i in raw)]
    line = " ".join(parts)
    if len(indent) + len(line) <= WRAP:
        return line
    return f" \\\n{indent}{PAD}".join(parts)


def _indent(lines: Iterable[str]) -> list[str]:
    """Lines moved one step in (their first physical line only: see _shell)."""
    return [PAD + ln if ln else ln for ln in lines]


# Flux parses directives with shlex (posix, punctuation_chars, both quotes escapable); an option
# that does not survive that round trip goes on the flux batch command line instead.
def _directive_lexer(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.escapedquotes = "\"'"
    return list(lexer)


def _directive_line(group: Sequence[str]) -> str | None:
    line = " ".join(shlex.quote(t) for t in group)
    try:
        ok = "\n" not in line and _directive_lexer(line) == list(group)
    except ValueError:
        ok = False
    return f"# flux: {line}" if ok else None


def _directives(job: FluxJob) -> list[str]:
    return [d for g in job.job_options() if (d := _directive_line(g)) is not None]


def _directive_keys(job: FluxJob) -> set[str]:
    """The option groups of ``job`` that its script carries as directives."""
    return {" ".join(g) for g in job.job_options() if _directive_line(g) is not None}


# -- batch script pieces -----------------------------------------------------------------------
_PREAMBLE = r"""
# Single-quoted texts are meant literally; $jN holds one job id per replica (split on
# purpose) and is set for every child, whether or not a later sibling needs it.
# shellcheck disable=SC2016,SC2034,SC2086
jd_failed=0

# jd_record FILE ID...: once the jobs end, write their largest exit code to FILE (through a
# rename: jobspec-do may be reading it). A job stopped by a failed dependency never ran: no code.
jd_record() {
    local file=$1
    shift
    (
        flux job status "$@" >/dev/null 2>&1
        rc=$?
        if flux jobs -n -o '{exception.type}' "$@" 2>/dev/null | grep -qx dependency; then
            exit 0
        fi
        # Where and since when each job ran (this instance's ranks), before the exit code:
        # jobspec-do reads both once it sees the exit code.
        flux jobs -n -o '{t_run} {nodelist} {ranks}' "$@" >>"$(jd_place_file "$file")" 2>/dev/null
        printf '%s\n' "$rc" >"$file.tmp" && mv -f "$file.tmp" "$file"
    ) &
}

# jd_exit FILE CODE: record the exit code of a task that ran in this script.
jd_exit() { printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"; }

# jd_place_file EXIT_FILE: the place.N file beside exit.N.
jd_place_file() { printf '%s\n' "${1%/*}/place.${1##*.}"; }

# jd_here EXIT_FILE: record that a task of this script starts now, here (this broker's rank).
jd_here() {
    printf '%s %s %s\n' "$(date +%s.%N)" "$(hostname)" "$(flux getattr rank 2>/dev/null)" \
        >>"$(jd_place_file "$1")"
}

# jd_afterok ID...: set deps to one afterok dependency per job id (replicas have several).
jd_afterok() {
    deps=()
    local id
    for id in "$@"; do deps+=("--dependency=afterok:$id"); done
}
"""


def _guard(deps: list[Unit], index: Mapping[int, int], wait: bool = False) -> str:
    """Shell test that every earlier sibling in ``deps`` started (locals: succeeded).

    With ``wait``, also wait for the job siblings and require that they succeeded.
    """
    tests, jobs = [], []
    for d in deps:
        k = index[id(d)]
        if isinstance(d, Task) and d.local:
            tests.append(f'[ "$r{k}" = 0 ]')
        else:
            tests.append(f'[ -n "$j{k}" ]')
            jobs.append(f"$j{k}")
    if wait and jobs:
        tests.append(f"flux job status {' '.join(jobs)} >/dev/null 2>&1")
    return " && ".join(tests)


def _skip_lines(node: Unit, deps: list[Unit]) -> list[str]:
    names = ", ".join(d.key for d in deps)
    msg = f"jobspec-do: {node.key} not started: {names} did not start or failed"
    return [f"echo {shlex.quote(msg)} >&2", "jd_failed=1"]


def _submit_lines(node: Unit, i: int, argvs: list[list[list[str]]], deps: list[Unit],
                  index: Mapping[int, int], exitfile: Path | None) -> list[str]:
    """Submit child ``i`` (one or more argvs), keep its ids in ``j<i>``, record its exit."""
    job_deps = [f"$j{index[id(d)]}" for d in deps if not (isinstance(d, Task) and d.local)]
    guard = _guard(deps, index)
    pad = PAD if guard else ""
    # The dependency options go right after "flux submit|batch --flags=waitable".
    raw = {2: '"${deps[@]}"'} if job_deps else None
    cmds = [_shell([*g[:2], [], *g[2:]] if raw else g, raw, pad) for g in argvs]
    body = [f"jd_afterok {' '.join(job_deps)}"] if job_deps else []
    chained = f" &&\n{pad}{PAD}".join(cmds)  # one submission per replica, if more than one
    body.append(f"j{i}=$({chained}) || jd_failed=1")
    if exitfile is not None:
        body.append(f'[ -z "$j{i}" ] || jd_record {_quote(str(exitfile))} $j{i}')
    if not guard:
        return body
    return [f"j{i}=", f"if {guard}; then", *_indent(body), "else",
            *_indent(_skip_lines(node, deps)), "fi"]
