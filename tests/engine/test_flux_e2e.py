"""The engine on a real Flux (the session's 4-broker instance, tests/services.py), through the
`jobspec-do -t flux` command line: examples, nested groups, replicas, timeouts, cancel,
cron ticks, kill -9 then --resume, refused queues, and a planned script run by hand.
Submissions are counted from the instance's own job list."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dodo_jobspec.transformers import flux_bindings
from tests.helpers import counts, history_text, job_record, jobspec_do, set_record, write
from tests.services import FluxInstance, need_service

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Top-level submissions per example: a group is one batch job, its children run inside it
# (in the batch job's own instance); local tasks are not submitted; replicas are one job each.
SUBMITTED = {"hello.yaml": 2, "build-run.yaml": 3, "replicas.yaml": 5, "fan-out-in.yaml": 4,
             "groups.yaml": 2, "timeout.yaml": 1}


def _ids(flux: FluxInstance) -> set[int]:
    return {int(str(j["id"])) for j in flux.jobs()}


def _new_jobs(flux: FluxInstance, before: set[int]) -> list[dict[str, object]]:
    return [j for j in flux.jobs() if int(str(j["id"])) not in before]


def _status(spec: Path, cwd: Path) -> dict[str, object]:
    return dict(json.loads(jobspec_do("status", spec, "--json", cwd=cwd).stdout))


@pytest.fixture(params=["cli", "python"])
def api(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How jobspec-do submits: the flux command, or the Python bindings (required then)."""
    monkeypatch.setenv("JOBSPEC_DO_FLUX_API", request.param)
    if request.param == "python" and flux_bindings.find() is None:
        need_service(f"the flux Python bindings: {flux_bindings.why_missing()}")
    return str(request.param)


@pytest.mark.parametrize("name", sorted(SUBMITTED))
def test_example_through_the_cli(tmp_path: Path, flux: FluxInstance, name: str) -> None:
    """Automatic path (the bindings where installed); tests/transformers/test_flux.py runs
    every example through both paths, and the ticks below do too."""
    shutil.copy(EXAMPLES / name, tmp_path / name)
    before = _ids(flux)
    r = jobspec_do(tmp_path / name, "-t", "flux", cwd=tmp_path, timeout=240)
    if name == "timeout.yaml":  # duration: the job is killed by Flux at its time limit
        assert r.returncode == 1, r.stderr
        assert _status(tmp_path / name, tmp_path)["units"][0]["state"] == "timeout"
    else:
        assert r.returncode == 0, r.stderr
        again = jobspec_do(tmp_path / name, "-t", "flux", cwd=tmp_path)
        assert again.returncode == 0 and "0 ran" in again.stderr, again.stderr
    assert len(_new_jobs(flux, before)) == SUBMITTED[name]


def test_groups_example_keeps_environment_cwd_and_local_order(tmp_path: Path,
                                                              flux: FluxInstance) -> None:
    shutil.copy(EXAMPLES / "groups.yaml", tmp_path)
    r = jobspec_do(tmp_path / "groups.yaml", "-t", "flux", cwd=tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "train.txt").read_text() == "train group blue\n"
    assert (tmp_path / "test.txt").read_text() == "test task blue\n"
    assert (tmp_path / "service.state").read_text() == "up\ndown\n"


NESTED = """
    version: 1
    resources:
      two: {type: node, count: 1, with: [{type: slot, count: 2, with: [{type: core, count: 1}]}]}
      one: {type: core, count: 1}
    groups:
    - name: outer
      resources: two
      tasks:
      - {name: first, resources: one, command: "sleep 1; echo first >> order.txt"}
      - {group: inner, depends_on: [first]}
      - {name: last, resources: one, depends_on: [inner], command: "echo last >> order.txt"}
    - name: inner
      tasks:
      - {name: middle-a, resources: one, command: "echo middle >> order.txt"}
      - {name: middle-b, resources: one, depends_on: [middle-a],
         command: "echo middle-b >> order.txt"}
    tasks:
    - {group: outer}
    """


