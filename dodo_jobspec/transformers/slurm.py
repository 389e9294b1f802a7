"""The Slurm transformer: every unit (a top-level task or group) becomes one ``sbatch`` script.

- A task's script holds ``#SBATCH`` directives taken from its chosen resources and attributes,
  then ``export`` lines for its environment, then its command. Replicas become one job array.
- A group's script asks for the group's resources and runs its children inside that allocation:
  ``srun`` steps in the background, each started once the siblings it waits for have succeeded;
  ``local: true`` tasks run on the batch host itself; nested groups are subshells of the same
  script. Each child's output and exit code go to the folders in ``UnitContext.children``.
- Status works without slurmdbd: ``squeue -t all`` first (it keeps finished jobs for MinJobAge),
  then ``sacct`` if accounting answers, then the jobcomp file; a job none of them knows is LOST.
- ``duration`` becomes ``--time`` in whole minutes (Slurm's unit); a duration that is not whole
  minutes is also enforced by the job itself (see ``_watchdog``).

The measured Slurm 22.05 behaviour behind these choices is in shared/reference/slurm-ssh-facts.md.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import PluginError, Problem
from ..spec.model import Counts, Group, Resource, ResourceRequest, Spec, Task, Unit
from .base import JobState, JobStatus, SubmitError, Transformer, TransformerOptions, UnitContext
from .order import launch_order

QUERY_TIMEOUT = 30.0  # a dead controller takes ~9 s to report; leave room for a slow one
SUBMIT_TIMEOUT = 60.0
# sbatch calls in flight at once in a batch (submit_many). One sbatch spends most of its ~7 ms
# waiting for munge and slurmctld, so a few at once keep both busy; 4 was the knee on the
# 2-core test machine (200 submissions: 1.47 s one at a time, 0.86 s at 2, 0.60 s at 4, 0.76 s
# at 8). slurmctld serialises the job writes itself, so overlapping calls cannot interleave.
SUBMIT_PARALLEL = 4

_STATES = {
    "PENDING": JobState.QUEUED, "CONFIGURING": JobState.QUEUED, "REQUEUED": JobState.QUEUED,
    "REQUEUE_HOLD": JobState.QUEUED, "REQUEUE_FED": JobState.QUEUED,
    "RESV_DEL_HOLD": JobState.QUEUED, "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING, "SUSPENDED": JobState.RUNNING, "STOPPED": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING, "STAGE_OUT": JobState.RUNNING, "RESIZING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED, "FAILED": JobState.FAILED, "NODE_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED, "BOOT_FAIL": JobState.FAILED, "DEADLINE": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED, "TIMEOUT": JobState.TIMEOUT,
    "CANCELLED": JobState.CANCELED, "PREEMPTED": JobState.CANCELED, "REVOKED": JobState.CANCELED,
}
# Attributes passed to sbatch as --<name>[=value]; others are listed as ignored by describe().
SBATCH_OPTIONS = frozenset({
    "account", "begin", "constraint", "cores-per-socket", "deadline", "exclude", "exclusive",
    "gres", "hint", "licenses", "mail-type", "mail-user", "mem", "mem-per-cpu", "mem-per-gpu",
    "nice", "nodelist", "oversubscribe", "partition", "priority", "qos", "requeue",
    "reservation", "signal", "sockets-per-node", "threads-per-core", "time-min", "tmp", "wckey",
})
_TRANSIENT = ("unable to contact slurm controller", "socket timed out", "zero bytes were",
              "temporarily unable", "munge", "protocol authentication", "connection refused",
              "resource temporarily unavailable")
_SQUEUE_FIELDS = ("ArrayJobID:|,JobArrayID:|,State:|,Reason:|,NodeList:|,StartTime:|,"
                  "exit_code:")


@dataclass(frozen=True, slots=True)
class SlurmNode:
    """One line of ``sinfo -N``: a node as seen in one partition."""

    name: str
    cpus: int
    gpus: int
    partition: str


@dataclass(frozen=True)
class ClusterInfo:
    """What sinfo says about the cluster, enough to tell whether a request can ever run."""

    nodes: tuple[SlurmNode, ...]
    default_partition: str | None

    @classmethod
    def parse(cls, text: str) -> ClusterInfo:
        """Read ``sinfo -h -N -o '%N|%c|%G|%P'`` output (the default partition ends in ``*``)."""
        nodes, default = [], None
        for line in text.splitlines():
            parts = line.strip().split("|")
            if len(parts) != 4 or not parts[1].isdigit():
                continue
            name, cpus, gres, part = parts
            if part.endswith("*"):
                part = default = part[:-1]
            gpus = sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))
            nodes.append(SlurmNode(name, int(cpus), gpus, part))
        return cls(tuple(nodes), default)

    def partition(self, name: str | None) -> list[SlurmNode]:
        """Nodes of partition ``name`` (the default one when None; every node if no default)."""
        name = name or self.default_partition
        return [n for n in self.nodes if name is None or n.partition == name]

    def unfit(self, counts: Counts, partition: str | None) -> str | None:
        """Why no placement in ``partition`` can satisfy ``counts``, or None when one can."""
        nodes = self.partition(partition)
        where = f"partition '{partition or self.default_partition or '(all)'}'"
        if not nodes:
            return f"{where} has no nodes"
        cpus = max(n.cpus for n in nodes)
        per_node = counts.cores_per_slot * math.ceil(counts.slots / max(counts.nodes, 1))
        if counts.nodes > len(nodes):
            return f"{counts.nodes} nodes asked, {where} has {len(nodes)}"
        if counts.cores_per_slot > cpus:
            return f"{counts.cores_per_slot} cores per task asked, the largest node has {cpus}"
        if counts.nodes and per_node > cpus:
            return f"{per_node} cores per node asked, the largest node has {cpus}"
        if not counts.nodes and counts.cores > sum(n.cpus for n in nodes):
            return f"{counts.cores} cores asked, {where} has {sum(n.cpus for n in nodes)}"
        if counts.gpus_per_slot > max(n.gpus for n in nodes):
            return f"{counts.gpus_per_slot} gpus per task asked, no node has that many"
        return None


# Where slurmd keeps the configuration a configless cluster's controller sent it.
CONFIGLESS_CONF = "/run/slurm/conf/slurm.conf"


def _no_conf(env: dict[str, str] | None = None) -> str | None:
    """Why Slurm's commands will find no configuration here (``env``: another cluster's
    environment), or None."""
    told = (os.environ if env is None else env).get("SLURM_CONF")
    places = [told] if told else ["/etc/slurm/slurm.conf", CONFIGLESS_CONF]
    if any(os.path.exists(p) for p in places):
        return None
    where = f"SLURM_CONF names {told}, which does not exist" if told else \
        f"there is no {places[0]}"
    return f"{where}: set SLURM_CONF to your cluster's slurm.conf"


class SlurmTransformer(Transformer):
    """Submits each top-level task or group as one sbatch job (a job array for replicas)."""

    name = "slurm"
    description = "sbatch jobs on a Slurm cluster; a group is one allocation with srun steps"
    default_resources = Resource("core", 1)
    runs_prologue = True
    submits_in_background = True  # sbatch is a child process: it runs while we work on

    def __init__(self, options: TransformerOptions | None = None, *,
                 cluster: ClusterInfo | None = None) -> None:
        super().__init__(options)
        self._cluster = cluster
        self._asked_sinfo = cluster is not None
        # submit_many renders scripts from several threads: sinfo is asked by one, and the
        # others wait for its answer instead of reading "no answer" meanwhile.
        self._sinfo_lock = threading.Lock()
        self._sacct_works: bool | None = None
        self._jobcomp: Path | None = None
        self._asked_jobcomp = False
        # The environment of every Slurm command (None: this process's). A burster aims the
        # transformer at another cluster by giving it that cluster's SLURM_CONF here.
        self.env: dict[str, str] | None = None
        # Scripts prepare() wrote ahead, by path: the token they were written for. A path is
        # taken once, by the submit of that very attempt (submit_many's threads take
        # different paths, and single dict operations are atomic under the GIL).
        self._ahead: dict[str, str] = {}

    @property
    def cluster(self) -> ClusterInfo | None:
        """The cluster as sinfo describes it (asked once), or None when sinfo does not answer."""
        if self._asked_sinfo:
            return self._cluster
        with self._sinfo_lock:
            if not self._asked_sinfo:
                # sinfo with no configuration would retry for a minute, then fail.
                if _no_conf(self.env) is None:
                    out = _client(self.env, ["sinfo", "-h", "-N", "-o", "%N|%c|%G|%P"])
                    self._cluster = ClusterInfo.parse(out.stdout) \
                        if out and out.returncode == 0 else None
                self._asked_sinfo = True
        return self._cluster

    # -- before anything runs -------------------------------------------------------------
    def check(self, spec: Spec) -> list[Problem]:
        """The base checks, plus every unit whose chosen request no partition node can give."""
        problems = super().check(spec)
        for node in spec.nodes.values():
            req, _why = self.choose(node)
            if req is None:
                continue
            reason = self._unfit(node, req)
            if reason is None and isinstance(node, Task) and node.parent and not node.local:
                # Steps of any depth are carved from the one allocation of the top-level group.
                reason = _outgrows(req.counts, self.choose(node.top)[0])
            if reason is not None:
                problems.append(Problem(
                    f"{_kind(node)} '{node.name}' asks for {req.label}, which cannot run here: "
                    f"{reason}", (node.spec_path,),
                    "ask for fewer resources, or choose another partition", str(spec.path)))
        return problems

    def unavailable(self) -> str | None:
        """sbatch missing, or no slurm.conf where Slurm's commands look for it.

        Not by asking sinfo: without a configuration it retries for a minute."""
        if shutil.which("sbatch") is None:
            return "sbatch is not on PATH: install Slurm's client commands, or add their " \
                   "folder to PATH"
        return _no_conf(self.env)

    def _unfit(self, node: Unit, req: ResourceRequest) -> str | None:
        cluster = self.cluster
        if cluster is None:  # no sinfo: nothing to check against, so nothing is reported
            return None
        return cluster.unfit(req.counts, _partition(node))

    def choose(self, node: Unit) -> tuple[ResourceRequest | None, str]:
        """The first alternative the partition can satisfy (from sinfo), else the first."""
        req, why = super().choose(node)
        if len(node.resources) < 2 or self.options.resources_choice is not None:
            return req, why
        if self.cluster is None:
            return req, f"{why} (sinfo unavailable, so not checked against the cluster)"
        for i, alt in enumerate(node.resources):
            if self._unfit(node, alt) is None:
                return alt, f"alternative {i + 1} of {len(node.resources)}: the first the " \
                            f"partition can satisfy"
        return req, f"{why}: no alternative fits the partition, so the first is used"

    # -- the script -----------------------------------------------------------------------
    def describe(self, unit: Unit, ctx: UnitContext) -> str:
        """The sbatch command line, notes on choices and ignored attributes, and the script."""
        lines = [f"$ {shlex.join(self.sbatch_argv(_script_path(ctx), ctx))}"]
        for node in [unit, *(unit.walk() if isinstance(unit, Group) else ())]:
            req, why = self.choose(node)
            if req is not None:
                lines.append(f"# {_kind(node)} '{node.name}': resources {req.label}, {why}")
            ignored = sorted(k for k in node.attributes.extra if _option(k) not in SBATCH_OPTIONS)
            if ignored and (node.parent is None or node.attributes != node.parent.attributes):
                lines.append(f"# {_kind(node)} '{node.name}': ignored attributes (Slurm has no "
                             f"such option): {', '.join(ignored)}")
            if node.requires or (req is not None and _has_requires(req.tree)):
                lines.append(f"# {_kind(node)} '{node.name}': `requires` is not checked on Slurm")
        return "\n".join([*lines, self.render(unit, ctx)])

    def sbatch_argv(self, script: Path, ctx: UnitContext) -> list[str]:
        """The sbatch command that submits ``script``, with dependencies when there are some."""
        argv = ["sbatch", "--parsable"]
        if ctx.after_jobs:
            # Without --kill-on-invalid-dep a dependent of a failed job stays PENDING forever.
            argv += [f"--dependency=afterok:{':'.join(ctx.after_jobs)}",
                     "--kill-on-invalid-dep=yes"]
        return [*argv, str(script)]

    def render(self, unit: Unit, ctx: UnitContext) -> str:
        """The whole sbatch script for ``unit``."""
        lines = ["#!/bin/bash", *self._directives(unit, ctx),
                 f"# jobspec-do: {_kind(unit)} '{unit.name}', attempt {ctx.attempt}",
                 # Which job this attempt became, for a resume after slurmctld forgot it.
                 f'echo "${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}} {ctx.token}" '
                 f"> {shlex.quote(str(_started_path(ctx)))}",
                 f"export JOBSPEC_ATTEMPT={ctx.attempt}"]
        lines += [f"export {k}={shlex.quote(v)}"
                  for k, v in sorted(unit.attributes.environment.items())]
        for script in ctx.prologue:  # in-job staging: before any of the unit's commands
            fail = shlex.quote(f"jobspec-do: {script.name} failed: nothing of "
                               f"{_kind(unit)} '{unit.name}' was run")
            lines.append(f"bash {shlex.quote(str(script))} || {{ echo {fail} >&2; exit 1; }}")
        watchdog = _watchdog(unit.attributes.duration)
        lines += watchdog
        if isinstance(unit, Group):
            lines += [_HELPERS, *self._group_body(unit, ctx, "", [0])]
        else:
            replica = "$SLURM_ARRAY_TASK_ID" if unit.replicas > 1 else "0"
            lines.append(f"export JOBSPEC_REPLICA={replica}")
            req, _ = self.choose(unit)
            srun = ["srun"] if req is not None and req.counts.slots > 1 else []
            lines.append(" ".join([*srun, _command(unit)]))
        if watchdog:
            # The group reaches its sleep too; the pid, in case setsid has not run yet.
            lines += ["_jsd_rc=$?", 'kill -- "-$_jsd_watchdog" "$_jsd_watchdog" 2>/dev/null',
                      'exit "$_jsd_rc"']
        return "\n".join(lines) + "\n"

    def _directives(self, unit: Unit, ctx: UnitContext) -> list[str]:
        req, _ = self.choose(unit)
        opts: list[tuple[str, Any]] = [("job-name", unit.name)]
        opts += _resource_options(req, per_node=True)
        if unit.attributes.duration is not None:
            opts.append(("time", _slurm_time(unit.attributes.duration)))
        if isinstance(unit, Task) and unit.replicas > 1:
            # One submission for every replica; %a in the file names is the array index.
            opts += [("array", f"0-{unit.replicas - 1}"),
                     ("output", f"{_escape_pattern(ctx.workdir)}/stdout.{ctx.attempt}.%a"),
                     ("error", f"{_escape_pattern(ctx.workdir)}/stderr.{ctx.attempt}.%a")]
        else:
            opts += [("output", _escape_pattern(ctx.stdout)),
                     ("error", _escape_pattern(ctx.stderr))]
        opts += [("chdir", str(ctx.cwd)), ("export", "ALL"), ("comment", ctx.token)]
        if "requeue" not in {_option(k) for k in unit.attributes.extra}:
            # Slurm's default requeues a job whose node fails and runs it again from the start,
            # behind the engine's back: the task would run twice. The job ends NODE_FAIL
            # instead, and `--resume` runs it again on the nodes that are left.
            opts.append(("no-requeue", True))
        for key, value in sorted(unit.attributes.extra.items()):
            if _option(key) in SBATCH_OPTIONS and value not in (None, False):
                opts.append((_option(key), True if value is True else _flat(value)))
        return [_directive(k, v) for k, v in opts]

    def _group_body(self, group: Group, ctx: UnitContext, indent: str,
                    counter: list[int]) -> list[str]:
        """Shell lines that start every child of ``group`` and wait for all of them."""
        out, pids = [], {}
        for i, (child, deps) in enumerate(launch_order(group, ctx.spec.path.parent), start=1):
            pid = f"p{i}"
            pids[child] = pid
            waits = " ".join(f'"${pids[d]}"' for d in deps)
            out.append(f"{indent}# {_kind(child)} '{child.name}'"
                       + (f", after {', '.join(d.name for d in deps)}" if deps else ""))
            if isinstance(child, Group):
                counter[0] += 1
                fn = f"_jsd_group_{counter[0]}"
                out.append(f"{indent}{fn}() {{")
                out += self._group_body(child, ctx, indent + "    ", counter)
                out.append(f"{indent}}}")
                start = f"{fn} &"
            else:
                start = self._child_line(child, group, ctx) + " &"
            if deps:
                skip = shlex.quote(f"jobspec-do: {child.name} not run: a task it waits for failed")
                out.append(f"{indent}if _jsd_wait {waits}; then {start} {pid}=$!; "
                           f"else {pid}=; echo {skip} >&2; fi")
            else:
                out += [f"{indent}{start}", f"{indent}{pid}=$!"]
        out.append(f"{indent}_jsd_finish " + " ".join(f'"${p}"' for p in pids.values()))
        return out

    def _child_line(self, task: Task, group: Group, ctx: UnitContext) -> str:
        """``_jsd_task`` for one child: an srun step, or the bare command for a local task."""
        env = [f"{k}={shlex.quote(v)}" for k, v in sorted(task.attributes.environment.items())
               if group.attributes.environment.get(k) != v]
        argv = [str(_child_folder(task, ctx)), str(_child_cwd(task, group, ctx)),
                str(task.replicas)]
        if not task.local:
            req, _ = self.choose(task)
            # --exact limits a step to what it asks for, so steps share the allocation (22.05
            # otherwise gives a step every CPU of its nodes, and steps would run one by one).
            flags = [f"--{k}={v}" for k, v in _resource_options(req, per_node=False)]
            if (task.attributes.duration is not None
                    and task.attributes.duration != group.attributes.duration):
                flags.append(f"--time={_slurm_time(task.attributes.duration)}")
            argv += ["srun", "--exact", *flags, "--"]
        place = '/bin/sh -c "$_jsd_here" _jsd' if task.local else '/bin/sh -c "$_jsd_step" _jsd'
        return " ".join([*env, "_jsd_task", *map(shlex.quote, argv), place, _command(task)])

    # -- running --------------------------------------------------------------------------
    def prepare(self, unit: Unit, ctx: UnitContext) -> None:
        """Write the unit's script before the ids of the jobs it waits on are known (they go
        on sbatch's command line, see sbatch_argv, never into the script): a chain's next
        script is written while the previous sbatch runs. On an error nothing is kept, and
        submit() writes the script again and reports it."""
        try:
            script = self._write_script(unit, ctx)
        except (PluginError, OSError):
            return
        self._ahead[str(script)] = ctx.token

    def _write_script(self, unit: Unit, ctx: UnitContext) -> Path:
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        for node in unit.walk() if isinstance(unit, Group) else ():
            if isinstance(node, Task):  # the job writes their outputs and exit codes there
                _child_folder(node, ctx).mkdir(parents=True, exist_ok=True)
        script = _script_path(ctx)
        script.write_text(self.render(unit, ctx))
        return script

    def submit(self, unit: Unit, ctx: UnitContext) -> str:
        """Write ``job.<attempt>.sbatch`` into the unit's folder (unless prepare() wrote it
        for this attempt) and sbatch it; return the id."""
        return self.start_submit(unit, ctx)()

    def start_submit(self, unit: Unit, ctx: UnitContext) -> Callable[[], str]:
        """Start sbatch for ``unit`` (its script written first unless prepare() wrote it);
        what this returns waits for sbatch and gives the job id. Between the two the caller
        works on (a --no-wait chain records its next intent): sbatch is a child process."""
        script = _script_path(ctx)
        if self._ahead.pop(str(script), None) != ctx.token:
            script = self._write_script(unit, ctx)
        what = f"{_kind(unit)} '{unit.name}'"
        deadline = time.monotonic() + SUBMIT_TIMEOUT
        try:
            proc = subprocess.Popen(self.sbatch_argv(script, ctx), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                    env=self.env)
        except FileNotFoundError as exc:
            raise SubmitError(f"{what}: sbatch not found; is Slurm installed and on PATH?"
                              ) from exc

        def answer() -> str:
            try:
                out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.communicate()
                raise SubmitError(f"{what}: sbatch did not answer within {SUBMIT_TIMEOUT:g}s",
                                  transient=True) from exc
            job_id = out.strip().split(";")[0]
            if proc.returncode != 0 or not job_id.isdigit():
                err = err.strip() or out.strip() or f"exit {proc.returncode}"
                raise SubmitError(f"{what}: sbatch {script} failed: {err}",
                                  transient=any(t in err.lower() for t in _TRANSIENT))
            return job_id
        return answer

    def submit_many(self, items: Sequence[tuple[Unit, UnitContext]]) -> list[str | PluginError]:
        """Submit units that do not wait for one another, up to ``SUBMIT_PARALLEL`` sbatch
        calls at once; per unit, in order, its job id or the SubmitError that kept it out.

        Every intent is recorded before this is called (engine/advance.py), so a kill while
        calls overlap leaves each unit findable by its token, exactly as one at a time would.
        """
        if len(items) < 2:
            return super().submit_many(items)

        def one(item: tuple[Unit, UnitContext]) -> str | PluginError:
            try:
                return self.submit(*item)
            except PluginError as exc:
                return exc

        # Threads, not processes: each waits on its sbatch child with the GIL released.
        with ThreadPoolExecutor(max_workers=min(SUBMIT_PARALLEL, len(items)),
                                thread_name_prefix="sbatch") as pool:
            return list(pool.map(one, items))

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Ask squeue, then sacct, then the jobcomp file; LOST for ids none of them knows.

        When squeue itself fails (controller down), unknown ids stay QUEUED with the error in
        ``info`` rather than LOST: the jobs may well still be there.
        """
        if not job_ids:
            return {}
        rows, error = self._squeue_rows()
        out = {i: st for i in job_ids if (st := _combine(_rows_for(i, rows)))}
        missing = [i for i in job_ids if i not in out]
        if missing:
            rows = self._sacct_rows(missing) + self._jobcomp_rows()
            out |= {i: st for i in missing if (st := _combine(_rows_for(i, rows)))}
        for i in job_ids:
            if i not in out:
                out[i] = (JobStatus(JobState.QUEUED, None, f"squeue failed: {error}") if error
                          else JobStatus(JobState.LOST, None, "no Slurm source knows this job"))
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        """scancel the jobs; its exit code says nothing (unknown ids give 0), so it is ignored."""
        if job_ids:
            _client(self.env, ["scancel", *job_ids])

    def find(self, unit: Unit, ctx: UnitContext) -> str | None:
        """The job submitted with this attempt's token, or None if it never was.

        A job that started wrote its id into its folder; one that did not is still in squeue,
        where its ``--comment`` is the token. When squeue does not answer, nobody can tell: a
        SubmitError, so that the attempt is not submitted a second time.
        """
        try:
            job_id, _, token = _started_path(ctx).read_text().strip().partition(" ")
            if token == ctx.token and job_id.isdigit():
                return job_id
        except OSError:
            pass
        out = _client(self.env, ["squeue", "--me", "-t", "all", "-h", "-o", "%F|%k"])
        if out is None or out.returncode != 0:
            why = ((out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
                   if out else "no answer")
            raise SubmitError(f"{_kind(unit)} '{unit.name}': cannot tell whether attempt "
                              f"{ctx.attempt} reached Slurm before the last run stopped "
                              f"(squeue: {why}); it is not submitted again until Slurm "
                              "answers", transient=True)
        for line in out.stdout.splitlines():
            job_id, _, comment = line.strip().partition("|")
            if comment == ctx.token:
                return job_id
        return None

    def _squeue_rows(self) -> tuple[list[_Row], str | None]:
        # One call for every id: `squeue -j` hides finished jobs and fails on unknown ids. Its
        # exit_code field (a raw wait status) saves a `scontrol show job` per finished job, and
        # its NodeList and StartTime say where and since when each job runs (for the records).
        out = _client(self.env, ["squeue", "--me", "-t", "all", "-h", "-r", "-O", _SQUEUE_FIELDS])
        if out is None or out.returncode != 0:
            return [], (out.stderr.strip() if out else "squeue did not answer")
        rows = []
        for line in out.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 7:
                code = int(parts[6]) if parts[6].isdigit() else None
                rows.append(_Row(parts[0], parts[1], parts[2], parts[3],
                                 _wait_status(code) if code is not None else None,
                                 _nodes(parts[4]), _time(parts[5])))
        if any(r.state == "NODE_FAIL" for r in rows):
            rows = _name_failed_nodes(self.env, rows)
        return rows, None

    def _sacct_rows(self, job_ids: Sequence[str]) -> list[_Row]:
        if self._sacct_works is False:  # no slurmdbd: it will not start answering later
            return []
        out = _client(self.env, ["sacct", "-n", "-P", "-X", "-o",
                                 "JobID,State,ExitCode,NodeList,Start", "-j", ",".join(job_ids)])
        self._sacct_works = bool(out and out.returncode == 0)
        rows = []
        for line in out.stdout.splitlines() if self._sacct_works and out else ():
            m = re.match(r"(\d+)(_\d+)?\|(\w+)[^|]*\|(\d+):(\d+)\|([^|]*)\|(\S*)", line.strip())
            if m:
                rows.append(_Row(m[1], m[1] + (m[2] or ""), m[3], "", _code(m[4], m[5]),
                                 _nodes(m[6]), _time(m[7])))
        return rows

    def _jobcomp_rows(self) -> list[_Row]:
        if not self._asked_jobcomp:
            self._asked_jobcomp = True
            out = _client(self.env, ["scontrol", "show", "config"])
            m = re.search(r"^JobCompLoc\s*=\s*(/\S+)", out.stdout if out else "", re.M)
            self._jobcomp = Path(m[1]) if m else None
        try:
            text = self._jobcomp.read_text(errors="replace") if self._jobcomp else ""
        except OSError:
            return []
        rows = []
        for line in text.splitlines():
            job, state = re.search(r"\bJobId=(\d+)", line), re.search(r"\bJobState=(\w+)", line)
            array, task = re.search(r"\bArrayJobId=(\d+)", line), re.search(
                r"\bArrayTaskId=(\d+)", line)
            code = re.search(r"\bExitCode=(\d+):(\d+)", line)
            nodes, start = re.search(r"\bNodeList=(\S+)", line), re.search(
                r"\bStartTime=(\S+)", line)
            if job and state:
                base = array[1] if array else job[1]
                rows.append(_Row(base, f"{base}_{task[1]}" if task else job[1], state[1], "",
                                 _code(code[1], code[2]) if code else None,
                                 _nodes(nodes[1] if nodes else ""),
                                 _time(start[1] if start else "")))
        return rows


# -- the group script's helpers (bash), defined once at the top of every group script -------
_HELPERS = r"""
# _jsd_task DIR CWD REPLICAS CMD...: run one child task (REPLICAS copies at once) in CWD with its
# output in DIR, then write its exit code to DIR/exit.N, renamed into place so that the engine
# never reads half a file.
_jsd_task() {
    local dir=$1 n=$3 r s rc=0 pids=()
    cd "$2" || { _jsd_end "$dir" 1; return 1; }
    shift 3
    export _JSD_PLACE="$dir/place.$JOBSPEC_ATTEMPT"
    if [ "$n" -eq 1 ]; then
        JOBSPEC_REPLICA=0 "$@" >"$dir/stdout.$JOBSPEC_ATTEMPT" 2>"$dir/stderr.$JOBSPEC_ATTEMPT"
        rc=$?
    else
        for ((r = 0; r < n; r++)); do
            JOBSPEC_REPLICA=$r "$@" >"$dir/stdout.$JOBSPEC_ATTEMPT.$r" \
                2>"$dir/stderr.$JOBSPEC_ATTEMPT.$r" &
            pids+=($!)
        done
        for r in "${pids[@]}"; do wait "$r"; s=$?; [ "$rc" -ne 0 ] || rc=$s; done
    fi
    _jsd_end "$dir" "$rc"
    return "$rc"
}
# _jsd_step, _jsd_here: what every child's command starts with (an sh -c script): its first
# task appends when it began and on which nodes to $_JSD_PLACE, then becomes the command.
# Told from inside, because only the step knows its nodes (without slurmdbd sacct knows no
# steps) and when it got its CPUs (a step may wait for its siblings' ones). _jsd_here is for a
# local child, which runs on this batch host.
_jsd_step='[ "${SLURM_PROCID:-0}" != 0 ] ||
    printf "%s %s\n" "$(date +%s.%N)" "${SLURM_STEP_NODELIST:-$(hostname -s)}" >>"$_JSD_PLACE"
exec "$@"'
_jsd_here='printf "%s %s\n" "$(date +%s.%N)" "${SLURMD_NODENAME:-$(hostname -s)}" >>"$_JSD_PLACE"
exec "$@"'
_jsd_end() {
    printf '%s\n' "$2" >"$1/exit.$JOBSPEC_ATTEMPT.tmp" &&
        mv -f "$1/exit.$JOBSPEC_ATTEMPT.tmp" "$1/exit.$JOBSPEC_ATTEMPT"
}
# _jsd_wait PID...: wait for these children; fail if one failed or never ran (empty PID).
_jsd_wait() {
    local p rc=0
    for p in "$@"; do if [ -z "$p" ] || ! wait "$p"; then rc=1; fi; done
    return "$rc"
}
# _jsd_finish PID...: wait for every child; return the first failure's exit code (0 if none).
_jsd_finish() {
    local p s rc=0
    for p in "$@"; do
        if [ -z "$p" ]; then s=1; else wait "$p"; s=$?; fi
        [ "$rc" -ne 0 ] || rc=$s
    done
    return "$rc"
}
# A nested group is a function run in the background: a subshell of this script. Slurm 22.05
# cannot nest allocations: a step cannot hold steps (an inner srun waits for CPUs the outer
# step holds, or with --overlap ignores them), and `sbatch --wait` makes a separate job that
# queues for what this job holds, polls with a 2-8-32 s back-off and outlives a scancel of this
# job. So a nested group's tasks are srun steps of this same allocation.
"""


@dataclass(frozen=True, slots=True)
class _Row:
    """One job (or array element) as one of the status sources reports it."""

    base: str  # the id sbatch printed (the array's id for an element)
    full: str  # "12" or "12_3"
    state: str
    reason: str
    exit_code: int | None
    nodes: str = ""  # the job's node list, for the records and for saying where a node failed
    start: float | None = None  # when it began to run (None while it waits)


_DOWN = ", node down: "  # joins a failed job's node list and the nodes of it that are down


def _name_failed_nodes(env: dict[str, str] | None, rows: list[_Row]) -> list[_Row]:
    """NODE_FAIL rows with the job's nodes that are down now named: which node failed."""
    out = _client(env, ["sinfo", "-h", "-N", "-t", "down,drain,fail", "-o", "%N"])
    down = set(out.stdout.split()) if out and out.returncode == 0 else set()
    if not down:
        return rows
    named = []
    for r in rows:
        if r.state == "NODE_FAIL":
            mine = sorted(down & set(_expand_nodes(env, r.nodes))) if r.nodes else sorted(down)
            if mine:
                r = replace(r, nodes=f"{r.nodes or '?'}{_DOWN}{', '.join(mine)}")
        named.append(r)
    return named


def _expand_nodes(env: dict[str, str] | None, nodelist: str) -> list[str]:
    """``n[1-3]`` -> ``n1 n2 n3``, by Slurm's own parser (``scontrol show hostnames``)."""
    out = _client(env, ["scontrol", "show", "hostnames", nodelist])
    return out.stdout.split() if out and out.returncode == 0 else [nodelist]


def _rows_for(job_id: str, rows: list[_Row]) -> list[_Row]:
    key = "full" if "_" in job_id else "base"
    return [r for r in rows if getattr(r, key) == job_id]


def _combine(rows: list[_Row]) -> JobStatus | None:
    """One status for a job, or for a whole array: terminal only once every element is."""
    if not rows:
        return None
    states = [_STATES.get(r.state, JobState.RUNNING) for r in rows]
    # Where and since when: an array's elements together (a queued one's expected start
    # is no start).
    ran = [r for r, s in zip(rows, states, strict=True) if s is not JobState.QUEUED]
    where = ",".join(dict.fromkeys(n for r in ran if (n := r.nodes.split(_DOWN)[0])
                                   not in ("", "?")))
    starts = [r.start for r in ran if r.start is not None]
    started = min(starts) if starts else None
    if not all(s.terminal for s in states):
        state = JobState.RUNNING if JobState.RUNNING in states else JobState.QUEUED
        return JobStatus(state, None, _info(rows), where, started)
    for wanted in (JobState.FAILED, JobState.TIMEOUT, JobState.CANCELED):
        bad = [r for r, s in zip(rows, states, strict=True) if s is wanted]
        if bad:
            # A job whose node died has no exit code of its own (squeue says 0).
            code = None if bad[0].state == "NODE_FAIL" else bad[0].exit_code
            return JobStatus(wanted, code, _info(rows), where, started)
    return JobStatus(JobState.COMPLETED, 0, _info(rows), where, started)


def _info(rows: list[_Row]) -> str:
    if len(rows) == 1:
        r = rows[0]
        code = f", exit {r.exit_code}" if r.exit_code else ""
        where = f" on {r.nodes}" if r.state == "NODE_FAIL" and r.nodes else ""
        return f"slurm {r.state}" + (f" ({r.reason})" if r.reason not in ("", "None") else "") \
            + where + code
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    return f"array of {len(rows)}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _time(text: str) -> float | None:
    """A Slurm time (``2026-12-03T13:25:35``, in this machine's zone, as every Slurm client
    prints it) in seconds since the epoch; None for ``N/A``, ``Unknown``, ``None``."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def _nodes(text: str) -> str:
    """A node list, "" where Slurm says none was given (``None assigned``, ``(null)``)."""
    text = text.strip()
    return "" if not text or text.startswith(("None", "(null)")) else text


def _wait_status(raw: int) -> int:
    """An exit code from a raw wait status (signals as 128+N, as shells report them)."""
    return raw >> 8 if raw & 0x7F == 0 else 128 + (raw & 0x7F)


def _code(exit_code: str, signal: str) -> int:
    return int(signal) + 128 if int(signal) and not int(exit_code) else int(exit_code)


def _client(env: dict[str, str] | None, argv: list[str]
            ) -> subprocess.CompletedProcess[str] | None:
    """Run a Slurm query command (``env``: another cluster's); None when missing or hung."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=QUERY_TIMEOUT,
                              stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _resource_options(req: ResourceRequest | None, *, per_node: bool) -> list[tuple[str, Any]]:
    """sbatch (per_node) or srun options for a request's counts."""
    if req is None:
        return []
    counts = req.counts
    opts: list[tuple[str, Any]] = []
    if counts.nodes:
        opts.append(("nodes", counts.nodes))
    opts += [("ntasks", counts.slots), ("cpus-per-task", counts.cores_per_slot)]
    if per_node and counts.nodes > 1 and counts.slots % counts.nodes == 0:
        opts.append(("ntasks-per-node", counts.slots // counts.nodes))  # else Slurm may pack
    if counts.gpus_per_slot:
        opts.append(("gpus-per-task", counts.gpus_per_slot))
    if per_node and _exclusive(req.tree):
        opts.append(("exclusive", True))
    return opts


def _has_requires(tree: Resource) -> bool:
    return bool(tree.requires) or any(_has_requires(c) for c in tree.with_)


def _exclusive(tree: Resource) -> bool:
    return bool(tree.exclusive) or any(_exclusive(c) for c in tree.with_)


def _outgrows(counts: Counts, group_req: ResourceRequest | None) -> str | None:
    """Why a child step can never fit in its group's allocation, or None."""
    if group_req is None:
        return None
    g = group_req.counts
    if counts.nodes > max(g.nodes, 1) or counts.cores > g.cores or counts.gpus > g.gpus:
        return f"more than its group's allocation ({group_req.label})"
    return None


def _command(task: Task) -> str:
    """The task's command as one shell-quoted line (a string runs under /bin/sh -c)."""
    if isinstance(task.command, str):
        return shlex.join(["/bin/sh", "-c", task.command])
    return shlex.join(task.command or ("true",))


def _child_folder(task: Task, ctx: UnitContext) -> Path:
    return ctx.children.get(task.key) or ctx.workdir / "children" / task.key


def _child_cwd(task: Task, group: Group, ctx: UnitContext) -> Path:
    if task.attributes.cwd is None or task.attributes.cwd == group.top.attributes.cwd:
        return ctx.cwd
    return ctx.spec.path.parent / Path(task.attributes.cwd).expanduser()


def _watchdog(seconds: float | None) -> list[str]:
    """Lines that end the job as TIMEOUT after ``seconds`` when that is not whole minutes.

    Slurm 22.05 keeps limits in minutes (``--time`` is rounded up) and checks them every 30 s.
    A user may lower the limit of their own job, so the job sets its limit to 0 once its
    duration has passed, and slurmctld ends it as TIMEOUT at its next check. If scontrol fails
    there, the rounded-up --time still applies.
    """
    if seconds is None or seconds % 60 == 0:
        return []
    limit = 'scontrol update JobId="$SLURM_JOB_ID" TimeLimit=0'
    return [f"# duration {seconds:g}s: --time is rounded up to whole minutes, so the job lowers "
            "its own limit then",
            f"setsid /bin/sh -c {shlex.quote(f'sleep {seconds:g} && {limit}')} >/dev/null 2>&1 &",
            "_jsd_watchdog=$!"]


def _slurm_time(seconds: float) -> str:
    """A --time value: whole minutes, rounded up (Slurm's unit), as D-HH:MM:SS past a day."""
    minutes = max(1, math.ceil(seconds / 60))
    if minutes < 24 * 60:
        return str(minutes)
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def _directive(key: str, value: Any) -> str:
    if value is True:
        return f"#SBATCH --{key}"
    text = str(value)
    if '"' in text or "\n" in text:
        # sbatch reads a directive up to the end of the line and has no escape for quotes.
        raise SubmitError(f"cannot pass --{key}={text!r} to sbatch: it contains a quote or "
                          "a newline")
    return f'#SBATCH --{key}="{text}"' if re.search(r"[\s#'\\]", text) else \
        f"#SBATCH --{key}={text}"


def _escape_pattern(path: Path) -> str:
    return str(path).replace("%", "%%")  # sbatch expands %j, %a... in file names


def _option(key: str) -> str:
    return key.replace("_", "-").lower()


def _flat(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _partition(node: Unit) -> str | None:
    value = node.attributes.extra.get("partition")
    return str(value) if value else None


def _kind(node: Unit) -> str:
    return "group" if isinstance(node, Group) else "task"


def _script_path(ctx: UnitContext) -> Path:
    return ctx.workdir / f"job.{ctx.attempt}.sbatch"


def _started_path(ctx: UnitContext) -> Path:
    return ctx.workdir / f"job.{ctx.attempt}.started"
