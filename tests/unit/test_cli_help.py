"""Help screens read as a user of gh or hatch expects: an on/off option is shown as a bare flag (typer
prints `<bool>` beside it, as if it took a value), a value option keeps its type, and shell completion is
offered."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.unit.test_cli_startup import COMMANDS
from tooling.cli import app


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
