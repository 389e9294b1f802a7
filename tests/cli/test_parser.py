"""Each invocation builds only its own command's arguments; every command still parses.

The parser lists all commands (for `--help` and "invalid choice") but fills in only the one
being run (cli/app.py, `_OneCommand`): these make sure no command lost its arguments or help.
"""

from __future__ import annotations

import pytest

from dodo_jobspec.cli.app import COMMANDS, build_parser, main


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_own_help(command: str, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: jobspec-do {command} ")
    # The same help as the parser that builds every command's arguments gives.
    full = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    assert out == full.format_help()


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out == build_parser().format_help()
    listed = out.split("positional arguments:", 1)[1]
    assert all(f"    {command} " in listed for command in COMMANDS)


def test_only_the_command_that_runs_gets_arguments() -> None:
    parser = build_parser("run")
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(choices) == set(COMMANDS)
    assert any(a.dest == "jobs" for a in choices["run"]._actions)
    assert [a.dest for a in choices["plan"]._actions] == ["help"]