def test_nested_groups_follow_depends_on(tmp_path: Path, flux: FluxInstance) -> None:
    spec = write(tmp_path, NESTED)
    r = jobspec_do(spec, "-t", "flux", cwd=tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "order.txt").read_text().split() == ["first", "middle", "middle-b",
                                                            "last"]
    states = {u["name"]: u["state"] for u in _status(spec, tmp_path)["units"]
              if u["kind"] == "task"}
    assert states == dict.fromkeys(["first", "middle-a", "middle-b", "last"], "completed")


def test_replicas_are_one_cc_submission(tmp_path: Path, flux: FluxInstance) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: rep, replicas: 3, command: "echo r$JOBSPEC_REPLICA-$FLUX_JOB_CC >> count.rep"}
        """)
    plan = jobspec_do("plan", spec, "-t", "flux", cwd=tmp_path)
    submits = [ln for ln in plan.stdout.splitlines() if "flux submit" in ln]
    assert len(submits) == 1 and "--cc=0-2" in plan.stdout, plan.stdout
    before = _ids(flux)
    r = jobspec_do(spec, "-t", "flux", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted((tmp_path / "count.rep").read_text().split()) == ["r0-0", "r1-1", "r2-2"]
    assert len(_new_jobs(flux, before)) == 3  # one job per replica, from one submission


def test_cancel_stops_running_and_waiting_jobs(tmp_path: Path, flux: FluxInstance) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: long, command: "sleep 60"}
        - {name: later, depends_on: [long], command: "true"}
        """)
    before = _ids(flux)
    r = jobspec_do(spec, "-t", "flux", "--no-wait", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = jobspec_do("cancel", spec, "-t", "flux", cwd=tmp_path)
    assert r.returncode == 0 and "canceled long" in r.stdout, r.stdout + r.stderr
    flux.run("queue", "drain", "--timeout=30s")
    ended = {str(j["name"]): j.get("result") for j in _new_jobs(flux, before)}
    assert ended == {"long": "CANCELED", "later": "CANCELED"}, ended  # neither ran to the end


CRON = """
    version: 1
    tasks:
    - {name: a, command: "sleep 1; echo x >> count.a"}
    - {name: b, command: "echo x >> count.b", depends_on: [a]}
    - {name: c, command: "echo x >> count.c", depends_on: [a]}
    - {name: d, command: "echo x >> count.d", depends_on: [b, c]}
    """


@pytest.mark.parametrize("mode", ["--no-wait", "--cron"])
def test_ticks_drive_a_spec_to_completion(tmp_path: Path, flux: FluxInstance,
                                          mode: str, api: str) -> None:
    spec = write(tmp_path, CRON)
    before = _ids(flux)
    deadline = time.monotonic() + 90
    ticks = 0
    while time.monotonic() < deadline:
        ticks += 1
        r = jobspec_do(spec, "-t", "flux", mode, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        if _status(spec, tmp_path)["complete"]:
            break
        time.sleep(0.3)
    assert counts(tmp_path) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert len(_new_jobs(flux, before)) == 4  # every task submitted once, across all ticks
    quiet = jobspec_do(spec, "-t", "flux", mode, cwd=tmp_path)
    assert quiet.returncode == 0 and (mode == "--no-wait" or quiet.stderr == "")


def test_kill_9_while_running_then_resume_reattaches(tmp_path: Path,
                                                     flux: FluxInstance) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: slow, command: "sleep 4; echo x >> count.slow"}
        - {name: after, depends_on: [slow], command: "echo x >> count.after"}
        """)
    before = _ids(flux)
    proc = subprocess.Popen([sys.executable, "-m", "dodo_jobspec.cli", str(spec), "-t", "flux"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = tmp_path / ".jobspec-do/spec/tasks/slow"
    deadline = time.monotonic() + 30
    while not job_record(record).get("job_id"):
        assert time.monotonic() < deadline, "slow was never submitted"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    refused = jobspec_do(spec, "-t", "flux", cwd=tmp_path)
    assert refused.returncode == 1 and "--resume" in refused.stderr  # never resubmits
    r = jobspec_do(spec, "-t", "flux", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path) == {"after": 1, "slow": 1}
    assert sorted(j["name"] for j in _new_jobs(flux, before)) == ["after", "slow"]


@pytest.mark.parametrize("mode", ["--resume", "--no-wait"])
def test_a_job_whose_id_was_never_recorded_is_found_by_token(
        tmp_path: Path, flux: FluxInstance, mode: str) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "echo x >> count.a"}
        """)
    assert jobspec_do(spec, "-t", "flux", cwd=tmp_path).returncode == 0
    before = _ids(flux)
    # As if killed between the submit and its record:
    set_record(tmp_path / ".jobspec-do/spec/tasks/a", job_id=None, state="submitting",
               exit_code=None, finished=None)
    (tmp_path / ".jobspec-do/spec/tasks/a/done.json").unlink()
    r = jobspec_do(spec, "-t", "flux", mode, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _new_jobs(flux, before) == []  # found, not submitted again
    assert counts(tmp_path) == {"a": 1}
    log = history_text(tmp_path / ".jobspec-do/spec/tasks/a")
    assert re.search(r"found by token|attached,job", log), log
    assert _status(spec, tmp_path)["complete"]


def test_a_queue_the_instance_lacks_is_refused_before_submitting(
        tmp_path: Path, flux: FluxInstance) -> None:
    spec = write(tmp_path, """
        version: 1
        tasks:
        - {name: a, command: "true", attributes: {queue: pdebug}}
        """)
    before = _ids(flux)
    for args in (["plan", spec], [spec]):
        r = jobspec_do(*args, "-t", "flux", cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "spec.yaml:3:" in r.stderr and "queue 'pdebug'" in r.stderr
        assert "it has no queues configured" in r.stderr
    assert _new_jobs(flux, before) == []


def test_a_planned_script_runs_unchanged_with_flux_batch(tmp_path: Path,
                                                         flux: FluxInstance) -> None:
    shutil.copy(EXAMPLES / "groups.yaml", tmp_path)
    plan = jobspec_do("plan", tmp_path / "groups.yaml", "-t", "flux", "--json", cwd=tmp_path)
    detail = json.loads(plan.stdout)["units"][0]["detail"]
    m = re.search(r"^# --- (\S+) ---\n(.*?)(?=^# --- |\Z)", detail, re.S | re.M)
    assert m, detail
    # Where plan says the script goes (its folder holds the job's output too), as it says.
    script = Path(m.group(1))
    script.parent.mkdir(parents=True)
    script.write_text(m.group(2))
    assert re.search(rf"^flux batch[ \\\n]*{re.escape(str(script))}$", detail, re.M), detail
    jid = flux.run("batch", str(script)).stdout.strip()
    status = flux.run("job", "status", jid, check=False, timeout=120)
    assert status.returncode == 0, flux.run("job", "attach", jid, check=False).stderr
    assert (tmp_path / "train.txt").read_text() == "train group blue\n"
    assert (tmp_path / "service.state").read_text() == "up\ndown\n"
    exits = sorted(p.read_text() for p in (tmp_path / ".jobspec-do").glob("**/exit.1"))
    assert exits == ["0\n"] * 4


READS_A_SIBLING = """
    version: 1
    resources:
      two: {type: node, count: 1, with: [{type: slot, count: 2, with: [{type: core, count: 1}]}]}
      one: {type: core, count: 1}
    groups:
    - name: g
      resources: two
      tasks:
      - {name: reader, resources: one, command: "cat made.txt > read.txt",
         inputs: [made.txt], outputs: [read.txt]}
      - {name: maker, resources: one, command: "sleep 2; echo made > made.txt",
         outputs: [made.txt]}
    tasks:
    - {group: g}
    """


def test_a_child_reading_a_siblings_output_starts_after_it(tmp_path: Path,
                                                           flux: FluxInstance) -> None:
    spec = write(tmp_path, READS_A_SIBLING)
    r = jobspec_do(spec, "-t", "flux", cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "read.txt").read_text() == "made\n"
