"""The out-of-tree burster in examples/burster-plugin: installed as a package would be, it
is listed by `jobspec-do plugins` through its entry point alone, and passes jobspec-do's
conformance tests (run from its own test folder) on a real Flux instance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bursters.fluxes import flux_path, start_instance, stop

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "burster-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(EXAMPLE)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "TMPDIR": str(build)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def _env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "PATH": flux_path(),
            "JOBSPEC_DO_CACHE": "0"}


def test_it_is_listed_through_its_entry_point(installed: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dodo_jobspec.cli", "plugins"],
                         env=_env(installed), capture_output=True, text=True, timeout=60,
                         check=True).stdout
    line = next(ln for ln in out.splitlines() if "quiet-flux" in ln)
    assert "external" in line and "jsd_quiet_flux:QuietFluxBurster" in line and "[ok]" in line


def test_it_passes_the_conformance_tests(installed: Path) -> None:
    probe = start_instance(1)  # skips outside CI (fails in CI) when flux is missing
    stop(probe.proc)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(EXAMPLE), str(EXAMPLE / "tests")], cwd=EXAMPLE, env=_env(installed),
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "8 passed" in proc.stdout, proc.stdout[-2000:]
