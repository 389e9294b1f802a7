"""jobspec-do's own configuration: one file, overridden by the command line.

Looked up in order: ``--config FILE``, ``jobspec-do.yaml`` beside the spec,
``$XDG_CONFIG_HOME/jobspec-do/config.yaml`` (``~/.config/jobspec-do/config.yaml``). Keys:

    transformer: slurm            # default transformer (else $JOBSPEC_DO_TRANSFORMER, else local)
    state_dir: /scratch/me/state  # where records live (relative: to the config file)
    jobs: 8
    stager: ssh                   # shared (default), ssh, flux-archive, sbcast
    nodes: [node1, node2]         # for the ssh stager
    ssh: {port: 22, user: me, key_file: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts,
          remote_root: "", trust_unknown_hosts: false}
    callback: https://example.org/hook   # state-change webhooks (secret: see the README)
    burst: [{plugin: flux, uri: "local:///...", after: 30s}]   # see dodo_jobspec/bursters/
    burst_selector: pkg.mod:func  # which tasks may burst (default: attribute burstable: true)
    burst_order: pkg.mod:func     # the order bursters are tried in (default: as listed)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError, suggest

KEYS = ("transformer", "state_dir", "jobs", "stager", "nodes", "ssh", "callback", "burst",
        "burst_selector", "burst_order")
SSH_KEYS = ("port", "user", "key_file", "known_hosts", "remote_root", "trust_unknown_hosts",
            "parallel", "retries")


@dataclass(frozen=True)
class Config:
    """The effective configuration (file values; the CLI overrides them)."""

    path: Path | None = None
    transformer: str | None = None
    state_dir: Path | None = None
    jobs: int | None = None
    stager: str | None = None
    nodes: tuple[str, ...] = ()
    ssh: dict[str, Any] = field(default_factory=dict)
    callback: str | None = None
    # Checked by bursters.policy.build, which knows each burster's settings.
    burst: Any = None  # the raw `burst:` list
    burst_selector: str | None = None
    burst_order: str | None = None


def find(spec: Path, explicit: Path | None = None) -> Path | None:
    """The configuration file that applies to ``spec``, if any."""
    if explicit is not None:
        return explicit
    beside = spec.resolve().parent / "jobspec-do.yaml"
    if beside.is_file():
        return beside
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = home / "jobspec-do" / "config.yaml"
    return user if user.is_file() else None


def load(spec: Path, explicit: Path | None = None) -> Config:
    """Read the configuration for ``spec``; SpecError (with the line) if it is malformed."""
    path = find(spec, explicit)
    if path is None:
        return Config()
    from .spec.source import read_document

    doc = read_document(path)
    data = doc.data
    problems = []
    for key in data:
        if key not in KEYS:
            near = suggest(str(key), KEYS)
            problems.append(doc.problem(f"unknown configuration key '{key}'", [key],
                                        f"did you mean '{near}'?" if near else
                                        "known keys: " + ", ".join(KEYS), at_key=True))
    for key in data.get("ssh") or {}:
        if key not in SSH_KEYS:
            near = suggest(str(key), SSH_KEYS)
            problems.append(doc.problem(f"unknown ssh setting '{key}'", ["ssh", key],
                                        f"did you mean '{near}'?" if near else None,
                                        at_key=True))
    jobs = data.get("jobs")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        problems.append(doc.problem(f"jobs must be a positive whole number, not {jobs!r}",
                                    ["jobs"], "e.g. `jobs: 8`; leave it out for the default"))
    for key in ("transformer", "stager", "state_dir", "callback", "burst_selector",
                "burst_order"):
        if data.get(key) is not None and not isinstance(data[key], str):
            problems.append(doc.problem(f"{key} must be a string, not {data[key]!r}", [key]))
    nodes = data.get("nodes") or ()
    if isinstance(nodes, str):
        nodes = [n.strip() for n in nodes.split(",") if n.strip()]
    if not isinstance(nodes, list | tuple):
        problems.append(doc.problem("nodes must be a list of host names", ["nodes"]))
        nodes = ()
    if problems:
        raise SpecError(problems)
    base = path.resolve().parent
    state = data.get("state_dir")
    ssh = dict(data.get("ssh") or {})
    for key in ("key_file", "known_hosts"):
        if ssh.get(key):
            ssh[key] = Path(os.path.expanduser(str(ssh[key])))
    return Config(path=path, transformer=data.get("transformer"),
                  state_dir=(base / os.path.expanduser(state)) if state else None,
                  jobs=data.get("jobs"), stager=data.get("stager"),
                  nodes=tuple(str(n) for n in nodes), ssh=ssh, callback=data.get("callback"),
                  burst=data.get("burst"),
                  burst_selector=data.get("burst_selector"), burst_order=data.get("burst_order"))


def transformer_name(given: str | None, configured: str | None = None) -> str:
    """-t, else the config file's, else $JOBSPEC_DO_TRANSFORMER, else local."""
    return given or configured or os.environ.get("JOBSPEC_DO_TRANSFORMER") or "local"
