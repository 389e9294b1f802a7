"""Time `jobspec-do validate` on generated 10,000-task specs, cold (parse cache off) and
warm, as medians of interleaved runs. Usage: python benchmarks/validate.py [N] [ROUNDS]"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import write


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    exe = shutil.which("jobspec-do", path=str(Path(sys.executable).parent)) or "jobspec-do"
    folder = Path(tempfile.mkdtemp(prefix="jsd-validate-"))
    specs = {kind: write(kind, n, folder / kind) for kind in ("fan", "chain")}
    times: dict[str, list[float]] = {}
    try:
        for _ in range(rounds):
            for kind, spec in specs.items():
                for mode, env in (("cold", {"JOBSPEC_DO_CACHE": "0"}), ("warm", {})):
                    t = time.perf_counter()
                    subprocess.run([exe, "validate", str(spec)], check=True,
                                   env={**os.environ, **env}, stdout=subprocess.DEVNULL)
                    times.setdefault(f"{kind} {mode}", []).append(time.perf_counter() - t)
    finally:
        shutil.rmtree(folder)
    for label, values in times.items():
        print(f"validate {n} tasks, {label}: median {statistics.median(values):.2f} s "
              f"(min {min(values):.2f}, max {max(values):.2f}, {rounds} runs)")


if __name__ == "__main__":
    main()
