"""`tooling status --json` (one document on stdout) and `tooling status --watch [SECONDS]` (re-drawn in
place on a terminal, printed round after round elsewhere, until Ctrl-C: exit 0). The nodes' answers are
faked at the SSH layer (tooling.job.status.run_everywhere) or come from a port nobody listens on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.unit.panel_text import flat
from tests.unit.pty_run import run_in_pty
from tests.unit.test_deployment_following import _closed_port, _deployed, _inventory
from tooling.cli import app
from tooling.job import status, status_watch
from tooling.job.records import Deployment
from tooling.remote import RemoteResult, SshTarget

runner = CliRunner()


def _rank(rank: int, state: str = "running") -> dict[str, Any]:
    return {"rank": rank, "state": state, "step": 10, "max_steps": 100, "loss": 1.5, "updated_at": 99.0}


@pytest.fixture
def answering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run run-a of phase 2a: node1 reports ranks 0-3, node2 does not answer."""
    _deployed(_inventory(tmp_path / "inventory", _closed_port()), "run-a", "2a", 1000.0)

    def run_everywhere(targets: list[SshTarget], _command: str, _timeout: float) -> dict[str, Any]:
        body = "".join(f"{json.dumps(_rank(r))}\n{status.SEPARATOR}\n" for r in range(4))
        return {
            "node1": RemoteResult("node1", 0, f"100.0\n{status.SEPARATOR}\n{body}"),
            "node2": RemoteResult("node2", None, error="10.0.0.2:22: Connection refused"),
        }

    monkeypatch.setattr(status, "run_everywhere", run_everywhere)


@pytest.mark.usefixtures("answering")
def test_json_is_one_document_with_every_node_and_rank() -> None:
    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 1  # a node did not answer: partial, as without --json
    document = json.loads(result.stdout)  # the state root and the chosen deployment went to stderr
    assert document["run_id"] == "run-a" and document["state"] == "partial"
    assert document["world_size"] == 8 and document["ranks_reported"] == 4
    node1, node2 = document["nodes"]
    assert node1["reachable"] and [r["rank"] for r in node1["ranks"]] == [0, 1, 2, 3]
    assert node2 == {
        "host": "node2",
        "reachable": False,
        "error": "10.0.0.2:22: Connection refused",
        "node_time": None,
        "ranks": [],
    }
    assert "deployment: run run-a" in flat(result.stderr)


def test_json_and_watch_do_not_go_together() -> None:
    result = runner.invoke(app, ["status", "--json", "--watch"])
    assert result.exit_code == 2 and "--json prints one document: leave --watch out" in flat(result.output)


@pytest.mark.usefixtures("answering")
def test_watch_without_a_terminal_prints_round_after_round_until_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(status_watch.time, "sleep", sleep)
    result = runner.invoke(app, ["status", "--watch", "3"])
    assert result.exit_code == 0, result.output
    assert waits == [3.0, 3.0]
    assert result.output.count("4/8 ranks reported; job partial") == 2
    assert result.output.count("(every 3 s, Ctrl-C ends)") == 2
    # --watch alone: every 5 s.
    waits.clear()
    assert runner.invoke(app, ["status", "--watch"]).exit_code == 0 and waits == [5.0, 5.0]


def test_watch_below_half_a_second_or_seconds_without_watch_are_usage_errors() -> None:
    assert runner.invoke(app, ["status", "--watch", "0.1"]).exit_code == 2
    alone = runner.invoke(app, ["status", "3"])
    assert alone.exit_code == 2 and "3 seconds: that goes with --watch" in flat(alone.output)


def test_watch_on_a_terminal_redraws_in_place_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    _deployed(_inventory(tmp_path / "inventory", _closed_port()), "run-a", "2a", 1000.0)
    code, out = run_in_pty(
        ["status", "--watch", "0.5"], wait_for="ranks reported", interrupt_after_s=1.5, timeout_s=30
    )
    assert code == 0, out
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # colours off; the cursor movements stay
    assert "0/8 ranks reported; job partial" in out and "unreachable" in out
    assert "\x1b[2K" in out  # rich Live erasing the last drawing to draw the next one in its place
    assert "Ctrl-C ends" not in out  # the plain rounds are for pipes and files


def test_the_table_shows_each_ranks_compute_against_the_median_and_names_stragglers() -> None:
    split = {"compute_seconds": 0.2, "collective_wait_seconds": 0.3, "compute_ratio_to_median": 0.98}
    slow = {"compute_seconds": 0.5, "collective_wait_seconds": 0.01, "compute_ratio_to_median": 1.64}
    reports = [
        status.NodeReport("node1", [_rank(r) | split for r in range(4)], 100.0),
        status.NodeReport("node2", [_rank(r) | slow | {"straggler": True} for r in range(4, 8)], 100.0),
    ]
    record = Deployment("2a", "phase2a", "run-a", "inv", ["node1", "node2"], "/runs", 8)
    out = Console(width=200, record=True)
    out.print(status.view(status.Snapshot(record, reports, "running")))
    shown = flat(out.export_text().replace("┃", " "))
    assert "compute s wait s vs median" in shown
    assert "node1 0 running 10/100 0.0 0.200 0.300 0.98x" in shown
    assert "node2 7 running 10/100 0.0 0.500 0.010 1.64x" in shown
    assert "stragglers: rank 4 (node2), rank 5 (node2), rank 6 (node2), rank 7 (node2)" in shown
    quiet = Console(width=200, record=True)
    quiet.print(status.view(status.Snapshot(record, reports[:1], "partial")))
    assert "stragglers" not in quiet.export_text()
