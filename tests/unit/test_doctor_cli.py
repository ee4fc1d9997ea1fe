"""`tooling doctor` through typer: usage errors exit 2; over a recorded 2a deployment whose nodes are
directories here (the SSH layer replaced by one running the very collector command with this Python), a
stopped rank is named with its node, an unreachable node by name, and a healthy run exits 0."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.test_deployment_following import _closed_port, _deployed, _inventory
from tests.unit.test_logs_cli import RUN_ROOT
from tests.unit.test_logs_cli import FakeNodes as LogNodes
from tooling.check.cluster import DEFAULT_VENV
from tooling.cli import app
from tooling.doctor import collect
from tooling.remote import SshTarget

runner = CliRunner()
NODE_PYTHON = f"{DEFAULT_VENV}/bin/python"
RANKS_PER_NODE = 4


class FakeNodes(LogNodes):
    """node -> a directory standing for its file system (as for `tooling logs`), each rank a live `sleep`
    process of this machine; the collector runs with this Python in place of the node's venv."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def run_dir(self, host: str) -> Path:
        return self.root / host / RUN_ROOT.strip("/") / "run-a"

    def start(self, host: str, rank: int) -> int:
        process = subprocess.Popen(["sleep", "120"])
        self.processes[rank] = process
        status = self.run_dir(host) / "status" / f"rank{rank}.json"
        status.parent.mkdir(parents=True, exist_ok=True)
        fields = {"rank": rank, "pid": process.pid, "state": "running", "step": 40, "updated_at": time.time()}
        status.write_text(json.dumps({**fields, "step_seconds": 0.1, "status_every_steps": 10}))
        return process.pid

    def run_each(self, commands: list[tuple[SshTarget, str]], timeout_s: float = 10.0) -> dict[str, Any]:
        here = shlex.quote(sys.executable)
        return super().run_each(
            [(t, c.replace(shlex.quote(NODE_PYTHON), here, 1)) for t, c in commands], timeout_s
        )


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNodes]:
    """run-a of phase 2a (node1: ranks 0-3, node2: ranks 4-7) recorded as the latest deployment, training."""
    _deployed(_inventory(tmp_path / "inventory", _closed_port()), "run-a", "2a", 1000.0)
    fake = FakeNodes(tmp_path / "nodes")
    for rank in range(2 * RANKS_PER_NODE):
        fake.start(f"node{rank // RANKS_PER_NODE + 1}", rank)
    monkeypatch.setattr(collect, "run_each", fake.run_each)
    yield fake
    for process in fake.processes.values():
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()


def _doctor(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["doctor", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def test_a_healthy_deployment_exits_0_with_the_exact_document(nodes: FakeNodes) -> None:
    code, report = _doctor("--phase", "2a")
    assert code == 0
    assert set(report) == {"healthy", "findings", "bundle"}
    assert (report["healthy"], report["findings"]) == (True, [])
    assert Path(report["bundle"]).is_file() and report["bundle"].endswith(".tar.gz")


def test_a_stopped_rank_on_node2_is_named_with_its_node(nodes: FakeNodes) -> None:
    nodes.processes[6].send_signal(signal.SIGSTOP)
    code, report = _doctor("--phase", "2a")
    assert code == 1
    stopped = [f for f in report["findings"] if "is stopped" in f["evidence"]]
    assert [(f["kind"], f["rank"], f["host"]) for f in stopped] == [("hang", 6, "node2")]
    assert set(stopped[0]) == {"kind", "rank", "host", "evidence", "at_fault"}
    # The ranks waiting on it are listed, not blamed.
    assert {f["host"] for f in report["findings"] if f["at_fault"]} == {"node2"}


def test_an_unreachable_node_is_named_with_the_reason(nodes: FakeNodes) -> None:
    nodes.down["node2"] = "timed out connecting to 10.0.0.2:22"
    code, report = _doctor("--phase", "2a")
    assert code == 1
    assert [(f["kind"], f["rank"], f["host"]) for f in report["findings"]] == [("unreachable", None, "node2")]
    assert "timed out connecting" in report["findings"][0]["evidence"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "--phase"),
        (["--local"], "--run"),
        (["--local", "--run", "x", "--phase", "2a"], "--local takes"),
        (["--phase", "2b"], "not 2b"),
    ],
)
def test_bad_usage_exits_2_and_says_why(nodes: FakeNodes, args: list[str], says: str) -> None:
    result = runner.invoke(app, ["doctor", *args])
    assert result.exit_code == 2
    assert says in " ".join(result.output.split())


def test_a_directory_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["doctor", "--local", "--run", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in " ".join(result.output.split())


def _next_line(*args: str) -> tuple[int, str]:
    """The exit code and the line after the findings: what to run next."""
    result = runner.invoke(app, ["doctor", *args])
    return result.exit_code, result.output.rstrip("\n").splitlines()[-1]


def test_after_a_healthy_look_the_next_command_watches_the_run(nodes: FakeNodes, tmp_path: Path) -> None:
    code, line = _next_line("--phase", "2a")
    assert (code, line) == (0, f"next: tooling status --watch --inventory {tmp_path / 'inventory'}")


def test_the_node_at_fault_is_the_one_the_next_command_quarantines(nodes: FakeNodes, tmp_path: Path) -> None:
    nodes.processes[6].send_signal(signal.SIGSTOP)
    code, line = _next_line("--phase", "2a")
    inventory = tmp_path / "inventory"
    expected = f"tooling deploy --phase 2a --inventory {inventory} --exclude node2 --reason 'doctor: hang'"
    assert (code, line) == (1, f"next: {expected}")


def test_with_every_node_at_fault_the_next_command_reads_the_first_ones_logs(
    nodes: FakeNodes, tmp_path: Path
) -> None:
    nodes.down["node1"] = nodes.down["node2"] = "timed out"
    code, line = _next_line("--phase", "2a")
    assert (code, line) == (1, f"next: tooling logs --inventory {tmp_path / 'inventory'} --node node1")
