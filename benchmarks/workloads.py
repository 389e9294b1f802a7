"""Generate the benchmark workloads: fan (N independent tasks + one that depends on all) and
chain (N tasks, each depending on the previous), as a JobSpec file and as equivalent peer inputs
(GNU Makefile, plain doit dodo.py, an xargs command list, a Snakefile).

Every form runs the same shell commands with the same dependency shape in the same folder layout:
task ``t<i>`` runs ``echo <i> > out/<i>.txt``; fan adds ``gather``, which runs
``cd out && ls | grep -v total | xargs cat | wc -l > total.txt`` after all ``t<i>``.

    python benchmarks/workloads.py fan 1000 /tmp/w                 # JobSpec only (as before)
    python benchmarks/workloads.py chain 1000 /tmp/w --tool all    # every peer's input too
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

KINDS = ("fan", "chain")
TOOLS = ("jobspec-do", "make", "doit", "xargs", "snakemake")
# Not `cat out/*.txt`: at 100,000 files the glob exceeds the kernel's argument-size limit.
# No quotes or braces: the same text goes into YAML, a Makefile, a dodo.py and a Snakefile.
GATHER = "cd out && ls | grep -v total | xargs cat | wc -l > total.txt"


@dataclass(frozen=True)
class Task:
    """One unit of work: a shell command, the file it writes and the tasks it waits for."""

    name: str
    command: str
    output: str
    depends_on: tuple[str, ...] = ()


def tasks(kind: str, n: int) -> list[Task]:
    """The tasks of workload ``kind`` at size ``n``, in definition order."""
    if kind not in KINDS:
        raise ValueError(f"unknown workload kind {kind!r}; expected one of {KINDS}")
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    out = []
    for i in range(n):
        deps = (f"t{i - 1}",) if kind == "chain" and i else ()
        out.append(Task(f"t{i}", f"echo {i} > out/{i}.txt", f"out/{i}.txt", deps))
    if kind == "fan":
        out.append(Task("gather", GATHER, "out/total.txt", tuple(f"t{i}" for i in range(n))))
    return out


def expected_outputs(kind: str, n: int) -> dict[str, str]:
    """Map each output path (relative to the work folder) to the content it must have."""
    want = {f"out/{i}.txt": f"{i}\n" for i in range(n)}
    if kind == "fan":
        want["out/total.txt"] = f"{n}\n"
    return want


def jobspec(kind: str, n: int) -> str:
    """The workload as a JobSpec YAML document."""
    lines = ["version: 1", f"name: {kind}", "tasks:"]
    for t in tasks(kind, n):
        lines += [f"- name: {t.name}", f"  command: {t.command}", f"  outputs: [{t.output}]"]
        if t.depends_on:
            lines.append("  depends_on: [" + ", ".join(t.depends_on) + "]")
    return "\n".join(lines) + "\n"


def fan(n: int) -> str:
    """N tasks writing out/i.txt, plus `gather` depending on all of them (JobSpec YAML)."""
    return jobspec("fan", n)


def chain(n: int) -> str:
    """N tasks, each depending on the one before it (JobSpec YAML)."""
    return jobspec("chain", n)


def makefile(kind: str, n: int) -> str:
    """The workload as a GNU Makefile: one rule per task, prerequisites = upstream outputs."""
    by_name = {t.name: t for t in tasks(kind, n)}
    final = "out/total.txt" if kind == "fan" else f"out/{n - 1}.txt"
    lines = [".PHONY: all", f"all: {final}", ""]
    for t in by_name.values():
        prereqs = " ".join(by_name[d].output for d in t.depends_on)
        lines += [f"{t.output}:{' ' + prereqs if prereqs else ''}", f"\t{t.command}", ""]
    return "\n".join(lines)


def dodo(kind: str, n: int, backend: str = "sqlite3") -> str:
    """The workload as a plain doit ``dodo.py``: one task per command, with targets, file_dep
    on upstream outputs and ``config_changed(command)`` (so an edited command is noticed, as
    jobspec-do notices an edited task)."""
    if kind == "fan":
        body = f'''

def task_gather():
    """Count the outputs once every t<i> has written its file."""
    return {{
        "actions": [{GATHER!r}],
        "file_dep": [f"out/{{i}}.txt" for i in range(N)],
        "targets": ["out/total.txt"],
        "uptodate": [config_changed({GATHER!r})],
        "verbosity": 0,
    }}
'''
        dep = "[]"
    else:
        body = ""
        dep = '[f"out/{i - 1}.txt"] if i else []'
    return f'''"""jobspec-do benchmark peer: {kind} workload, N={n}, as a plain doit file."""
from doit.tools import config_changed

DOIT_CONFIG = {{"backend": {backend!r}, "dep_file": ".doit.db", "verbosity": 0}}
N = {n}


def task_t():
    """One task per command: t<i> writes out/<i>.txt."""
    for i in range(N):
        cmd = f"echo {{i}} > out/{{i}}.txt"
        yield {{
            "basename": f"t{{i}}",
            "actions": [cmd],
            "file_dep": {dep},
            "targets": [f"out/{{i}}.txt"],
            "uptodate": [config_changed(cmd)],
            "verbosity": 0,
        }}
{body}'''


def xargs_commands(kind: str, n: int) -> str:
    """The ``t<i>`` command lines, one per line, in dependency order (gather is not included)."""
    return "".join(t.command + "\n" for t in tasks(kind, n) if t.name != "gather")


def xargs_script(kind: str, jobs: int = 2) -> str:
    """The floor: the same commands through ``xargs -P<jobs> -I{} sh -c '{}'`` (fan), or one
    after another (chain, ``-P1``: each command needs the previous one's output), then gather."""
    par = jobs if kind == "fan" else 1
    lines = ["#!/bin/sh", "set -e", f"xargs -P{par} -I{{}} sh -c '{{}}' < cmds.txt"]
    if kind == "fan":
        lines.append(f"sh -c '{GATHER}'")
    return "\n".join(lines) + "\n"


def snakefile(kind: str, n: int) -> str:
    """The workload as a Snakefile: one wildcard rule for t<i> (plus gather for fan)."""
    head = [f"N = {n}", 'wildcard_constraints:', '    i=r"\\d+"', ""]
    if kind == "fan":
        rules = [
            "rule all:", '    input: "out/total.txt"', "",
            "rule gather:", '    input: expand("out/{i}.txt", i=range(N))',
            '    output: "out/total.txt"', f'    shell: "{GATHER}"', "",
            "rule t:", '    output: "out/{i}.txt"',
            '    shell: "echo {wildcards.i} > out/{wildcards.i}.txt"', "",
        ]
    else:
        rules = [
            "rule all:", f'    input: "out/{n - 1}.txt"', "",
            "rule t:",
            '    input: lambda wc: [f"out/{int(wc.i) - 1}.txt"] if int(wc.i) else []',
            '    output: "out/{i}.txt"',
            '    shell: "echo {wildcards.i} > out/{wildcards.i}.txt"', "",
        ]
    return "\n".join(head + rules)


def write(kind: str, n: int, folder: Path, tool: str = "jobspec-do", jobs: int = 2) -> Path:
    """Write the workload for ``tool`` into ``folder`` (with its empty out/ directory) and return
    the main file: the JobSpec, Makefile, dodo.py, run.sh (xargs) or Snakefile."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "out").mkdir(exist_ok=True)
    if tool == "jobspec-do":
        path = folder / f"{kind}-{n}.yaml"
        path.write_text(jobspec(kind, n))
    elif tool == "make":
        path = folder / "Makefile"
        path.write_text(makefile(kind, n))
    elif tool == "doit":
        path = folder / "dodo.py"
        path.write_text(dodo(kind, n))
    elif tool == "xargs":
        (folder / "cmds.txt").write_text(xargs_commands(kind, n))
        path = folder / "run.sh"
        path.write_text(xargs_script(kind, jobs))
    elif tool == "snakemake":
        path = folder / "Snakefile"
        path.write_text(snakefile(kind, n))
    else:
        raise ValueError(f"unknown tool {tool!r}; expected one of {TOOLS}")
    return path


def main(argv: list[str] | None = None) -> None:
    """Command line: write one workload (for one tool, or for every tool in sub-folders)."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=KINDS)
    ap.add_argument("n", type=int)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--tool", choices=(*TOOLS, "all"), default="jobspec-do",
                    help="whose input to write (default: jobspec-do, the JobSpec file); "
                         "`all` writes each tool's into FOLDER/<tool>/")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="xargs -P for fan (default 2)")
    args = ap.parse_args(argv)
    if args.tool == "all":
        for tool in TOOLS:
            print(write(args.kind, args.n, args.folder / tool, tool, args.jobs))
    else:
        print(write(args.kind, args.n, args.folder, args.tool, args.jobs))


if __name__ == "__main__":
    main()
