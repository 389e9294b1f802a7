"""Where a spec's state folder is when none is named.

Apart from `state.py` because a no-op re-run needs this and nothing else from the records:
`state.py` brings in the spec model, csv and json, which that path never uses.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import state_folder_name


def default_state_dir(spec_path: Path) -> Path:
    """``.jobspec-do/<stem>/`` beside the spec: specs in one folder keep separate state (a
    stem of dots, as in ``...yaml``, gets a safe name: see ``paths.state_folder_name``)."""
    return spec_path.resolve().parent / ".jobspec-do" / state_folder_name(spec_path)
