"""The soak's job backends without torch: the local launcher log and status files, stopping a local job's
process group, and the cluster's journal lines and unit states."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tooling.console import ToolingError
from tooling.job import cluster, records, status
from tooling.job.torchrun import TorchrunLaunch
from tooling.remote import RemoteResult, SshTarget
from tooling.soak import jobs
from tooling.soak.causes import explain
from tooling.soak.jobs import ClusterSoakJob, LocalSoakJob

KILL = "E1125 15:55:13.048000 4348 api.py:1002] failed (exitcode: -9) local_rank: 1 (pid: 4353) of binary: x"

# A stand-in for torchrun: its command line names torch.distributed.run (what the pid-reuse guard looks
# for); it leaves when the STOP file appears, or, with "stubborn", only on a signal.
FAKE_TORCHRUN = """
import pathlib, sys, time
stop = pathlib.Path(sys.argv[1]) / "STOP"
while sys.argv[2] == "stubborn" or not stop.exists():
    time.sleep(0.05)
"""


def local_job(tmp_path: Path, pid: int = 999_999) -> LocalSoakJob:
    return LocalSoakJob("r1", tmp_path / "r1", tmp_path / "launcher.log", pid, 2)


def test_launcher_log_is_read_once_line_by_line_keeping_failures(tmp_path: Path) -> None:
    job = local_job(tmp_path)
    (tmp_path / "r1" / "status").mkdir(parents=True)
    (tmp_path / "r1" / "status" / "rank0.json").write_text(json.dumps({"rank": 0, "step": 5}))
    (tmp_path / "r1" / "status" / "rank1.json").write_text("{half a fi")
    job.log_path.write_text(f"step 20 loss 1.0\n{KILL}\nSending process 4352 closing signal SIGTERM\nfail")
    obs = job.observe()
    assert obs.statuses == [{"rank": 0, "step": 5}]
    assert obs.events == [KILL]
    with job.log_path.open("a") as log:
        log.write("ed (exitcode: 1) local_rank: 0 (pid: 12) of binary: x\n")
    # The half line from the first look is read whole by the next; the earlier lines are not read again.
    assert job.observe().events == ["failed (exitcode: 1) local_rank: 0 (pid: 12) of binary: x"]
    again = LocalSoakJob.from_json({**job.to_json(), "position": job.position()})
    assert again.observe().events == []


def test_a_reused_or_gone_pid_is_not_the_job(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert local_job(tmp_path, other.pid).alive() is False  # alive, but not torchrun
        assert "exited" in (local_job(tmp_path, other.pid).ended(jobs.Observation([])) or "")
    finally:
        other.kill()
        other.wait()
    assert local_job(tmp_path, other.pid).alive() is False


@pytest.mark.parametrize(("mode", "how"), [("polite", "stopped cleanly"), ("stubborn", "ended with SIGTERM")])
def test_stop_uses_the_stop_file_then_signals_the_process_group(tmp_path: Path, mode: str, how: str) -> None:
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    command = [sys.executable, "-c", FAKE_TORCHRUN, str(run_dir), mode, "torch.distributed.run"]
    job = LocalSoakJob.start(TorchrunLaunch(command, {}), run_dir, tmp_path / "launcher.log", 2)
    try:
        # Found again from its saved state, as by `--resume` in a new process (not its parent).
        found = LocalSoakJob.from_json(job.to_json())
        deadline = time.monotonic() + 10
        while not found.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert found.alive() and found.ended(jobs.Observation([])) is None
        assert how in job.stop(timeout_s=0.5)
        assert (run_dir / "STOP").exists()
        assert not job.alive()
    finally:
        if job.alive():
            job._proc.kill()  # type: ignore[union-attr]


def test_cluster_journal_lines_are_new_only_and_name_their_node() -> None:
    job = ClusterSoakJob(Path("inv"), ["node1", "node2"], "r1", "/var/lib/ddp/runs/r1", 8)
    text = (
        "active\n--ddp-journal--\n"
        "1700000000.250000 node1 ddp-launch[311]: E1125 api.py:1002] failed (exitcode: -9) local_rank: 2 "
        "(pid: 77) of binary: /usr/bin/python3\n"
        "garbage line\n"
    )
    [event] = job.parse_journal("node1", text)
    assert event.startswith("node1: node1 ddp-launch[311]:")
    assert job.parse_journal("node1", text) == [], "--since has whole seconds: lines come again, once kept"
    assert job.position() == {"journal_since": {"node1": 1700000000.25}}
    assert explain([event], []) == ["a worker (local rank 2, pid 77, node node1) killed by SIGKILL"]
    assert job.ended(jobs.Observation([])) is None
    job.parse_journal("node2", "failed\n--ddp-journal--\n")
    assert job.ended(jobs.Observation([])) == "the trainer unit is failed on node2"
    assert "journalctl -u ddp-trainer --since @1700000000" in job.journal_command(1700000000.9)


def test_cluster_observe_reads_statuses_and_journal_from_every_node(monkeypatch: pytest.MonkeyPatch) -> None:
    job = ClusterSoakJob(Path("inv"), ["node1", "node2"], "r1", "/runs/r1", 8, "trainer")
    targets = [SshTarget("node1", "10.0.0.1"), SshTarget("node2", "10.0.0.2")]
    monkeypatch.setattr(job, "targets", lambda: targets)
    ranks = [{"rank": r, "step": 10} for r in range(4)]
    monkeypatch.setattr(
        status,
        "collect",
        lambda t, run_dir: [
            status.NodeReport("node1", ranks, 1.0),
            status.NodeReport("node2", [], None, "10.0.0.2:22: timed out"),
        ],
    )
    commands: list[str] = []

    def run_everywhere(t: list[SshTarget], command: str, timeout: float) -> dict[str, Any]:
        commands.append(command)
        return {
            "node1": RemoteResult("node1", 0, "active\n--ddp-journal--\n"),
            "node2": RemoteResult("node2", None, error="timed out"),
        }

    monkeypatch.setattr(jobs, "run_everywhere", run_everywhere)
    obs = job.observe()
    assert obs.statuses == ranks
    assert obs.unreachable == {"node2": "10.0.0.2:22: timed out"}
    assert "systemctl is-active trainer" in commands[0]
    assert job.ended(obs) is None, "an unreachable node is not a stopped job"


def test_cluster_stop_refuses_a_run_the_inventory_started_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = tmp_path / "inv"
    inventory.mkdir()
    records.save(records.Deployment("2a", "phase2a", "newer", str(inventory), ["node1"], "/runs", 4))
    ran: list[str] = []
    monkeypatch.setattr(cluster, "run_playbook", lambda playbook, **_: ran.append(playbook))
    job = ClusterSoakJob(inventory, ["node1"], "older", "/runs/older", 4)
    with pytest.raises(ToolingError, match="current run is newer, not this job's older"):
        job.stop(timeout_s=5)
    assert ran == [], "the stop playbook must not run against another run"
