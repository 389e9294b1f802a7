"""Generate the benchmark workloads as JobSpec files: fan (N independent tasks + one that
depends on all) and chain (N tasks, each depending on the previous)."""

from __future__ import annotations

import argparse
from pathlib import Path


def fan(n: int) -> str:
    """N tasks writing out/i.txt, plus `gather` depending on all of them."""
    lines = ["version: 1", "name: fan", "tasks:"]
    for i in range(n):
        lines += [f"- name: t{i}", f"  command: echo {i} > out/{i}.txt",
                  f"  outputs: [out/{i}.txt]"]
    lines += ["- name: gather", "  command: cat out/*.txt | wc -l > out/total.txt",
              "  outputs: [out/total.txt]",
              "  depends_on: [" + ", ".join(f"t{i}" for i in range(n)) + "]"]
    return "\n".join(lines) + "\n"


def chain(n: int) -> str:
    """N tasks, each depending on the one before it."""
    lines = ["version: 1", "name: chain", "tasks:"]
    for i in range(n):
        lines += [f"- name: t{i}", f"  command: echo {i} > out/{i}.txt",
                  f"  outputs: [out/{i}.txt]"]
        if i:
            lines.append(f"  depends_on: [t{i - 1}]")
    return "\n".join(lines) + "\n"


def write(kind: str, n: int, folder: Path) -> Path:
    """Write the workload spec into ``folder`` (with its out/ directory) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "out").mkdir(exist_ok=True)
    path = folder / f"{kind}-{n}.yaml"
    path.write_text(fan(n) if kind == "fan" else chain(n))
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("kind", choices=("fan", "chain"))
    ap.add_argument("n", type=int)
    ap.add_argument("folder", type=Path)
    print(write(ap.parse_args().kind, ap.parse_args().n, ap.parse_args().folder))
