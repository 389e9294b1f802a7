"""The Flux the tests use: how scripts/test gets it, and the instance tests/services.py runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import tests.services
from tests.services import FluxInstance, flux_command, running_flux

REPO = Path(__file__).resolve().parents[1]
FLUX_ENV = REPO / "scripts" / "flux-env.sh"
# A fake installer: what ../shared/flux/install.sh does, into $JSD_FLUX_PREFIX, and a mark.
FAKE_INSTALLER = """#!/bin/bash
touch "$(dirname "$0")/ran"
mkdir -p "$JSD_FLUX_PREFIX/bin"
printf '#!/bin/sh\\necho "libflux-core:		9.9.9"\\n' >"$JSD_FLUX_PREFIX/bin/flux"
chmod +x "$JSD_FLUX_PREFIX/bin/flux"
"""


def _use_flux(tmp_path: Path, *, installer: bool, installed: bool) -> tuple[int, str, str]:
    """Source scripts/flux-env.sh in a repo laid out as CI has it (the shared folder beside
    it, or not) with no flux on PATH; return use_flux's code, the flux it leaves on PATH,
    and its stderr."""
    repo, prefix = tmp_path / "repo", tmp_path / "opt-flux"
    repo.mkdir(parents=True)
    if installer:
        (tmp_path / "shared" / "flux").mkdir(parents=True)
        (tmp_path / "shared" / "flux" / "install.sh").write_text(FAKE_INSTALLER)
    if installed:
        (prefix / "bin").mkdir(parents=True)
        (prefix / "bin" / "flux").write_text("#!/bin/sh\necho 'libflux-core:\t1.2.3'\n")
        (prefix / "bin" / "flux").chmod(0o755)
    script = f'. {FLUX_ENV}; use_flux {repo}; rc=$?; echo "$rc $(command -v flux) $(flux_version)"'
    # PATH without any flux: only the folders of the tools the script itself runs.
    path = os.pathsep.join(sorted({str(Path(shutil.which(t) or "/bin/sh").parent)
                                   for t in ("bash", "awk", "touch", "mkdir", "chmod")}))
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                          env={"PATH": path, "JSD_FLUX_PREFIX": str(prefix)})
    rc, _, rest = proc.stdout.strip().splitlines()[-1].partition(" ")
    return int(rc), rest, proc.stderr


def test_the_shared_installer_runs_when_flux_is_missing(tmp_path: Path) -> None:
    rc, found, _err = _use_flux(tmp_path, installer=True, installed=False)
    assert (tmp_path / "shared" / "flux" / "ran").exists()
    assert (rc, found) == (0, f"{tmp_path}/opt-flux/bin/flux 9.9.9")


def test_an_installed_flux_off_path_is_used_without_installing(tmp_path: Path) -> None:
    rc, found, _err = _use_flux(tmp_path, installer=True, installed=True)
    assert not (tmp_path / "shared" / "flux" / "ran").exists()
    assert (rc, found) == (0, f"{tmp_path}/opt-flux/bin/flux 1.2.3")
    rc, found, _err = _use_flux(tmp_path / "again", installer=False, installed=True)
    assert (rc, found) == (0, f"{tmp_path}/again/opt-flux/bin/flux 1.2.3")


def test_without_the_shared_folder_it_warns_and_says_no(tmp_path: Path) -> None:
    rc, found, err = _use_flux(tmp_path, installer=False, installed=False)
    assert (rc, found) == (1, "")
    assert "live Flux tests will skip" in err and "install.sh" in err


def test_no_flux_anywhere_fails_the_fixture_under_ci(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tests.services, "FLUX_PREFIX", tmp_path / "nowhere")
    assert flux_command() is None
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="flux is not installed"), running_flux():
        pass
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="flux is not installed"), running_flux():
        pass


def test_an_instance_has_its_brokers_and_is_gone_after(flux_instance: FluxInstance) -> None:
    assert flux_instance.run("resource", "list", "-n", "-o", "{nnodes}",
                             "--states=up").stdout.split() == [str(flux_instance.brokers)]
    with running_flux(brokers=1) as small:
        ranks = small.run("exec", "-r", "all", "flux", "getattr", "rank").stdout.split()
        assert ranks == ["0"] and small.uri != flux_instance.uri
    assert not small.dir.exists()
    gone = subprocess.run([small.flux, "uptime"], env=small.env, capture_output=True,
                          check=False)
    assert gone.returncode != 0  # the instance itself is down, not only its folder


def test_the_flux_fixture_cancels_what_a_test_left(flux: FluxInstance) -> None:
    jid = flux.run("submit", "sleep", "300").stdout.strip()
    assert flux.run("jobs", "-n", "-o", "{state}", jid).stdout.strip() in ("SCHED", "RUN")
    flux.drain()
    assert flux.run("jobs", "-n", "-o", "{result}", jid).stdout.strip() == "CANCELED"
