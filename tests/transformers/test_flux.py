"""The Flux transformer: pinned commands and scripts, option checks, control flow, live runs.

Flux cannot be installed everywhere, so four layers:
1. Golden files (tests/transformers/golden/flux/, rewrite with ``UPDATE_GOLDEN=1``) pin what
   ``describe`` prints for every corpus file and every example, with fixed placeholder paths.
2. Every emitted ``flux submit``/``flux batch`` is parsed with an option table taken from
   ../shared/reference/flux-cli.md (checked against the doc's text), and by
   ``flux submit --dry-run`` where flux exists.
3. A fake ``flux`` command (below) that follows the documented CLI rules (options, ``--cc``
   formatting, ``$`` templates in ``--env``, RFC 36 directives, afterok at submit, ``flux job
   status``/``wait --all``) runs jobs synchronously, so generated scripts really execute; and a
   recording runner checks the control flow (submit, status, cancel, find) without processes.
4. Live tests against ``flux start --test-size=4`` where ``flux`` is on PATH.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from dodo_jobspec.errors import PluginError, SpecError
from dodo_jobspec.spec.model import Group, Spec, Task, Unit
from dodo_jobspec.spec.resolve import load
from dodo_jobspec.transformers import flux_bindings
from dodo_jobspec.transformers.base import (
    JobState,
    JobStatus,
    SubmitError,
    TransformerOptions,
    UnitContext,
)
from dodo_jobspec.transformers.flux import FluxTransformer, f58, job_status
from tests.helpers import REFERENCE, write
from tests.services import FluxInstance, need_service

GOLDEN = Path(__file__).parent / "golden" / "flux"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCES = [("corpus", p) for p in sorted((REFERENCE / "corpus").glob("*.yaml"))] + \
          [("examples", p) for p in sorted(EXAMPLES.glob("*.yaml"))]
FLUX_CLI_DOC = REFERENCE / "flux-cli.md"
STATE = Path("/state")  # placeholder paths: the pinned text must not depend on the machine
WORK = Path("/work")
FAST = TransformerOptions(poll_interval=0.05)


# -- contexts ----------------------------------------------------------------------------------
def context(spec: Spec, unit: Unit, root: Path = STATE, *, cwd: Path = WORK, attempt: int = 1,
            token: str | None = None, after: Sequence[str] = ()) -> UnitContext:
    """The UnitContext the engine would give ``unit``, with state folders under ``root``."""
    kids = {n.key: root / n.key for n in (unit.walk() if isinstance(unit, Group) else ())
            if isinstance(n, Task)}
    work = root / unit.key
    return UnitContext(spec=spec, workdir=work, attempt=attempt,
                       token=token or f"tok-{unit.name}", stdout=work / f"stdout.{attempt}",
                       stderr=work / f"stderr.{attempt}", cwd=cwd, after_jobs=tuple(after),
                       children=kids)


def placeholder_contexts(t: FluxTransformer, spec: Spec) -> Iterator[tuple[Unit, UnitContext]]:
    """Each unit with a fixed context; dependencies get fake ids, as --no-wait would pass."""
    ids: dict[str, str] = {}
    for n, u in enumerate(t.units(spec)):
        ids[u.key] = f58(1_000_000 + n)
        after = list(dict.fromkeys(ids[d.top.key] for d in u.after if d.top.key in ids))
        yield u, context(spec, u, after=after)


def describe_spec(path: Path) -> str:
    t = FluxTransformer()
    try:
        spec = load(path, default_resources=t.default_resources)
    except SpecError as exc:
        return f"error: {exc}\n"
    return "\n\n".join(t.describe(u, ctx) for u, ctx in placeholder_contexts(t, spec)) + "\n"


# -- 1. golden files ---------------------------------------------------------------------------
def test_every_source_is_found_and_has_its_golden_file() -> None:
    """The corpus lives outside the repo (found by glob): if it went missing, its parametrized
    cases here would vanish without a word. Each golden file names its source, so the two
    lists must match: a missing corpus, a moved example or a stale golden file fails here."""
    corpus = [p for f, p in SOURCES if f == "corpus"]
    examples = [p for f, p in SOURCES if f == "examples"]
    assert corpus, f"no corpus files in {REFERENCE / 'corpus'}"
    assert examples, f"no examples in {EXAMPLES}"
    assert any(f == "corpus" for f, _ in LOADABLE), "no corpus file loads"
    assert {g.stem for g in GOLDEN.glob("*.txt")} == {f"{f}__{p.stem}" for f, p in SOURCES}


@pytest.mark.parametrize(("folder", "path"), SOURCES, ids=[f"{f}/{p.stem}" for f, p in SOURCES])
def test_golden(folder: str, path: Path) -> None:
    golden = GOLDEN / f"{folder}__{path.stem}.txt"
    text = describe_spec(path)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    if not golden.exists():
        pytest.fail(f"no golden file {golden}: run UPDATE_GOLDEN=1 pytest {__file__} and "
                    "review the new file")
    assert text == golden.read_text()


# -- 2. options as Flux parses them ------------------------------------------------------------
# (short, long, takes a value) per command, copied from flux-cli.md §1; test_option_table checks
# that every name here appears in that document.
COMMON = [("-t", "--time-limit", True), ("-q", "--queue", True), ("-B", "--bank", True),
          ("", "--job-name", True), ("", "--flags", True), ("", "--cwd", True),
          ("", "--urgency", True), ("", "--env", True), ("", "--env-remove", True),
          ("", "--env-file", True), ("-o", "--setopt", True), ("-S", "--setattr", True),
          ("", "--add-file", True), ("", "--begin-time", True), ("", "--signal", True),
          ("", "--dependency", True), ("", "--output", True), ("", "--error", True),
          ("", "--input", True), ("-u", "--unbuffered", False), ("-l", "--label-io", False),
          ("", "--dry-run", False), ("", "--debug", False), ("-v", "", False),
          ("-N", "--nodes", True), ("-x", "--exclusive", False)]
SUBMIT = [*COMMON, ("-n", "--ntasks", True), ("-c", "--cores-per-task", True),
          ("-g", "--gpus-per-task", True), ("", "--cores", True), ("", "--tasks-per-node", True),
          ("", "--gpus-per-node", True), ("", "--tasks-per-core", True), ("", "--cc", True),
          ("", "--bcc", True), ("", "--quiet", False), ("", "--log", True),
          ("", "--log-stderr", True), ("", "--wait", False), ("", "--wait-event", True),
          ("", "--watch", False), ("", "--progress", False), ("", "--jps", False)]
BATCH = [*COMMON, ("-n", "--nslots", True), ("-c", "--cores-per-slot", True),
         ("-g", "--gpus-per-slot", True), ("", "--conf", True), ("", "--broker-opts", True),
         ("", "--wrap", False), ("", "--dump", True)]
TABLES = {"submit": SUBMIT, "batch": BATCH}


def flux_parser(kind: str) -> argparse.ArgumentParser:
    """An argument parser with flux submit's or flux batch's options (no abbreviations)."""
    p = argparse.ArgumentParser(prog=f"flux {kind}", allow_abbrev=False, add_help=False,
                                exit_on_error=False)
    for short, long, value in TABLES[kind]:
        names = [n for n in (short, long) if n]
        dest = (long or short).strip("-").replace("-", "_")
        p.add_argument(*names, dest=dest, action="append" if value else "store_true")
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def parse_flux(argv: Sequence[str]) -> tuple[str, argparse.Namespace]:
    """Parse ``flux submit|batch ...`` as Flux does; fail the test on an unknown option."""
    assert argv[0] == "flux" and argv[1] in TABLES, argv
    try:
        ns = flux_parser(argv[1]).parse_args(argv[2:])
    except (argparse.ArgumentError, SystemExit) as exc:
        raise AssertionError(f"flux {argv[1]} would reject {shlex.join(argv)}: {exc}") from exc
    return argv[1], ns


def emitted(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(argv, expected command) of every submission, and the directive lines of every script."""
    t = FluxTransformer()
    spec = load(path, default_resources=t.default_resources)
    for u, ctx in placeholder_contexts(t, spec):
        for job in t.jobs(u, ctx):
            yield job.argv(), list(job.command)
        if isinstance(u, Group):
            for text in t.scripts(u, ctx).values():
                yield from script_submissions(text)


