"""Two specs of one folder writing one file are told so (#18 item 7): a warning from
`validate`, `plan` and `--dry-run`, and `run` refuses (exit 2) without --allow-shared-outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers import REFERENCE, jobspec_do, write

LEGACY = REFERENCE / "corpus" / "legacy-0.0.11"
HELLO, WAIT, FLUX = "hello-world-jobspec.yaml", "hello-world-wait-jobspec.yaml", \
    "examples__flux__jobspec.yaml"


def _corpus(folder: Path) -> None:
    for name in (HELLO, WAIT, FLUX):
        shutil.copy(LEGACY / name, folder / name)


def test_the_three_corpus_files_that_write_job_sh_are_told_so(tmp_path: Path) -> None:
    _corpus(tmp_path)
    job = tmp_path / "job.sh"
    assert jobspec_do(HELLO, cwd=tmp_path).returncode == 0
    hello = job.read_text()
    # The two hello-world files write the very same job.sh: neither undoes the other.
    r = jobspec_do(WAIT, cwd=tmp_path)
    assert r.returncode == 0 and "also written" not in r.stderr, r.stderr

    r = jobspec_do(FLUX, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"{FLUX}:21:17: task.transform[2].filename: 'job.sh' is also written by " \
        f"{HELLO}" in r.stderr, r.stderr
    assert f"'job.sh' is also written by {WAIT}" in r.stderr
    assert "nothing was run; pass --allow-shared-outputs" in r.stderr
    assert "Traceback" not in r.stderr
    assert job.read_text() == hello  # nothing ran: the other spec's file is as it was
    assert not (tmp_path / ".jobspec-do" / "examples__flux__jobspec" / "writes.json").exists()

    for args in (["validate", FLUX], ["plan", FLUX], ["run", "--dry-run", FLUX]):
        r = jobspec_do(*args, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr)
        assert f"{FLUX}:21:17: task.transform[2].filename: warning: 'job.sh' is also " \
            f"written by {HELLO}" in r.stderr, (args, r.stderr)
        assert "refuses this without --allow-shared-outputs" in r.stderr
    assert job.read_text() == hello

    r = jobspec_do("run", "--allow-shared-outputs", FLUX, cwd=tmp_path)
    assert r.returncode == 0 and "warning: 'job.sh' is also written" in r.stderr, r.stderr
    assert "FLUX_TASK_RANK" in job.read_text()
    # Now the flux spec has recorded that it writes job.sh: the first spec is told in turn.
    r = jobspec_do(HELLO, cwd=tmp_path)
    assert r.returncode == 2 and f"is also written by {FLUX}" in r.stderr, r.stderr


A = """
    version: 1
    tasks:
    - name: make
      command: "echo {who} > out.txt"
      outputs: [out.txt]
"""


def test_two_specs_with_one_output_and_what_ends_a_claim(tmp_path: Path) -> None:
    a = write(tmp_path, A.format(who="a"), "a.yaml")
    b = write(tmp_path, A.format(who="b").replace("out.txt]", "./sub/../out.txt]"), "b.yaml")
    assert jobspec_do(a, cwd=tmp_path).returncode == 0
    r = jobspec_do(b, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "b.yaml:5:" in r.stderr, r.stderr  # the line of its outputs:
    assert "tasks[0].outputs[0]: 'out.txt' is also written by a.yaml" in r.stderr
    assert (tmp_path / "out.txt").read_text() == "a\n"

    # In a folder of its own (attributes.cwd), b writes another file: no clash.
    (tmp_path / "sub").mkdir()
    write(tmp_path, A.format(who="b") + "      attributes: {cwd: sub}\n", "b.yaml")
    r = jobspec_do(b, cwd=tmp_path)
    assert r.returncode == 0 and "also written" not in r.stderr, r.stderr

    # A claim lasts as long as its spec: a.yaml renamed away, its state no longer counts.
    write(tmp_path, A.format(who="b"), "b.yaml")
    assert jobspec_do(b, cwd=tmp_path).returncode == 2
    a.rename(tmp_path / "a.yaml.old")
    r = jobspec_do(b, cwd=tmp_path)
    assert r.returncode == 0 and "also written" not in r.stderr, r.stderr
    assert (tmp_path / "out.txt").read_text() == "b\n"


def test_clean_forgets_a_claim(tmp_path: Path) -> None:
    a = write(tmp_path, A.format(who="a"), "a.yaml")
    b = write(tmp_path, A.format(who="b"), "b.yaml")
    assert jobspec_do(a, cwd=tmp_path).returncode == 0
    assert jobspec_do(b, cwd=tmp_path).returncode == 2
    assert jobspec_do("clean", a, cwd=tmp_path).returncode == 0
    assert jobspec_do(b, cwd=tmp_path).returncode == 0
