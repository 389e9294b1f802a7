"""A re-run with nothing to do answers without loading what only real work needs.

Issue #23: the no-op re-run is the most frequent invocation (cron), and at its size every
module imported is time a user pays. Not timed: the child's own import log
(`python -X importtime`) says what it loaded, which is what a change would silently grow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import jobspec_do, write

SPEC = """\
version: 1
tasks:
  - name: make
    command: "echo made > made.txt"
    outputs: [made.txt]
  - name: use
    command: "cat made.txt > used.txt"
    inputs: [made.txt]
    outputs: [used.txt]
"""

# What only real work, another command, or an error needs. Each of these once sat on the
# no-op path (the watch service, the records and the spec model came with the parser).
NOT_ON_NOOP_PATH = (
    "doit", "yaml", "jsonschema", "fastjsonschema", "paramiko",
    "dodo_jobspec.cli.watch", "dodo_jobspec.records.state", "dodo_jobspec.spec.model",
    "dodo_jobspec.spec.source", "dodo_jobspec.spec.resolve", "dodo_jobspec.engine",
    "dodo_jobspec.plan", "dodo_jobspec.tasks", "dodo_jobspec.transformers",
    "hashlib", "json", "difflib", "csv",
    # Finding plugins reads every installed distribution's metadata: a no-op names none.
    "importlib.metadata", "pkg_resources", "dodo_jobspec.plugins",
    # The console script answers a plain no-op before the command line is parsed
    # (cli/quick.py): argparse, the commands and the config's dataclasses stay unloaded.
    "argparse", "dodo_jobspec.cli.app", "dodo_jobspec.cli.commands", "dodo_jobspec.config",
    "dodo_jobspec.errors", "dataclasses", "typing", "array",
)


def _imported(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the command line with an import log; the set of modules it imported beyond what
    the interpreter imports before running anything (site's .pth files differ between a
    developer's venv and CI's system Python: an editable install's finder imports typing)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "dodo_jobspec.cli", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    bare = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)
    return done, _names(done.stderr) - _names(bare.stderr)


def _names(log: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in log.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_a_noop_rerun_imports_nothing_real_work_needs(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC)
    first = jobspec_do("run", "-q", spec, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "used.txt").read_text() == "made\n"

    done, names = _imported(["run", "-q", "-j", "2", str(spec)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # -q on a no-op: nothing to say
    # The log is really there and the fast answer really ran (else the check below is empty).
    assert {"dodo_jobspec.cli.quick", "dodo_jobspec.noop"} <= names, sorted(names)
    loaded = sorted(n for n in names
                    if any(n == bad or n.startswith(bad + ".") for bad in NOT_ON_NOOP_PATH))
    assert loaded == [], f"the no-op path imported {loaded}"


def test_the_same_run_with_work_to_do_does_load_the_engine(tmp_path: Path) -> None:
    """The other side: the list above names what a real run uses, so the check can fail."""
    spec = write(tmp_path, SPEC)
    done, names = _imported(["run", "-q", str(spec)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert {"doit", "yaml", "dodo_jobspec.engine", "dodo_jobspec.spec.model",
            "dodo_jobspec.records.state", "argparse", "dodo_jobspec.cli.app"} <= names, \
        sorted(names)


def test_watch_still_parses_its_durations(tmp_path: Path) -> None:
    """`watch`'s arguments moved out of the service module; a bad duration is still a usage
    error naming the value, and a good one reaches the service."""
    bad = jobspec_do("watch", "--once", "--every", "soon", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2
    assert "not a duration: 'soon'" in bad.stderr
    good = jobspec_do("watch", "--once", "--every", "5m", str(tmp_path), cwd=tmp_path)
    assert good.returncode == 0, good.stderr