def script_submissions(text: str) -> Iterator[tuple[list[str], list[str]]]:
    """The ``flux submit``/``flux batch`` lines of a generated script, parsed by shlex."""
    joined = text.replace("\\\n", " ")
    for m in re.finditer(r"\$\((flux (?:submit|batch) .*?)\) \|\| jd_failed=1", joined, re.S):
        for one in m.group(1).split(" &&\n"):
            argv = [a for a in shlex.split(one) if a != "${deps[@]}"]
            yield argv, []
    directives = [shlex.split(ln.split(":", 1)[1]) for ln in text.splitlines()
                  if ln.startswith("# flux:")]
    if directives:
        yield ["flux", "batch", *[a for d in directives for a in d], "script"], ["script"]


LOADABLE = [(f, p) for f, p in SOURCES if not describe_spec(p).startswith("error:")]


def test_option_table_matches_flux_cli_doc() -> None:
    doc = FLUX_CLI_DOC.read_text()
    for short, long, _value in SUBMIT + BATCH:
        for name in (short, long):
            if name:
                assert re.search(rf"`{re.escape(name)}\b|{re.escape(name)}[,= `]", doc), name


@pytest.mark.parametrize(("folder", "path"), LOADABLE,
                         ids=[f"{f}/{p.stem}" for f, p in LOADABLE])
def test_emitted_options_parse(folder: str, path: Path) -> None:
    for argv, command in emitted(path):
        kind, ns = parse_flux(argv)
        if command:
            assert ns.command == command, argv
        assert ns.command, f"no command after the options: {argv}"
        if kind == "batch":
            assert not ns.command[0].startswith("-")


def test_options_of_a_spec_using_every_feature_parse(tmp_path: Path) -> None:
    for argv, command in emitted(write(tmp_path, MIXED)):
        _kind, ns = parse_flux(argv)
        assert not command or ns.command == command


@pytest.mark.parametrize(("folder", "path"), LOADABLE,
                         ids=[f"{f}/{p.stem}" for f, p in LOADABLE])
def test_flux_dry_run_accepts_emitted_commands(folder: str, path: Path, tmp_path: Path,
                                               flux: FluxInstance) -> None:
    t = FluxTransformer()
    spec = load(path, default_resources=t.default_resources)
    for u, ctx in placeholder_contexts(t, spec):
        ctx = context(spec, u, tmp_path / "state", cwd=tmp_path)
        if isinstance(u, Group):
            for p, text in t.scripts(u, ctx).items():
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
        for job in t.jobs(u, ctx):
            argv = job.argv()
            proc = subprocess.run([*argv[:2], "--dry-run", *argv[2:]], capture_output=True,
                                  text=True, check=False)
            assert proc.returncode == 0, proc.stderr
            jobspec = json.loads(proc.stdout)
            assert jobspec["attributes"]["system"]["job"]["name"] == u.name


# -- quoting -----------------------------------------------------------------------------------
MIXED = """
version: 1
name: mixed
resources:
  one: {type: node, count: 1, with: [{type: core, count: 1}]}
groups:
- name: g
  resources: one
  attributes:
    duration: 10m
    environment: {GREETING: "hi $USER", BS: 'a\\b'}
  tasks:
  - name: a
    command: [bash, -c, "echo a; echo b"]
    attributes: {duration: 1m, tags: {team: x}}
  - name: b
    depends_on: [a]
    replicas: 3
    command: "echo ${JOBSPEC_REPLICA} {x} $GREETING"
  - name: prep
    local: true
    command: |
      echo one
      # flux: -N 99
      echo two
  - name: c
    depends_on: [b]
    replicas: 2
    command: [sh, -c, 'echo c$JOBSPEC_REPLICA']
    attributes: {tier: gold}
  - group: inner
- name: inner
  tasks:
  - name: d
    command: [echo, d]
tasks:
- group: g
"""


def mixed_spec(folder: Path) -> Spec:
    return load(write(folder, MIXED), default_resources=FluxTransformer.default_resources)


def group_script(spec: Spec, root: Path = STATE, cwd: Path = WORK) -> str:
    t = FluxTransformer()
    g = spec.nodes["group/g"]
    return t.render(g, context(spec, g, root, cwd=cwd))


def test_quoting_survives_bash_and_shlex(tmp_path: Path) -> None:
    spec = mixed_spec(tmp_path)
    script = group_script(spec)
    check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True,
                           check=False)
    assert check.returncode == 0, check.stderr
    commands = [argv for argv, _ in script_submissions(script)]
    a = next(argv for argv in commands if "--job-name=a" in argv)
    assert a[-3:] == ["bash", "-c", "echo a; echo b"]
    assert "'echo a; echo b'" in script  # quoted, not joined bare as compspec did


def test_a_directive_lookalike_inside_a_command_stays_on_one_line(tmp_path: Path) -> None:
    script = group_script(mixed_spec(tmp_path))
    lines = script.splitlines()
    body = lines[[i for i, ln in enumerate(lines) if ln.startswith("# flux:")][-1] + 1:]
    assert not [ln for ln in body if re.match(r"^([^\w]*)((?:flux|FLUX):)", ln)]
    assert "$'echo one\\n# flux: -N 99\\necho two\\n'" in script


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck(tmp_path: Path) -> None:
    spec = mixed_spec(tmp_path)
    t = FluxTransformer()
    g = spec.nodes["group/g"]
    for text in t.scripts(g, context(spec, g)).values():
        proc = subprocess.run(["shellcheck", "-s", "bash", "-S", "warning", "-"], input=text,
                              text=True, capture_output=True, check=False)
        assert proc.returncode == 0, proc.stdout


