"""Plugins come from entry points: an out-of-tree package is found as the built-ins are, and
the remembered list of entry points follows every install, removal and edit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
from dodo_jobspec.transformers.local import LocalTransformer


class Mine(LocalTransformer):
    name = "mine"
    description = "an out-of-tree transformer"
'''


def _python(code: str, site: Path, cache: Path) -> str:
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "XDG_CACHE_HOME": str(cache)}
    env.pop("JOBSPEC_DO_CACHE", None)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


LIST = """
import sys
from dodo_jobspec import plugins
print(plugins.names(plugins.TRANSFORMERS))
print("read metadata" if "importlib.metadata" in sys.modules else "from the cache")
print(plugins.load(plugins.TRANSFORMERS, plugins.names(plugins.TRANSFORMERS)[-1]).__name__)
"""


def test_an_installed_package_is_found_and_the_cache_follows_installs_and_edits(
        tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    (site / "myplug.py").write_text(PLUGIN)

    first = _python(LIST, site, cache).splitlines()
    assert first[0] == "['flux', 'local', 'slurm']" and first[1] == "read metadata"
    again = _python(LIST, site, cache).splitlines()
    assert again[:2] == [first[0], "from the cache"]

    dist = site / "myplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dodo_jobspec.transformers]\nmine = myplug:Mine\n")
    installed = _python(LIST, site, cache).splitlines()
    assert installed == ["['flux', 'local', 'mine', 'slurm']", "read metadata", "SlurmTransformer"]
    assert _python(LIST, site, cache).splitlines()[1] == "from the cache"

    # An edit in place (a developer renaming the entry point) is a new key too.
    (dist / "entry_points.txt").write_text("[dodo_jobspec.transformers]\nzmine = myplug:Mine\n")
    edited = _python(LIST, site, cache).splitlines()
    assert edited == ["['flux', 'local', 'slurm', 'zmine']", "read metadata", "Mine"]

    # Uninstalled: gone again.
    for f in dist.iterdir():
        f.unlink()
    dist.rmdir()
    assert _python(LIST, site, cache).splitlines()[0] == "['flux', 'local', 'slurm']"
