"""Help screens read as a user of gh or hatch expects: an on/off option is shown as a bare flag (typer
prints `<bool>` beside it, as if it took a value), a value option keeps its type, and shell completion is
offered."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.unit.test_cli_startup import COMMANDS
from tooling.cli import app
from tooling.cli_examples import EXAMPLES
from tooling.dashboards.__main__ import main as dashboards_main


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "tooling")
def test_no_flag_is_shown_taking_a_value(path: tuple[str, ...]) -> None:
    shown = _help(*path)
    assert "--help" in shown and "<bool>" not in shown, shown


def test_flags_pairs_and_value_options_read_right() -> None:
    rehearse = _help("rehearse")
    assert "--local" in rehearse and "--no-local" in rehearse
    assert "<float>" in rehearse  # --timeout takes seconds: its type stays
    status = _help("status")
    assert "<path>" in status  # --inventory takes a directory


def test_shell_completion_is_offered() -> None:
    shown = _help()
    assert "--install-completion" in shown and "--show-completion" in shown


# Every command's help ends with examples an operator can type (tooling/cli_examples.py); the examples are
# checked against the commands, so a renamed or misspelt option in one fails here, not in front of a user.


def _leaf_commands() -> dict[str, Any]:
    """Every command under `tooling` that runs (not a group), by its name under `tooling`: "sandbox up".
    (typer's own copy of click's classes, hence duck typing: a group is what has subcommands.)"""
    found: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [("", typer.main.get_command(app))]
    while stack:
        name, command = stack.pop()
        if hasattr(command, "commands"):
            stack.extend((f"{name} {sub}".strip(), child) for sub, child in command.commands.items())
        else:
            found[name] = command
    return found


def _option_names(command: Any) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


def _named_options(argv: list[str]) -> list[str]:
    """The option names `argv` uses: `--grid=x` names --grid; a value such as `-1` after an option is not
    one, which click's own parse (below) judges."""
    return [word.split("=", 1)[0] for word in argv if word.startswith("-") and not word[1:2].isdigit()]


def test_every_command_has_examples_and_only_those_have() -> None:
    assert sorted(_leaf_commands()) == sorted(name for name in EXAMPLES if name != "dashboards")


@pytest.mark.parametrize("name", sorted(_leaf_commands()))
def test_help_shows_the_examples_one_per_line(name: str) -> None:
    shown = _help(*name.split())
    assert "Examples" in shown, shown
    lines = [line.strip() for line in shown.splitlines()]
    for argv, _what in EXAMPLES[name]:
        assert f"$ {argv}" in lines, shown  # the whole command line on a line of its own


@pytest.mark.parametrize(
    ("name", "argv"),
    [(name, argv) for name, examples in EXAMPLES.items() if name != "dashboards" for argv, _ in examples],
)
def test_every_example_parses_against_its_command(name: str, argv: str) -> None:
    words = shlex.split(argv)
    command_words = ["tooling", *name.split()]
    assert words[: len(command_words)] == command_words, argv
    command = _leaf_commands()[name]
    args = words[len(command_words) :]
    unknown = set(_named_options(args)) - _option_names(command)
    assert not unknown, f"{argv}: {name} has no {sorted(unknown)}"
    command.make_context(name, args)  # values of the right type, arguments where they belong


def test_dashboards_help_shows_examples_of_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        dashboards_main(["--help"])
    shown = capsys.readouterr().out
    for argv, _what in EXAMPLES["dashboards"]:
        assert f"$ {argv}" in shown, shown
        assert all(option in shown for option in _named_options(shlex.split(argv))), argv
