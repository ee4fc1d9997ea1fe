"""`tooling logs`: each rank's log from the nodes of the latest deployment, prefixed with node and rank.

The nodes are directories here: the SSH layer (tooling.job.logs.run_each) is replaced by one that runs the
very command `logs` would send, with sh, in the node's directory, so the remote shell (rank files, offsets
of -f, partial lines) is exercised for real; a node can be made unreachable.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.panel_text import flat
from tests.unit.test_deployment_following import _closed_port, _deployed, _inventory
from tooling import logs_cli
from tooling.cli import app
from tooling.job import logs
from tooling.remote import RemoteResult, SshTarget

runner = CliRunner()
RUN_ROOT = "/var/lib/ddp/runs"


class FakeNodes:
    """node name -> a directory standing for its file system; `down` names the nodes that do not answer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.down: dict[str, str] = {}

    def rank_file(self, host: str, rank: int) -> Path:
        path = self.root / host / RUN_ROOT.strip("/") / "run-a" / "logs" / f"rank{rank}.ndjson"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, host: str, rank: int, *messages: str, end: str = "\n") -> None:
        lines = [json.dumps({"@timestamp": "T", "log": {"level": "info"}, "message": m}) for m in messages]
        with self.rank_file(host, rank).open("a") as f:
            f.write("\n".join(lines) + end)

    def run_each(self, commands: list[tuple[SshTarget, str]], timeout_s: float = 10.0) -> dict[str, Any]:
        results = {}
        for target, command in commands:
            if target.name in self.down:
                results[target.name] = RemoteResult(target.name, None, error=self.down[target.name])
                continue
            local = command.replace(RUN_ROOT, str(self.root / target.name / RUN_ROOT.strip("/")))
            done = subprocess.run(["sh", "-c", local], capture_output=True, text=True, check=False)
            results[target.name] = RemoteResult(target.name, done.returncode, done.stdout, done.stderr)
        return results


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNodes:
    """Run run-a of phase 2a (node1, node2; 8 ranks, 4 per node) recorded as the latest deployment."""
    _deployed(_inventory(tmp_path / "inventory", _closed_port()), "run-a", "2a", 1000.0)
    fake = FakeNodes(tmp_path / "nodes")
    monkeypatch.setattr(logs, "run_each", fake.run_each)
    return fake


def _logs(*args: str) -> Any:
    return runner.invoke(app, ["logs", *args])


def test_every_rank_of_every_node_prefixed_with_node_and_rank(nodes: FakeNodes) -> None:
    nodes.write("node1", 0, "step 1", "step 2 [loss 2.3]")
    nodes.write("node2", 4, "step 1")
    result = _logs()
    assert result.exit_code == 0, result.output
    assert "deployment: run run-a, phase 2a" in flat(result.output)
    assert "node1 rank0 | T INFO step 1\nnode1 rank0 | T INFO step 2 [loss 2.3]\n" in result.output
    assert "node2 rank4 | T INFO step 1" in result.output


def test_lines_limits_each_rank_to_its_last_lines(nodes: FakeNodes) -> None:
    nodes.write("node1", 0, *[f"line {i}" for i in range(30)])
    result = _logs("-n", "2")
    assert result.exit_code == 0
    assert [line for line in result.output.splitlines() if "|" in line] == [
        "node1 rank0 | T INFO line 28",
        "node1 rank0 | T INFO line 29",
    ]


def test_rank_shows_that_rank_alone_from_the_node_it_ran_on(nodes: FakeNodes) -> None:
    nodes.write("node1", 1, "mine is node1")
    nodes.write("node2", 5, "mine is node2")
    result = _logs("--rank", "5")
    assert result.exit_code == 0, result.output
    assert "node2 rank5 | T INFO mine is node2" in result.output and "rank1" not in result.output
    # The c10d rendezvous decides where a rank runs: a rank found on no node is said so.
    result = _logs("--rank", "6")
    assert result.exit_code == 0 and "rank 6 has no log on node1, node2" in flat(result.output)


def test_node_shows_that_node_alone(nodes: FakeNodes) -> None:
    nodes.write("node1", 0, "one")
    nodes.write("node2", 4, "two")
    result = _logs("--node", "node2")
    assert result.exit_code == 0 and "node2 rank4" in result.output and "node1 rank" not in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--rank", "8"], "run run-a has no rank 8: its ranks are 0..7"),
        (["--rank", "-1"], "run run-a has no rank -1: its ranks are 0..7"),
        (["--node", "node9"], "run run-a has no node node9: its nodes are node1, node2"),
    ],
)
def test_an_unknown_rank_or_node_is_a_usage_error_naming_what_there_is(
    nodes: FakeNodes, args: list[str], said: str
) -> None:
    result = _logs(*args)
    assert result.exit_code == 2 and said in flat(result.output)


def test_an_unreachable_node_is_named_and_the_others_still_shown(nodes: FakeNodes) -> None:
    nodes.write("node1", 0, "still here")
    nodes.down["node2"] = "admin@10.0.0.2:22: Connection refused"
    result = _logs()
    assert result.exit_code == 1
    assert "node1 rank0 | T INFO still here" in result.output
    assert "node2: unreachable: admin@10.0.0.2:22: Connection refused" in flat(result.output)
    # A rank that may be on the node that did not answer: said so, not "no log".
    result = _logs("--rank", "7")
    assert result.exit_code == 1 and "it may be on node2, which could not be read" in flat(result.output)


def test_follow_prints_each_new_whole_line_once_and_ctrl_c_ends_it(
    nodes: FakeNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes.write("node1", 0, "before")
    rounds = iter(
        [
            lambda: nodes.write("node1", 0, "half", end=""),  # a line still being written: not yet
            lambda: nodes.write("node1", 0, "next", end="\n"),  # now whole (the JSON of "half" + "next")
            lambda: nodes.write("node2", 4, "a new rank file"),
        ]
    )

    def tick(_seconds: float) -> None:
        step = next(rounds, None)
        if step is None:
            raise KeyboardInterrupt
        step()

    monkeypatch.setattr(logs_cli.time, "sleep", tick)
    result = _logs("-f")
    assert result.exit_code == 0, result.output
    shown = [line for line in result.output.splitlines() if "|" in line]
    half = json.dumps({"@timestamp": "T", "log": {"level": "info"}, "message": "half"})
    assert shown[0] == "node1 rank0 | T INFO before"
    assert shown[1].startswith("node1 rank0 | " + half)  # the two writes make one line, shown once
    assert shown[2:] == ["node2 rank4 | T INFO a new rank file"]


def test_the_remote_command_quotes_the_run_directory_and_reads_as_the_files_owner() -> None:
    command = logs.read_command("/runs/it's here", 3, None, 5)
    assert "'/runs/it'\"'\"'s here/logs'" in command
    assert "setpriv --reuid=" in command and "rank3.ndjson" in command and "tail -n 5" in command


def test_a_symlinked_rank_file_is_not_read(nodes: FakeNodes) -> None:
    nodes.rank_file("node1", 0).parent.mkdir(parents=True, exist_ok=True)
    secret = nodes.root / "secret"
    secret.write_text("not a log\n")
    nodes.rank_file("node1", 0).symlink_to(secret)
    result = _logs()
    assert result.exit_code == 0 and "not a log" not in result.output
