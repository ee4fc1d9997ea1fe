"""Durations for `tooling soak`: what parses, what is refused, and how the CLI says so (exit 2)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.unit.panel_text import flat
from tooling.cli import app
from tooling.console import EXIT_USAGE, ToolingError
from tooling.soak.duration import format_duration, parse_duration

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", 86400),
        ("90m", 5400),
        ("45s", 45),
        ("1h30m", 5400),
        ("1h30m15s", 5415),
        ("2d", 172800),
        ("1.5h", 5400),
        (" 10M ", 600),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "24", "24x", "h", "1h-30m", "30m1h", "1h1h", "0s", "0h0m", "1 h", "-5m"]
)
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ToolingError) as caught:
        parse_duration(text, "--duration")
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value).startswith("--duration")


def test_bare_number_asks_for_a_unit() -> None:
    with pytest.raises(ToolingError, match="a bare number needs a unit"):
        parse_duration("90")


@pytest.mark.parametrize(
    ("seconds", "text"), [(5400, "1h30m"), (45, "45s"), (0.4, "0s"), (90061, "1d1h1m1s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    if seconds >= 1:
        assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "24x"], "--duration: expected a duration like 24h, 90m, 45s or 1h30m"),
        (["--duration", "10m", "--interval", "soon"], "--interval: expected a duration like"),
        (["--duration", "1m", "--interval", "5m"], "--interval 5m is longer than --duration 1m"),
    ],
)
def test_cli_bad_durations_exit_2_with_the_reason(tmp_path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["soak", "--phase", "1", "--local", "--soak-dir", str(tmp_path), *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in flat(result.output)
    assert not list(tmp_path.iterdir()), "nothing may be started or written for a usage error"


def test_cli_new_soak_needs_phase_and_duration(tmp_path) -> None:
    result = runner.invoke(app, ["soak", "--soak-dir", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert "a new soak needs --phase and --duration" in flat(result.output)
