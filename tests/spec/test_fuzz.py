"""Malformed specs: mutations of the examples and of upstream's corpus (a fixed seed, a few
hundred cases). Each must give exit 0 or 2, with no traceback, within its time and memory."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "examples").glob("*.yaml"),
                  *(ROOT / "tests/specs/corpus").glob("*.yaml"),
                  *(ROOT / "tests/specs/draft2").glob("*.yaml")])
CASES = 300
ODD = ["", "-1", "0", "100000000000", "1e400", "~", "[]", "{}", "[[[[[]]]]]", "!!binary AA==",
       "*nowhere", "&a [*a]", '"\\x01"', "yes", "1.5h", "..", "/etc/passwd", "'", '"', "{a: 1",
       "- x", ": :", "!!python/object:os.system x", "<<: {a: 1}", "? [a]", "\t", "\x01",
       "{requires: {field: x}}", "{type: core, count: 1}", "&r {self: *r}", "2d", "a|b"]


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        if not lines:
            lines = [rng.choice(ODD)]
        i = rng.randrange(len(lines))
        how = rng.randrange(7)
        if how == 0:
            del lines[i]
        elif how == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif how == 2:  # a value replaced
            head = lines[i].split(":", 1)[0]
            lines[i] = f"{head}: {rng.choice(ODD)}"
        elif how == 3:  # indentation shifted
            lines[i] = " " * rng.choice((1, 2, 4)) + lines[i] if rng.random() < 0.5 \
                else lines[i].lstrip()
        elif how == 4:
            lines.insert(i, rng.choice(ODD))
        elif how == 5:  # cut short
            lines = lines[:i]
        else:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines) + "\n"


def test_malformed_specs_exit_0_or_2_without_traceback(tmp_path: Path) -> None:
    assert len(SOURCES) >= 20
    rng = random.Random(17)
    paths = []
    for n in range(CASES):
        source = SOURCES[n % len(SOURCES)]
        case = tmp_path / f"case{n:03d}" / source.name
        case.parent.mkdir()
        case.write_text(_mutate(rng, source.read_text()))
        paths.append(str(case))
    child = subprocess.run([sys.executable, str(Path(__file__).with_name("fuzz_child.py"))],
                           input="\n".join(paths) + "\n", capture_output=True, text=True,
                           timeout=300, cwd=tmp_path,
                           env={"PATH": "/usr/bin:/bin", "JOBSPEC_DO_CACHE": "0",
                                "PYTHONPATH": str(ROOT)})
    results = [json.loads(line) for line in child.stdout.splitlines()]
    assert len(results) == CASES, child.stderr[-2000:]
    bad = [r for r in results if not all(c in (0, 2) for c in r["codes"])]
    assert not bad, "\n\n".join(f"{r['path']}: {r['codes']}\n{r.get('error')}\n"
                                f"{Path(r['path']).read_text()}" for r in bad[:3])
    assert sum(1 for r in results if 2 in r["codes"]) > CASES // 3  # the mutations do bite
