"""The engine's control flow with the Flux transformer, through the real CLI, against the
fake `flux` of tests/transformers/test_flux.py (Flux itself cannot be installed here; its live
tests run wherever it is on PATH). Submissions are counted from the fake's call log."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import counts, history_text, job_record, jobspec_do, set_record, write
from tests.transformers.test_flux import FakeFlux, fake_flux  # noqa: F401 - a fixture

SPEC = """
    version: 1
    tasks:
    - {name: a, command: "echo x >> count.a"}
    - {name: b, depends_on: [a], command: "echo x >> count.b"}
    """


def _submits(fake: FakeFlux) -> int:
    return sum(1 for call in fake.calls if call and call[0] in ("submit", "batch"))


def test_blocking_run_then_noop(tmp_path: Path, fake_flux: FakeFlux) -> None:  # noqa: F811
    spec = write(tmp_path, SPEC)
    r = jobspec_do(spec, "-t", "flux", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _submits(fake_flux) == 2 and counts(tmp_path) == {"a": 1, "b": 1}
    r = jobspec_do(spec, "-t", "flux", cwd=tmp_path)
    assert r.returncode == 0 and _submits(fake_flux) == 2


def test_no_wait_records_ids_and_the_next_call_never_resubmits(
        tmp_path: Path, fake_flux: FakeFlux) -> None:  # noqa: F811
    spec = write(tmp_path, SPEC)
    r = jobspec_do(spec, "-t", "flux", "--no-wait", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    job = job_record(tmp_path / ".jobspec-do/spec/tasks/b")
    assert job["state"] == "queued" and job["job_id"]
    b_submit = next(c for c in fake_flux.calls if "--job-name=b" in c)
    assert any(a.startswith("--dependency=afterok:") for a in b_submit)
    for _ in range(2):
        r = jobspec_do(spec, "-t", "flux", "--no-wait", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert _submits(fake_flux) == 2
    status = json.loads(jobspec_do("status", spec, "--json", cwd=tmp_path).stdout)
    assert status["complete"] and counts(tmp_path) == {"a": 1, "b": 1}


def test_a_submission_whose_id_was_lost_is_found_by_its_token(
        tmp_path: Path, fake_flux: FakeFlux) -> None:  # noqa: F811
    spec = write(tmp_path, SPEC)
    assert jobspec_do(spec, "-t", "flux", "--no-wait", cwd=tmp_path).returncode == 0
    # As if killed between submit and record:
    set_record(tmp_path / ".jobspec-do/spec/tasks/a", job_id=None, state="submitting")
    r = jobspec_do(spec, "-t", "flux", "--no-wait", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _submits(fake_flux) == 2  # found, not submitted again
    assert "found by token" in history_text(tmp_path / ".jobspec-do/spec/tasks/a")


def test_failure_is_reported_with_exit_code(tmp_path: Path,
                                            fake_flux: FakeFlux) -> None:  # noqa: F811
    spec = write(tmp_path, SPEC.replace('"echo x >> count.a"', '"exit 6"'))
    r = jobspec_do(spec, "-t", "flux", cwd=tmp_path)
    assert r.returncode == 1 and "exit 6" in r.stderr
    assert counts(tmp_path) == {}
