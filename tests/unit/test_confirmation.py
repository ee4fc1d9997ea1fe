"""The destructive commands (stop, deploy --restart, sandbox down, sweep --lock) ask "... [y/N]" on a
terminal, saying what they will do; --yes skips the question; without a terminal (scripts, CI) they go on as
before and say nobody confirmed. The question is answered here through CliRunner's input with the terminal
check faked; a real pseudo-terminal checks the prompt itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.panel_text import flat
from tests.unit.pty_run import run_in_pty
from tests.unit.test_deployment_following import _closed_port, _deployed, _inventory
from tooling import console as console_module
from tooling.cli import app
from tooling.job import cluster
from tooling.job import deploy as deploy_module
from tooling.sandbox import cluster as sandbox_cluster
from tooling.sandbox.cli import sandbox_app

runner = CliRunner()


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_module, "interactive", lambda: True)


@pytest.fixture
def stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Run run-a of phase 2a recorded; cluster.stop replaced by a recorder of the inventories it got."""
    _deployed(_inventory(tmp_path / "inventory", _closed_port()), "run-a", "2a", 1000.0)
    called: list[Path] = []
    monkeypatch.setattr(cluster, "stop", lambda inventory, _timeout: called.append(inventory))
    return called


QUESTION = "Stop run run-a (phase 2a, 8 ranks) on node1, node2? Every rank stops after a final checkpoint"


@pytest.mark.usefixtures("terminal")
@pytest.mark.parametrize(("answer", "stopped"), [("y", True), ("yes", True), ("n", False), ("", False)])
def test_stop_asks_which_run_on_which_hosts(stops: list[Path], answer: str, stopped: bool) -> None:
    result = runner.invoke(app, ["stop"], input=answer + "\n")
    assert f"{QUESTION} [y/N]" in flat(result.output)
    assert bool(stops) is stopped
    assert result.exit_code == (0 if stopped else 1)
    if not stopped:
        assert "nothing done" in result.output


@pytest.mark.usefixtures("terminal")
def test_yes_skips_the_question(stops: list[Path]) -> None:
    result = runner.invoke(app, ["stop", "-y"])
    assert result.exit_code == 0 and stops and "[y/N]" not in result.output


def test_without_a_terminal_it_goes_on_and_says_nobody_confirmed(stops: list[Path]) -> None:
    result = runner.invoke(app, ["stop"])
    assert result.exit_code == 0 and stops
    assert f"no terminal to confirm on, going on (as with --yes): {QUESTION}" in flat(result.output)
    quiet = runner.invoke(app, ["stop", "--yes"])
    assert quiet.exit_code == 0 and "no terminal" not in quiet.output


@pytest.mark.usefixtures("terminal")
def test_deploy_restart_names_the_run_it_replaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = _inventory(tmp_path / "inventory", _closed_port())
    _deployed(inventory, "run-a", "2a", 1000.0)

    def no_deploy(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("deployed although the question was declined")

    monkeypatch.setattr(deploy_module, "deploy", no_deploy)
    result = runner.invoke(app, ["deploy", "-p", "1", "-i", str(inventory), "--restart"], input="n\n")
    assert result.exit_code == 1, result.output
    said = "Replace run run-a (phase 2a) on node1, node2 with a new run of phase 1? Its ranks are stopped"
    assert said in flat(result.output) and "nothing done" in result.output
    # Without --restart nothing is replaced, so nothing is asked (the plan preview neither).
    preview = runner.invoke(app, ["deploy", "-p", "1", "-i", str(inventory), "--plan", "--offline"])
    assert "[y/N]" not in preview.output


@pytest.mark.usefixtures("terminal")
def test_sandbox_down_asks_what_it_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    removed: list[str] = []
    monkeypatch.setattr(
        sandbox_cluster, "down", lambda settings, purge: removed.append(settings.prefix) or []
    )
    args = ["down", "--prefix", "box", "--state-dir", str(tmp_path / "state"), "--inventory", str(tmp_path)]
    declined = runner.invoke(sandbox_app, args, input="n\n")
    assert declined.exit_code == 1 and not removed
    assert f"Remove sandbox 'box': its containers, network, inventory {tmp_path}" in flat(declined.output)
    accepted = runner.invoke(sandbox_app, [*args, "--purge"], input="y\n")
    assert accepted.exit_code == 0 and removed == ["box"] and "and the node image?" in flat(accepted.output)
    assert runner.invoke(sandbox_app, [*args, "--yes"]).exit_code == 0 and removed == ["box", "box"]


def test_on_a_real_terminal_the_question_waits_for_the_answer(tmp_path: Path) -> None:
    """`tooling stop` on a pseudo-terminal: the question shows, "n" ends it with nothing done."""
    _deployed(_inventory(tmp_path / "inventory", _closed_port()), "run-a", "2a", 1000.0)
    code, out = run_in_pty(["stop"], answer="n", wait_for="[y/N]")
    assert code == 1, out
    assert f"{QUESTION} [y/N]" in flat(out) and "nothing done" in out
