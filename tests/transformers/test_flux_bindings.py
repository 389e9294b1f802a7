"""Finding Flux's Python bindings the ways users have them, and refusing mismatched ones."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dodo_jobspec.transformers import flux_bindings
from dodo_jobspec.transformers.base import SubmitError, TransformerOptions
from dodo_jobspec.transformers.flux import FluxTransformer
from dodo_jobspec.transformers.flux_bindings import Bindings, mismatch
from tests.services import FluxInstance, need_service

REPO = Path(__file__).resolve().parents[2]
# Prints how the bindings were found and what the instance says through them. With HIDE,
# the PyPI package's copy is hidden, as on a machine without `pip install jobspec-do[flux]`.
PROBE = textwrap.dedent("""
    import importlib.machinery, os, sys
    sys.path.insert(0, {repo!r})
    if os.environ.get("HIDE"):
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if path is None and name in ("flux", "_flux"):
                    keep = [p for p in sys.path if "site-packages" not in p]
                    spec = importlib.machinery.PathFinder.find_spec(name, keep)
                    if spec is None:
                        raise ModuleNotFoundError(name)
                    return spec
                return None
        sys.meta_path.insert(0, Hide())
    from dodo_jobspec.transformers import flux_bindings
    found = flux_bindings.find()
    if found is None:
        print("none:", flux_bindings.why_missing())
    else:
        print(found.origin, "|", found.version, "|", found.module.Flux().attr_get("version"))
""").format(repo=str(REPO))


def probe(flux: FluxInstance, **env: str) -> str:
    full = {k: v for k, v in flux.env.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env={**full, **env}, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_pypi_package_with_and_without_ld_library_path(flux: FluxInstance) -> None:
    try:
        import importlib.metadata

        importlib.metadata.distribution("flux-python")
    except importlib.metadata.PackageNotFoundError:
        need_service("flux-python is not installed: pip install 'jobspec-do[flux]' "
                     "flux-python==<the instance's version> (./scripts/test does)")
    lib = str(Path(flux.flux).resolve().parents[1] / "lib")
    version = flux.run("getattr", "version").stdout.strip()
    assert probe(flux) == f"flux-python with {lib} | {version} | {version}"
    assert probe(flux, LD_LIBRARY_PATH=lib) == f"import flux | {version} | {version}"


def test_the_instances_own_bindings(flux: FluxInstance) -> None:
    version = flux.run("getattr", "version").stdout.strip()
    folder = flux.run("env", "sh", "-c", 'printf %s "$PYTHONPATH"').stdout.split(os.pathsep)[0]
    assert probe(flux, HIDE="1") == f"the instance's own, {folder} | {version} | {version}"


def test_without_flux_anywhere_the_reason_is_given(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HIDE": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.stdout.startswith("none: import flux failed") and "no flux command" in \
        proc.stdout, proc.stdout + proc.stderr


class Handle:
    def attr_get(self, name: str) -> str:
        assert name == "version"
        return "0.88.0"


class Module:
    Flux = Handle


def test_bindings_of_another_version_are_refused_with_a_clear_message(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    old = Bindings(Module, "flux-python", "0.87.0", "0.87.0")
    message = mismatch(old, "0.88.0")
    assert message is not None and "version 0.87.0" in message and "flux-core 0.88.0" in message
    assert "pip install 'flux-python==0.88.0'" in message
    assert "loaded libflux-core 0.88.0" in str(mismatch(Bindings(Module, "x", "0.87.0",
                                                                  "0.88.0"), None))
    assert mismatch(Bindings(Module, "x", "0.88.0", "0.88.0"), "0.88.0") is None

    monkeypatch.setattr(flux_bindings, "find", lambda: old)
    monkeypatch.setenv("FLUX_URI", "local:///nowhere")
    auto = FluxTransformer()
    assert auto._api() is False and auto.api_note == message
    assert "warning: " + message in capsys.readouterr().err
    asked = FluxTransformer(TransformerOptions(settings={"api": "python"}))
    with pytest.raises(SubmitError, match=r"0\.87\.0 .* flux-core 0\.88\.0.*FLUX_API=python"):
        asked._api()


def test_a_batch_without_usable_bindings_fails_each_unit(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.transformers.test_flux import context, hello

    monkeypatch.setattr(flux_bindings, "find", lambda: None)
    monkeypatch.setattr(flux_bindings, "why_missing", lambda: "import flux failed: nope")
    monkeypatch.setenv("FLUX_URI", "local:///nowhere")
    monkeypatch.setenv("JOBSPEC_DO_FLUX_API", "python")
    spec = hello(tmp_path)
    t = FluxTransformer()
    items = [(u, context(spec, u, tmp_path / "state")) for u in t.units(spec)]
    results = t.submit_many(items)
    assert len(results) == len(items) and all(isinstance(r, SubmitError) for r in results)
    assert "import flux failed: nope" in str(results[0])