# -- 3a. control flow with a recording runner --------------------------------------------------
class Recorder:
    """A runner that records argv and answers from a table of (argv prefix -> reply)."""

    def __init__(self, replies: dict[tuple[str, ...], tuple[int, str, str]] | None = None):
        self.calls: list[list[str]] = []
        self.replies = dict(replies or {})

    def __call__(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        best = max((k for k in self.replies if tuple(argv[:len(k)]) == k), key=len,
                   default=None)
        return self.replies[best] if best is not None else (0, "", "")


def cli(runner: Recorder) -> FluxTransformer:
    t = FluxTransformer(FAST)
    t.runner = runner
    t.use_api = False
    return t


HELLO = """
version: 1
tasks:
- name: one
  command: [echo, one]
- name: many
  replicas: 3
  command: [echo, many]
- name: braces
  replicas: 2
  command: "echo ${HOME}"
"""


def hello(tmp_path: Path) -> Spec:
    return load(write(tmp_path, HELLO), default_resources=FluxTransformer.default_resources)


def test_submit_returns_the_printed_id_in_ascii(tmp_path: Path) -> None:
    rec = Recorder({("flux", "submit"): (0, "\u0192M7Zq9AKHno\n", "")})
    t, spec = cli(rec), hello(tmp_path)
    u = spec.nodes["task/one"]
    ctx = context(spec, u, tmp_path / "state")
    assert t.submit(u, ctx) == "fM7Zq9AKHno"
    assert rec.calls == [t.command(u, ctx)]
    assert f"--setattr=user.jobspec_do.token={ctx.token}" in rec.calls[0]


def test_replicas_are_one_cc_submission(tmp_path: Path) -> None:
    rec = Recorder({("flux", "submit"): (0, "fA1\nfA2\nfA3\n", "")})
    t, spec = cli(rec), hello(tmp_path)
    u = spec.nodes["task/many"]
    ctx = context(spec, u, tmp_path / "state")
    assert t.submit(u, ctx) == "fA1,fA2,fA3"
    argv = rec.calls[0]
    assert "--cc=0-2" in argv and "--env=JOBSPEC_REPLICA={cc}" in argv
    assert f"--output={ctx.stdout}.{{cc}}" in argv


def test_replicas_with_braces_are_submitted_one_by_one(tmp_path: Path) -> None:
    rec = Recorder({("flux", "submit"): (0, "fB1\n", "")})
    t, spec = cli(rec), hello(tmp_path)
    u = spec.nodes["task/braces"]
    t.submit(u, context(spec, u, tmp_path / "state"))
    assert len(rec.calls) == 2
    assert all(not any(a.startswith("--cc") for a in c) for c in rec.calls)
    assert "--env=JOBSPEC_REPLICA=0" in rec.calls[0]
    assert "--env=JOBSPEC_REPLICA=1" in rec.calls[1]
    assert rec.calls[1][-1] == "echo ${HOME}"  # kept as written


def test_submit_error_names_the_task_and_an_already_failed_dependency(tmp_path: Path) -> None:
    err = "[Errno 22] dependency: afterok: job fTs9zBR failed or was canceled\n"
    rec = Recorder({("flux", "submit"): (1, "", err)})
    t, spec = cli(rec), hello(tmp_path)
    u = spec.nodes["task/one"]
    with pytest.raises(SubmitError) as exc:
        t.submit(u, context(spec, u, tmp_path / "state", after=["fTs9zBR"]))
    assert "task/one" in str(exc.value) and "already failed" in str(exc.value)
    assert "--dependency=afterok:fTs9zBR" in rec.calls[0]


def test_a_missing_flux_is_a_clear_transient_error(tmp_path: Path) -> None:
    t, spec = cli(Recorder({("flux",): (127, "", "flux: not found on PATH")})), hello(tmp_path)
    u = spec.nodes["task/one"]
    with pytest.raises(SubmitError) as exc:
        t.submit(u, context(spec, u, tmp_path / "state"))
    assert exc.value.transient


# `flux jobs --json` objects shaped as flux-facts.md describes them.
def jobs_json(*jobs: dict[str, Any]) -> str:
    return json.dumps({"jobs": list(jobs)})


def fj(jid: int, status: str, state: str, result: str | None = None, rc: int | None = None,
       exc: str | None = None, note: str = "") -> dict[str, Any]:
    job: dict[str, Any] = {"id": jid, "jobid": f58(jid).replace("f", "\u0192", 1),
                           "status": status, "state": state}
    if result:
        job.update(result=result, returncode=rc, success=result == "COMPLETED")
    job["exception"] = {"occurred": exc is not None, "severity": 0 if exc else None,
                        "type": exc or "", "note": note}
    return job


STATES = [
    (fj(1, "DEPEND", "DEPEND"), JobState.QUEUED, None),
    (fj(2, "PRIORITY", "PRIORITY"), JobState.QUEUED, None),
    (fj(3, "SCHED", "SCHED"), JobState.QUEUED, None),
    (fj(4, "RUN", "RUN"), JobState.RUNNING, None),
    (fj(5, "CLEANUP", "CLEANUP"), JobState.RUNNING, None),
    (fj(6, "COMPLETED", "INACTIVE", "COMPLETED", 0), JobState.COMPLETED, 0),
    (fj(7, "FAILED", "INACTIVE", "FAILED", 3), JobState.FAILED, 3),
    (fj(8, "FAILED", "INACTIVE", "FAILED", 127, "exec",
        "task 0 (host vm): start failed: nosuchcommand-xyz: No such file or directory"),
     JobState.FAILED, 127),
    (fj(9, "TIMEOUT", "INACTIVE", "TIMEOUT", 142, "timeout", "resource allocation expired"),
     JobState.TIMEOUT, 142),
    (fj(10, "CANCELED", "INACTIVE", "CANCELED", 143, "cancel"), JobState.CANCELED, 143),
    (fj(11, "FAILED", "INACTIVE", "FAILED", 1, "dependency",
        "dependency after-success=\u0192X can never be satisfied"), JobState.CANCELED, 1),
]


@pytest.mark.parametrize(("job", "state", "code"), STATES,
                         ids=[f"{j['status']}-{j['id']}" for j, _, _ in STATES])
def test_status_maps_each_flux_state(job: dict[str, Any], state: JobState,
                                     code: int | None) -> None:
    jid = f58(job["id"])
    rec = Recorder({("flux", "jobs"): (0, json.dumps(job), "")})  # one id: a single object
    st = cli(rec).status([jid])[jid]
    assert (st.state, st.exit_code) == (state, code)
    assert rec.calls == [["flux", "jobs", "--json", jid]]
    if job["exception"]["type"] == "dependency":
        assert "never ran" in st.info and "can never be satisfied" in st.info


def test_status_of_many_ids_is_one_query_and_unknown_is_lost() -> None:
    a, b, gone = f58(6), f58(7), f58(99)
    out = jobs_json(STATES[5][0], STATES[6][0])
    rec = Recorder({("flux", "jobs"): (0, out, f"JobID {gone} unknown\n")})
    got = cli(rec).status([a, b, gone])
    assert [got[a].state, got[b].state, got[gone].state] == \
        [JobState.COMPLETED, JobState.FAILED, JobState.LOST]
    assert len(rec.calls) == 1


def test_status_of_replicas_combines_them() -> None:
    ids = [f58(i) for i in (6, 7, 4)]
    out = jobs_json(STATES[5][0], STATES[6][0], STATES[3][0])
    t = cli(Recorder({("flux", "jobs"): (0, out, "")}))
    running = ",".join(ids)
    done = ",".join(ids[:2])
    got = t.status([running, done])
    assert got[running].state is JobState.RUNNING
    assert (got[done].state, got[done].exit_code) == (JobState.FAILED, 3)
    assert "1 of 2 replicas" in got[done].info


def test_status_raises_when_flux_cannot_be_asked() -> None:
    t = cli(Recorder({("flux", "jobs"): (1, "", "flux-jobs: Unable to connect to Flux")}))
    with pytest.raises(PluginError):
        t.status([f58(6)])


def test_status_accepts_numeric_states_and_results() -> None:
    st = job_status({"id": 1, "state": 64, "result": 8, "returncode": 142})
    assert st.state is JobState.TIMEOUT
    assert job_status({"id": 1, "state": 8}).state is JobState.QUEUED


def test_status_says_where_and_since_when_a_job_runs() -> None:
    """nodelist and ranks (a test instance's brokers share one host name), t_run; nothing of
    the kind while the job waits, or for one cancelled before it had resources."""
    st = job_status({"id": 1, "state": "RUN", "nodelist": "vm", "ranks": "2", "t_run": 5.5})
    assert (st.state, st.where, st.started) == (JobState.RUNNING, "vm (rank 2)", 5.5)
    st = job_status({"id": 1, "state": "INACTIVE", "result": "COMPLETED", "returncode": 0,
                     "nodelist": "n[1-2]", "ranks": "[0-1]", "t_run": 7.0})
    assert (st.state, st.where, st.started) == (JobState.COMPLETED, "n[1-2] (ranks 0-1)", 7.0)
    st = job_status({"id": 1, "state": "INACTIVE", "result": "CANCELED", "t_run": 0.0})
    assert (st.state, st.where, st.started) == (JobState.CANCELED, "", None)
    assert job_status({"id": 1, "state": "SCHED", "t_run": 0.0}).where == ""


def test_cancel_issues_flux_cancel_for_every_job() -> None:
    rec = Recorder()
    cli(rec).cancel(["fA1,fA2", "fB"])
    assert rec.calls == [["flux", "cancel", "fA1", "fA2", "fB"]]


def test_cancel_of_a_finished_job_is_quiet_and_other_errors_are_not() -> None:
    cli(Recorder({("flux", "cancel"): (1, "", "flux-cancel: fA: job is inactive")})).cancel(
        ["fA"])
    with pytest.raises(PluginError):
        cli(Recorder({("flux", "cancel"): (1, "", "Unable to connect")})).cancel(["fA"])


def jobspec_with(token: str) -> str:
    return json.dumps({"attributes": {"system": {"duration": 0},
                                      "user": {"jobspec_do": {"token": token}}}})


def test_find_returns_the_job_with_the_matching_token(tmp_path: Path) -> None:
    spec = hello(tmp_path)
    u = spec.nodes["task/one"]
    ctx = context(spec, u, tmp_path / "state", token="tok-right")
    listing = jobs_json(fj(30, "RUN", "RUN"), fj(20, "COMPLETED", "INACTIVE", "COMPLETED", 0))
    rec = Recorder({("flux", "jobs"): (0, listing, ""),
                    ("flux", "job", "info", f58(30)): (0, jobspec_with("tok-other"), ""),
                    ("flux", "job", "info", f58(20)): (0, jobspec_with("tok-right"), "")})
    assert cli(rec).find(u, ctx) == f58(20)
    assert rec.calls[0] == ["flux", "jobs", "-a", "--name=one", "--json"]
    assert ["flux", "job", "info", f58(20), "jobspec"] in rec.calls


def test_find_returns_none_without_a_match_and_cancels_partial_replicas(tmp_path: Path) -> None:
    spec = hello(tmp_path)
    one, many = spec.nodes["task/one"], spec.nodes["task/many"]
    listing = jobs_json(fj(40, "RUN", "RUN"))
    rec = Recorder({("flux", "jobs"): (0, listing, ""),
                    ("flux", "job", "info"): (0, jobspec_with("tok-x"), "")})
    assert cli(rec).find(one, context(spec, one, token="tok-y")) is None
    rec.calls.clear()
    assert cli(rec).find(many, context(spec, many, token="tok-x")) is None  # 1 of 3 found
    assert ["flux", "cancel", f58(40)] in rec.calls


def test_resubmit_is_not_needed_after_a_crash(tmp_path: Path) -> None:
    """submit -> (crash before the id is recorded) -> find -> poll: one submission only."""
    spec = hello(tmp_path)
    u = spec.nodes["task/one"]
    ctx = context(spec, u, tmp_path / "state", token="tok-crash")
    done = fj(50, "COMPLETED", "INACTIVE", "COMPLETED", 0)
    rec = Recorder({("flux", "submit"): (0, f"{f58(50)}\n", ""),
                    ("flux", "jobs", "-a"): (0, jobs_json(done), ""),
                    ("flux", "job", "info"): (0, jobspec_with("tok-crash"), ""),
                    ("flux", "jobs", "--json"): (0, json.dumps(done), "")})
    t = cli(rec)
    t.submit(u, ctx)
    found = cli(rec).find(u, ctx)  # a new process: nothing in memory
    assert found == f58(50)
    assert t.wait(found).state is JobState.COMPLETED
    assert sum(c[:2] == ["flux", "submit"] for c in rec.calls) == 1


def test_choose_takes_the_first_alternative_and_says_so(tmp_path: Path) -> None:
    spec = load(REFERENCE / "corpus" / "machine-learning.yaml",
                default_resources=FluxTransformer.default_resources)
    train = spec.nodes["group/train"]
    req, why = FluxTransformer().choose(train)
    assert req is not None and req.name == "mummi-gpu" and "first of 2" in why
    req, why = FluxTransformer(TransformerOptions(resources_choice=1)).choose(train)
    assert req is not None and req.name == "mummi-cpu" and "--resources-choice" in why
    g = spec.nodes["group/mini-mummi"]
    assert "first of 2 alternatives" in FluxTransformer().describe(g, context(spec, g))


def test_requires_ride_along_as_user_attributes(tmp_path: Path) -> None:
    spec = load(REFERENCE / "corpus" / "jobspec-spack-subystem-satisfied.yaml",
                default_resources=FluxTransformer.default_resources)
    u = spec.nodes["task/task-1"]
    argv = FluxTransformer().command(u, context(spec, u))
    attr = next(a for a in argv if a.startswith("--setattr=user.requires="))
    data = json.loads(attr.split("=", 2)[2])
    assert data["groups"][0]["name"] == "spack-software"
    assert data["resources"] == [{"name": "system", "field": "cpu.target", "value": "amd64"}]


def test_cores_are_per_slot_not_the_task_count() -> None:
    spec = load(REFERENCE / "corpus" / "hello-world-jobspec.yaml",
                default_resources=FluxTransformer.default_resources)
    u = spec.nodes["task/task-1"]
    _, ns = parse_flux(FluxTransformer().command(u, context(spec, u)))
    assert (ns.nodes, ns.ntasks, ns.cores_per_task) == (["1"], ["1"], ["4"])


def test_attributes_map_to_flux_options(tmp_path: Path) -> None:
    spec = load(write(tmp_path, """
        version: 1
        tasks:
        - name: t
          command: [app]
          attributes:
            duration: 90s
            cwd: sub
            watch: true
            environment: {PRICE: "$5", PLAIN: x}
            queue: debug
            custom: [1, 2]
        """), default_resources=FluxTransformer.default_resources)
    u = spec.nodes["task/t"]
    _, ns = parse_flux(FluxTransformer().command(u, context(spec, u)))
    assert ns.time_limit == ["90s"] and ns.watch
    assert "PRICE=$$5" in ns.env and "PLAIN=x" in ns.env  # $ escaped for Flux's templates
    assert "system.queue=debug" in ns.setattr and "user.custom=[1,2]" in ns.setattr


# -- what the instance can never run ----------------------------------------------------------
R_2X4 = json.dumps({"version": 1, "execution": {"R_lite": [
    {"rank": "0-1", "children": {"core": "0-3", "gpu": "0"}}]}})


def instance(queues: str = "{}") -> Recorder:
    return Recorder({("flux", "resource", "R"): (0, R_2X4, ""),
                     ("flux", "config", "get"): (0, queues, "")})


def test_check_refuses_queues_and_requests_the_instance_lacks(tmp_path: Path) -> None:
    spec = load(write(tmp_path, """
        version: 1
        resources:
          three-nodes: {type: node, count: 3}
          wide: {type: slot, count: 1, with: [{type: core, count: 5}]}
          gpus: {type: slot, count: 1, with: [{type: core, count: 1}, {type: gpu, count: 2}]}
          fits: {type: node, count: 2, with: [{type: core, count: 4}]}
        tasks:
        - {name: q, command: [x], attributes: {queue: bach}}
        - {name: n, command: [x], resources: three-nodes}
        - {name: c, command: [x], resources: wide}
        - {name: g, command: [x], resources: gpus}
        - {name: ok, command: [x], resources: fits, attributes: {queue: batch}}
        - {name: here, command: [x], local: true, attributes: {queue: nowhere}}
        """), default_resources=FluxTransformer.default_resources)
    t = cli(instance('{"batch": {}, "debug": {}}'))
    found = {p.message.split("'")[1]: p for p in t.check(spec)}
    assert sorted(found) == ["c", "g", "n", "q"]
    assert "queue 'bach'" in found["q"].message and "'batch', 'debug'" in found["q"].message
    assert found["q"].hint == "did you mean 'batch'?"
    assert found["q"].path == ("tasks[0]", "attributes", "queue")
    assert "3 nodes asked, the instance has 2" in found["n"].message
    assert "5 cores per slot asked, the largest node has 4" in found["c"].message
    assert "2 gpus per slot asked, the most on one node is 1" in found["g"].message
    assert t.runner.calls.count(["flux", "resource", "R"]) == 1  # asked once


def test_check_says_a_test_instance_has_no_queues_and_skips_when_flux_does_not_answer(
        tmp_path: Path) -> None:
    spec = load(write(tmp_path, """
        version: 1
        tasks: [{name: q, command: [x], attributes: {queue: pdebug}}]
        """), default_resources=FluxTransformer.default_resources)
    [problem] = cli(instance()).check(spec)
    assert "it has no queues configured" in problem.message
    down = Recorder({("flux",): (1, "", "flux-config: Unable to connect to Flux")})
    assert cli(down).check(spec) == []


# -- the Python API path -----------------------------------------------------------------------
class FakeJobspec:
    """Records how flux.job.JobspecV1 is built, as a plain dict."""

    def __init__(self, **data: Any) -> None:
        self.data = data
        self.attrs: dict[str, Any] = {}
        self.shell: dict[str, Any] = {}

    @classmethod
    def from_command(cls, command: list[str], **kw: Any) -> FakeJobspec:
        return cls(kind="submit", command=command, **kw)

    @classmethod
    def from_batch_command(cls, **kw: Any) -> FakeJobspec:
        return cls(kind="batch", **kw)

    def setattr(self, key: str, value: Any) -> None:
        self.attrs[key] = value

    def setattr_shell_option(self, key: str, value: Any) -> None:
        self.shell[key] = value


class FakeFluxModule:
    def __init__(self) -> None:
        self.submitted: list[tuple[FakeJobspec, bool]] = []
        self.job = self
        self.JobspecV1 = FakeJobspec

    def Flux(self) -> object:
        return object()

    def submit(self, handle: object, js: FakeJobspec, waitable: bool = False) -> str:
        self.submitted.append((js, waitable))
        return "\u0192" + f58(100 + len(self.submitted))[1:]

    def submit_async(self, handle: object, js: FakeJobspec,
                     waitable: bool = False) -> FakeFuture:
        return FakeFuture(self.submit(handle, js, waitable))


class FakeFuture:
    def __init__(self, jid: str) -> None:
        self.jid = jid

    def get_id(self) -> str:
        return self.jid


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeFluxModule:
    mod = FakeFluxModule()
    monkeypatch.setitem(sys.modules, "flux", mod)
    monkeypatch.setitem(sys.modules, "flux.job", mod)
    monkeypatch.setenv("FLUX_URI", "local:///tmp/fake")
    return mod


def cli_view(argv: list[str]) -> dict[str, Any]:
    """What flux submit/batch puts into the jobspec for ``argv`` (flux/cli/base.py rules)."""
    kind, ns = parse_flux(argv)
    env = {k: v.replace("$$", "$") for k, v in (r.split("=", 1) for r in ns.env or [])}
    attrs = {}
    for kv in ns.setattr or []:
        key, val = kv.split("=", 1)
        try:
            attrs[key] = json.loads(val)
        except ValueError:
            attrs[key] = val
    last = {k: (v[-1] if isinstance(v, list) else v) for k, v in vars(ns).items()}
    n = int(last["ntasks" if kind == "submit" else "nslots"])
    return {"n": n, "c": int(last["cores_per_task" if kind == "submit" else "cores_per_slot"]),
            "N": int(last["nodes"]) if last["nodes"] else None, "x": bool(last["exclusive"]),
            "cwd": last["cwd"], "name": last["job_name"], "out": last["output"],
            "err": last["error"], "env": env, "attrs": attrs,
            "deps": [d.split(":", 1)[1] for d in ns.dependency or []]}


def api_view(js: FakeJobspec) -> dict[str, Any]:
    d = js.data
    n = d.get("num_tasks", d.get("num_slots"))
    c = d.get("cores_per_task", d.get("cores_per_slot"))
    deps = [x["value"] for x in js.attrs.pop("system.dependencies", [])]
    return {"n": n, "c": c, "N": d["num_nodes"], "x": d["exclusive"], "cwd": js.cwd,
            "name": js.attrs.pop("system.job.name"), "out": js.stdout, "err": js.stderr,
            "env": {k: v for k, v in js.environment.items() if os.environ.get(k) != v},
            "attrs": js.attrs, "deps": deps}


def test_python_api_builds_the_jobspec_the_cli_would(tmp_path: Path,
                                                      fake_api: FakeFluxModule) -> None:
    spec = load(write(tmp_path, """
        version: 1
        resources:
          r: {type: node, count: 2, with: [{type: slot, count: 2, with: [{type: core, count: 3}]}]}
        tasks:
        - name: t
          resources: r
          command: [app, "--x={y}"]
          attributes: {duration: 5m, environment: {A: "1"}, queue: q}
        """), default_resources=FluxTransformer.default_resources)
    u = spec.nodes["task/t"]
    ctx = context(spec, u, tmp_path / "state", after=["fDEP"])
    t = FluxTransformer(FAST)
    t.runner = Recorder()  # must not be used
    assert t.submit(u, ctx) == "f" + f58(101)[1:]
    js, waitable = fake_api.submitted[0]
    assert not waitable and t.runner.calls == []
    assert js.data["command"] == ["app", "--x={y}"] and js.duration == 300.0
    assert api_view(js) == cli_view(t.command(u, ctx))


def test_python_api_submits_replicas_like_cc(tmp_path: Path, fake_api: FakeFluxModule) -> None:
    spec = hello(tmp_path)
    u = spec.nodes["task/many"]
    ctx = context(spec, u, tmp_path / "state")
    t = FluxTransformer(FAST)
    ids = t.submit(u, ctx).split(",")
    assert len(ids) == 3
    envs = [js.environment for js, _ in fake_api.submitted]
    assert [(e["JOBSPEC_REPLICA"], e["FLUX_JOB_CC"]) for e in envs] == \
        [("0", "0"), ("1", "1"), ("2", "2")]
    assert [js.stdout for js, _ in fake_api.submitted] == [f"{ctx.stdout}.{i}" for i in range(3)]


def test_python_api_submits_a_group_with_its_script(tmp_path: Path,
                                                    fake_api: FakeFluxModule) -> None:
    spec = mixed_spec(tmp_path)
    g = spec.nodes["group/g"]
    ctx = context(spec, g, tmp_path / "state")
    FluxTransformer(FAST).submit(g, ctx)
    js, _ = fake_api.submitted[0]
    assert js.data["kind"] == "batch" and js.data["script"].startswith("#!/bin/bash")
    assert js.data["script"] == (ctx.workdir / "job.1.flux").read_text()
    assert js.duration == 600.0 and js.environment["GREETING"] == "hi $USER"


def test_submit_many_sends_every_jobspec_before_awaiting_any_id(
        tmp_path: Path, fake_api: FakeFluxModule, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    sent = fake_api.submit_async

    def submit_async(handle: object, js: FakeJobspec, waitable: bool = False) -> FakeFuture:
        events.append("sent")
        future = sent(handle, js, waitable)
        monkeypatch.setattr(future, "get_id", lambda: events.append("got") or future.jid)
        return future

    monkeypatch.setattr(fake_api, "submit_async", submit_async)
    spec = hello(tmp_path)
    items = [(u, context(spec, u, tmp_path / "state")) for u in FluxTransformer().units(spec)]
    ids = FluxTransformer(FAST).submit_many(items)
    replicas = sum(u.replicas for u, _ in items)
    assert events == ["sent"] * replicas + ["got"] * replicas
    assert [len(str(i).split(",")) for i in ids] == [u.replicas for u, _ in items]


# -- 3b. generated scripts, run for real by a fake flux ----------------------------------------
FAKE_FLUX = r'''
import argparse, fcntl, json, os, re, shlex, string, subprocess, sys, time
from collections import ChainMap

STATE = os.environ["FAKE_FLUX_STATE"]
TABLES = json.loads(os.environ["FAKE_FLUX_TABLES"])
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
INSTANCE = os.environ.get("FAKE_FLUX_INSTANCE", "0")


def f58(n):
    s = ""
    while True:
        n, r = divmod(n, 58)
        s = ALPHABET[r] + s
        if n == 0:
            return "\u0192" + s


def to_int(jid):
    jid = jid.strip()
    if jid[:1] in ("\u0192", "f"):
        v = 0
        for ch in jid[1:]:
            v = v * 58 + ALPHABET.index(ch)
        return v
    return int(jid)


class Db:
    def __enter__(self):
        self.lock = open(os.path.join(STATE, "lock"), "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        path = os.path.join(STATE, "jobs.json")
        self.jobs = json.load(open(path)) if os.path.exists(path) else {}
        return self

    def __exit__(self, *exc):
        with open(os.path.join(STATE, "jobs.json"), "w") as f:
            json.dump(self.jobs, f)
        self.lock.close()


def log(argv):
    with open(os.path.join(STATE, "calls.jsonl"), "a") as f:
        f.write(json.dumps(argv) + "\n")


def parser(kind):
    p = argparse.ArgumentParser(prog="flux " + kind, allow_abbrev=False)
    for short, long, value in TABLES[kind]:
        names = [n for n in (short, long) if n]
        dest = (long or short).strip("-").replace("-", "_")
        p.add_argument(*names, dest=dest, action="append" if value else "store_true")
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def last(v, default=None):
    return v[-1] if v else default


def directives(path):
    """RFC 36 as flux batch reads it: one sentinel, no directive after the first code line."""
    args, started, disabled, prefix = [], False, False, None
    for n, line in enumerate(open(path), 1):
        m = re.match(r"^([^\w]*)((?:flux|FLUX):)(.*)$", line)
        if not m:
            if started and not disabled and line.strip() and not line.startswith(
                    prefix.rstrip()):
                disabled = True
            continue
        if disabled:
            sys.exit(f"flux-batch: line {n}: orphan 'flux:' detected")
        started, prefix = True, m.group(1)
        lexer = shlex.shlex(m.group(3), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.escapedquotes = "\"'"
        args += list(lexer)
    return args


def attributes(setattrs):
    out = {"system": {}, "user": {}}
    for kv in setattrs or []:
        key, _, val = kv.partition("=")
        try:
            val = json.loads(val)
        except ValueError:
            pass
        if not key.startswith(("user.", "system.")):
            key = "system." + key
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = val
    return out


def fsd(text):
    m = re.match(r"^([0-9.]+)([smhd]?)$", text)
    mult = {"": 60, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * mult


def check_deps(deps):
    for d in deps or []:
        scheme, _, target = d.partition(":")
        with Db() as db:
            job = db.jobs.get(str(to_int(target)))
        if job is None:
            sys.exit(f"[Errno 22] dependency: {scheme}: id {target}: job not found")
        if job["result"] != "COMPLETED":
            sys.exit(f"[Errno 22] dependency: {scheme}: job {target} failed or was canceled")


def run(kind, ns, command, env_extra):
    env = dict(os.environ)
    for rule in ns.env or []:
        k, _, v = rule.partition("=")
        env[k] = string.Template(v).substitute(ChainMap(env, os.environ))
    env.update(env_extra)
    with Db() as db:
        jid = len(db.jobs) + 1000
        db.jobs[str(jid)] = {"id": jid, "state": "RUN", "status": "RUN", "result": "",
                             "name": last(ns.job_name, os.path.basename(command[0])),
                             "waitable": "waitable" in ",".join(ns.flags or []),
                             "instance": INSTANCE, "waited": False,
                             "attributes": attributes(ns.setattr), "exception": {}}
    if kind == "batch":
        env["FAKE_FLUX_INSTANCE"] = str(jid)
    out = last(ns.output) or os.devnull
    err = last(ns.error) or out
    limit = fsd(last(ns.time_limit)) if ns.time_limit else None
    exc = {}
    try:
        with open(out, "a") as o, open(err, "a") as e:
            proc = subprocess.run(command, cwd=last(ns.cwd), env=env, stdout=o, stderr=e,
                                  timeout=limit)
        rc = proc.returncode
        result = "COMPLETED" if rc == 0 else "FAILED"
    except subprocess.TimeoutExpired:
        rc, result, exc = 142, "TIMEOUT", {"occurred": True, "type": "timeout"}
    except (FileNotFoundError, NotADirectoryError, PermissionError) as x:
        rc, result, exc = 127, "FAILED", {"occurred": True, "type": "exec", "note": str(x)}
    with Db() as db:
        db.jobs[str(jid)].update(state="INACTIVE", status=result, result=result,
                                 returncode=rc, exception=exc)
    return jid, rc


def submit(argv):
    ns = parser("submit").parse_args(argv)
    copies = [None]
    if ns.cc:
        lo, _, hi = last(ns.cc).partition("-")
        copies = list(range(int(lo), int(hi or lo) + 1))
    check_deps(ns.dependency)
    rcs = []
    for cc in copies:
        one, command = ns, ns.command
        if cc is not None:  # flux formats the command and most options with cc=N
            try:
                command = [a.format(cc=cc) for a in ns.command]
                one = argparse.Namespace(**{
                    k: [x.format(cc=cc) for x in v] if isinstance(v, list) and k != "command"
                    else v for k, v in vars(ns).items()})
            except (KeyError, IndexError, ValueError):
                sys.exit(f"flux-submit: Invalid replacement string in command: {ns.command}")
        jid, rc = run("submit", one, command, {"FLUX_JOB_CC": str(cc)} if cc is not None else {})
        print(f58(jid), flush=True)
        rcs.append(rc)
    return max(rcs) if ns.watch else 0


def batch(argv):
    ns = parser("batch").parse_args(argv)
    script = ns.command[0]
    ns = parser("batch").parse_args(directives(script) + argv)
    assert ns.nslots or ns.nodes, "Number of slots to allocate must be specified"
    check_deps(ns.dependency)
    jid, _ = run("batch", ns, ["bash", script], {})
    print(f58(jid))
    return 0


def jobs(argv):
    p = argparse.ArgumentParser()
    p.add_argument("-a", action="store_true")
    p.add_argument("-n", action="store_true")
    p.add_argument("-o")
    p.add_argument("--name")
    p.add_argument("--json", action="store_true")
    p.add_argument("ids", nargs="*")
    ns = p.parse_args(argv)
    with Db() as db:
        found = []
        for i in ns.ids:
            job = db.jobs.get(str(to_int(i)))
            if job is None:
                print(f"JobID {i} unknown", file=sys.stderr)
            else:
                found.append(job)
        if not ns.ids:
            found = [j for j in reversed(list(db.jobs.values()))
                     if not ns.name or j["name"] == ns.name]
    if ns.o:
        for j in found:
            print(ns.o.replace("{exception.type}", j["exception"].get("type", "")))
    elif ns.json:
        print(json.dumps(found[0] if len(ns.ids) == 1 and found else {"jobs": found}))
    return 0


def job(argv):
    sub = argv[0]
    with Db() as db:
        if sub == "status":
            return max(j["returncode"] if not j["exception"].get("type") == "dependency" else 1
                       for j in (db.jobs[str(to_int(i))] for i in argv[1:]))
        if sub == "info":
            print(json.dumps({"attributes": db.jobs[str(to_int(argv[1]))]["attributes"]}))
            return 0
        if sub == "wait" and argv[1:] == ["--all"]:
            rc = 0
            for j in db.jobs.values():
                if j["waitable"] and j["instance"] == INSTANCE and not j["waited"]:
                    j["waited"] = True
                    print(f58(j["id"]))
                    if j["result"] != "COMPLETED":
                        print(f"{f58(j['id'])}: exit code {j['returncode']}", file=sys.stderr)
                        rc = 1
            return rc
    sys.exit(f"fake flux: unsupported: job {argv}")


def cancel(argv):
    with Db() as db:
        for i in argv:
            j = db.jobs.get(str(to_int(i)))
            if j is not None and j["state"] != "INACTIVE":
                j.update(state="INACTIVE", result="CANCELED", returncode=143)
            elif j is not None:
                print(f"flux-cancel: {i}: job is inactive", file=sys.stderr)
                return 1
    return 0


def main(argv):
    log(argv)
    cmd = {"submit": submit, "batch": batch, "jobs": jobs, "job": job, "cancel": cancel}
    return cmd[argv[0]](argv[1:])


sys.exit(main(sys.argv[1:]))
'''


class FakeFlux:
    """A fake ``flux`` on PATH; ``calls`` is every invocation's argv, ``jobs`` its job table."""

    def __init__(self, root: Path) -> None:
        self.state = root / "fake-flux"
        self.state.mkdir()

    @property
    def calls(self) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        path = self.state / "jobs.json"
        return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def fake_flux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeFlux:
    fake = FakeFlux(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "flux"
    shim.write_text(f"#!{sys.executable}\n{FAKE_FLUX}")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_FLUX_STATE", str(fake.state))
    monkeypatch.setenv("FAKE_FLUX_TABLES", json.dumps(TABLES))
    monkeypatch.delenv("FLUX_URI", raising=False)
    return fake


def run_unit(t: FluxTransformer, u: Unit, ctx: UnitContext, timeout: float = 60) -> JobStatus:
    job_id = t.submit(u, ctx)
    deadline = time.monotonic() + timeout
    while not (st := t.status([job_id])[job_id]).state.terminal:
        assert time.monotonic() < deadline, f"{u.key} still {st}"
        time.sleep(0.05)
    return st


def exit_codes(spec: Spec, root: Path, attempt: int = 1) -> dict[str, str | None]:
    out = {}
    for task in spec.tasks:
        f = root / task.key / f"exit.{attempt}"
        out[task.name] = f.read_text().strip() if f.exists() else None
    return out


def test_generated_group_script_runs_dependencies_locals_and_replicas(
        tmp_path: Path, fake_flux: FakeFlux) -> None:
    spec = mixed_spec(tmp_path)
    g = spec.nodes["group/g"]
    root = tmp_path / "state"
    t = FluxTransformer(FAST)
    st = run_unit(t, g, context(spec, g, root, cwd=tmp_path))
    assert (st.state, st.exit_code) == (JobState.COMPLETED, 0), (root / g.key / "stderr.1")
    assert exit_codes(spec, root) == {"a": "0", "b": "0", "prep": "0", "c": "0", "d": "0"}
    assert (root / "task/a/stdout.1").read_text() == "a\nb\n"
    # `${JOBSPEC_REPLICA} {x} $GREETING` kept its braces: submitted once per replica.
    assert [(root / f"task/b/stdout.1.{i}").read_text() for i in range(3)] == \
        [f"{i} {{x}} hi $USER\n" for i in range(3)]  # environment values are literal
    assert [(root / f"task/c/stdout.1.{i}").read_text() for i in range(2)] == ["c0\n", "c1\n"]
    assert (root / "task/prep/stdout.1").read_text() == "one\ntwo\n"
    assert (root / "task/d/stdout.1").read_text() == "d\n"
    c_submit = next(c for c in fake_flux.calls if "--job-name=c" in c)
    assert "--cc=0-1" in c_submit and sum("--dependency=afterok:" in a for a in c_submit) == 3


FAILING = """
version: 1
groups:
- name: g
  tasks:
  - name: ok
    command: [true]
  - name: bad
    command: [sh, -c, "echo failing >&2; exit 3"]
  - name: after-bad
    depends_on: [bad]
    command: [echo, never]
  - name: barrier
    local: true
    command: [echo, never]
  - name: last
    command: [echo, never]
tasks:
- group: g
"""


def test_a_failed_child_stops_its_dependents_and_fails_the_group(tmp_path: Path,
                                                                 fake_flux: FakeFlux) -> None:
    spec = load(write(tmp_path, FAILING), default_resources=FluxTransformer.default_resources)
    g = spec.nodes["group/g"]
    root = tmp_path / "state"
    st = run_unit(FluxTransformer(FAST), g, context(spec, g, root, cwd=tmp_path))
    assert (st.state, st.exit_code) == (JobState.FAILED, 1)
    assert exit_codes(spec, root) == {"ok": "0", "bad": "3", "after-bad": None,
                                      "barrier": None, "last": None}
    assert (root / "task/bad/stderr.1").read_text() == "failing\n"
    err = (root / g.key / "stderr.1").read_text()
    assert "task/barrier not started" in err and "task/last not started" in err


# Examples that end otherwise on purpose; every other unit of an example completes.
EXPECTED = {("timeout", "task/too-slow"): JobState.TIMEOUT}


def test_examples_run_end_to_end_with_the_cli(tmp_path: Path, fake_flux: FakeFlux) -> None:
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert paths, f"no examples in {EXAMPLES}"
    for path in paths:
        t = FluxTransformer(FAST)
        spec = load(path, default_resources=t.default_resources)
        work = tmp_path / path.stem
        work.mkdir()
        for u in t.units(spec):
            ctx = context(spec, u, work / "state", cwd=work, token=uuid.uuid4().hex)
            st = run_unit(t, u, ctx)
            want = EXPECTED.get((path.stem, u.key), JobState.COMPLETED)
            assert st.state is want, (path.name, u.key, st)
            if isinstance(u, Group):
                assert set(exit_codes(spec, work / "state").values()) <= {"0", None}
            if not (isinstance(u, Task) and u.local):
                assert t.find(u, ctx) is not None  # found again by its token


def test_top_level_local_tasks_run_here(tmp_path: Path, fake_flux: FakeFlux) -> None:
    spec = load(write(tmp_path, """
        version: 1
        tasks:
        - name: here
          local: true
          command: [sh, -c, "echo local > out.txt"]
        """), default_resources=FluxTransformer.default_resources)
    u = spec.nodes["task/here"]
    t = FluxTransformer(FAST)
    st = run_unit(t, u, context(spec, u, tmp_path / "state", cwd=tmp_path))
    assert st.state is JobState.COMPLETED
    assert (tmp_path / "out.txt").read_text() == "local\n"
    assert fake_flux.calls == []


def test_submit_writes_and_keeps_the_scripts(tmp_path: Path, fake_flux: FakeFlux) -> None:
    spec = mixed_spec(tmp_path)
    g = spec.nodes["group/g"]
    ctx = context(spec, g, tmp_path / "state", cwd=tmp_path)
    t = FluxTransformer(FAST)
    run_unit(t, g, ctx)
    assert (ctx.workdir / "job.1.flux").read_text() == t.render(g, ctx)
    assert (ctx.workdir / "job.1.inner.flux").exists()
    batch = next(c for c in fake_flux.calls if c[0] == "batch")
    assert batch == ["batch", str(ctx.workdir / "job.1.flux")]


# -- 4. a live Flux instance (tests/services.py), through both submission paths -------------
@pytest.fixture(params=["cli", "python"])
def live(flux: FluxInstance, request: pytest.FixtureRequest) -> FluxTransformer:
    """A transformer on the session's Flux, submitting with the flux command or the bindings."""
    if request.param == "python" and flux_bindings.find() is None:
        need_service(f"the flux Python bindings: {flux_bindings.why_missing()} "
                     "(pip install 'jobspec-do[flux]' with the instance's flux-core version)")
    return FluxTransformer(TransformerOptions(poll_interval=0.05,
                                              settings={"api": request.param}))


def test_live_examples_end_to_end(live: FluxTransformer, tmp_path: Path) -> None:
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert paths, f"no examples in {EXAMPLES}"
    for path in paths:
        spec = load(path, default_resources=live.default_resources)
        work = tmp_path / path.stem
        work.mkdir()
        for u in live.units(spec):
            ctx = context(spec, u, work / "state", cwd=work, token=uuid.uuid4().hex)
            st = run_unit(live, u, ctx, timeout=120)
            assert st.state is EXPECTED.get((path.stem, u.key), JobState.COMPLETED), \
                (path.name, u.key, st)
            if not (isinstance(u, Task) and u.local):
                assert live.find(u, ctx) is not None


def test_live_group_with_dependencies(live: FluxTransformer, tmp_path: Path) -> None:
    spec = mixed_spec(tmp_path)
    g = spec.nodes["group/g"]
    root = tmp_path / "state"
    st = run_unit(live, g, context(spec, g, root, cwd=tmp_path), timeout=180)
    assert st.state is JobState.COMPLETED, (root / g.key / "stderr.1").read_text()
    assert set(exit_codes(spec, root).values()) == {"0"}


def test_live_failures_map_to_states(live: FluxTransformer, tmp_path: Path) -> None:
    spec = load(write(tmp_path, """
        version: 1
        tasks:
        - name: fails
          command: [sh, -c, "exit 5"]
        - name: slow
          command: [sleep, "30"]
          attributes: {duration: 1s}
        """), default_resources=live.default_resources)
    fails, slow = spec.nodes["task/fails"], spec.nodes["task/slow"]
    st = run_unit(live, fails, context(spec, fails, tmp_path / "s", cwd=tmp_path))
    assert (st.state, st.exit_code) == (JobState.FAILED, 5)
    assert run_unit(live, slow, context(spec, slow, tmp_path / "s", cwd=tmp_path)).state is \
        JobState.TIMEOUT
    failed_id = live.find(fails, context(spec, fails, tmp_path / "s", token="tok-fails"))
    with pytest.raises(SubmitError, match="already failed"):
        live.submit(fails, context(spec, fails, tmp_path / "s2", cwd=tmp_path,
                                   after=[failed_id or ""]))


def test_live_cancel(live: FluxTransformer, tmp_path: Path) -> None:
    spec = load(write(tmp_path, """
        version: 1
        tasks:
        - name: long
          command: [sleep, "60"]
        """), default_resources=live.default_resources)
    u = spec.nodes["task/long"]
    jid = live.submit(u, context(spec, u, tmp_path / "s", cwd=tmp_path))
    live.cancel([jid])
    assert live.wait(jid).state is JobState.CANCELED


def test_live_python_jobspec_equals_the_cli_dry_run(flux: FluxInstance, tmp_path: Path) -> None:
    spec = hello(tmp_path)
    u = spec.nodes["task/one"]
    job = FluxTransformer().jobs(u, context(spec, u, tmp_path / "s", cwd=tmp_path))[0]
    env = flux.env
    cli_js = json.loads(subprocess.run([*job.argv()[:2], "--dry-run", *job.argv()[2:]],
                                       text=True, capture_output=True, check=True,
                                       env=env).stdout)
    blob = base64.b64encode(pickle.dumps(job)).decode()
    code = textwrap.dedent(f"""
        import base64, pickle, sys
        sys.path[:0] = {sys.path!r}
        import flux.job
        job = pickle.loads(base64.b64decode({blob!r}))
        print(job.jobspec(flux.job.JobspecV1).dumps())
        """)
    proc = subprocess.run(["flux", "python", "-c", code], text=True, capture_output=True,
                          check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    api_js = json.loads(proc.stdout)
    for js in (cli_js, api_js):  # the submitter's environment and rlimits differ by process
        js["attributes"]["system"].get("shell", {}).get("options", {}).pop("rlimit", None)
        js["attributes"]["system"].pop("environment")
    assert api_js == cli_js
