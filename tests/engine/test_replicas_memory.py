"""`plan` counts replicas; it does not make one object each (#17 item 11).

100,000 replicas of one task, planned after a run (so doit's own check runs, task by task):
each replica was a doit task kept alive to the end, ~600 MB. Now each is checked and let go,
and the plan fits in a quarter of that. The limit is on the address space of a child process
(as in the fuzz test), not on time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import jobspec_do, write

LIMIT_MB = 256  # the old plan needed more than 400 MB of address space; this one ~100 MB

CHILD = textwrap.dedent("""
    import resource, sys
    limit = int(sys.argv[1]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from dodo_jobspec.cli.app import main
    try:
        sys.exit(main(sys.argv[2:]))
    except MemoryError:
        print("MemoryError", file=sys.stderr)
        sys.exit(99)
""")

SPEC = """
    version: 1
    tasks:
    - name: t
      command: "true"
      replicas: {n}
"""


def test_a_plan_of_100000_replicas_fits_in_a_bounded_memory(tmp_path: Path) -> None:
    spec = write(tmp_path, SPEC.format(n=2))
    assert jobspec_do(spec, cwd=tmp_path).returncode == 0  # doit's database now exists
    write(tmp_path, SPEC.format(n=100_000))
    r = subprocess.run([sys.executable, "-c", CHILD, str(LIMIT_MB), "plan", str(spec)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[RUN ] task/t" in r.stdout and "replicas: 100000" in r.stdout, r.stdout[-2000:]
    assert "its definition changed" in r.stdout
