"""Install a source tree of jobspec-do as a user would, in a throwaway virtualenv, for timing.

A developer's editable install is not what a user runs: its `.pth` finder imports pathlib and
importlib.util into every Python start (~25 ms here), and with PYTHONDONTWRITEBYTECODE set the
package is compiled from source on every call. A wheel installed by pip has neither: its
modules are byte-compiled at install, and site processing reads one `.pth` of setuptools.
The no-op re-run (tens of milliseconds) is only comparable to make's when timed that way.

    python benchmarks/install.py SRC_DIR DEST_DIR    # prints the console script's path
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path


def install(src: Path, dest: Path) -> Path:
    """Build a wheel of ``src`` (with this Python's setuptools, offline) and pip-install it with
    its dependencies into a new virtualenv at ``dest``; return its `jobspec-do` script."""
    venv.EnvBuilder(with_pip=True, clear=True).create(dest)
    py = dest / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="jsd-wheel-") as out:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", out, str(src)], check=True,
                       stdout=subprocess.DEVNULL)
        wheels = sorted(Path(out).glob("jobspec_do-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected one jobspec_do wheel from {src}, got {wheels}")
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(wheels[0])], check=True, stdout=subprocess.DEVNULL)
    script = dest / "bin" / "jobspec-do"
    if not script.exists():
        raise RuntimeError(f"no jobspec-do script in {dest}")
    return script


if __name__ == "__main__":
    print(install(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()))
