"""jobspec-do's configuration file: what it accepts, and what it refuses with a line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dodo_jobspec import config
from dodo_jobspec.errors import SpecError
from tests.helpers import write


def _problems(tmp_path: Path, text: str) -> list[str]:
    spec = write(tmp_path, "version: 1\ntasks: [{command: [true]}]\n")
    write(tmp_path, text, "jobspec-do.yaml")
    with pytest.raises(SpecError) as err:
        config.load(spec)
    return [p.render() for p in err.value.problems]


def test_a_config_beside_the_spec_is_read(tmp_path: Path) -> None:
    spec = write(tmp_path, "version: 1\ntasks: [{command: [true]}]\n")
    write(tmp_path, """
        transformer: slurm
        jobs: 8
        state_dir: ~/never-here/../state
        nodes: a, b
        """, "jobspec-do.yaml")
    cfg = config.load(spec)
    assert (cfg.transformer, cfg.jobs, cfg.nodes) == ("slurm", 8, ("a", "b"))
    assert cfg.state_dir == tmp_path / Path("~/never-here/../state").expanduser()


@pytest.mark.parametrize("value", ["0", "-2", "'8'", "true", "2.5"])
def test_jobs_must_be_a_positive_whole_number(tmp_path: Path, value: str) -> None:
    (found,) = _problems(tmp_path, f"transformer: local\njobs: {value}\n")
    assert found.startswith(f"{tmp_path / 'jobspec-do.yaml'}:2:7: jobs: jobs must be a "
                            "positive whole number"), found
    assert "hint: e.g. `jobs: 8`" in found


def test_names_must_be_strings_and_unknown_keys_get_the_near_one(tmp_path: Path) -> None:
    found = _problems(tmp_path, "transformr: slurm\nstager: [ssh]\n")
    assert found[0].endswith("unknown configuration key 'transformr'\n    hint: did you mean "
                             "'transformer'?"), found
    assert found[1].startswith(f"{tmp_path / 'jobspec-do.yaml'}:2:9: stager: stager must be "
                               "a string"), found
