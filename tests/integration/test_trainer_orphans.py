"""The torchrun agent SIGKILLed mid-run (as the OOM killer does): its workers, in sessions of their own,
stop within seconds and free their metrics ports, so a relaunch does not meet "Address already in use"."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from ddp.preflight import port_taken
from tests.integration.trainer_harness import (
    free_port_block,
    run_dir,
    torchrun_command,
    trainer_env,
    write_config,
)
from tests.process_waits import gone, wait_until

pytestmark = pytest.mark.slow


def process_states(pids: list[int]) -> str:
    """What each process was doing: its state, its threads' states and (py-spy, a dependency of the
    project) its threads' Python stacks, for a failure message."""
    states = []
    spy = Path(sys.executable).with_name("py-spy")
    for pid in pids:
        try:
            process = psutil.Process(pid)
            threads = [psutil.Process(t.id).status() for t in process.threads()]
            states.append(f"{pid}: {process.status()} (threads: {', '.join(threads)})")
        except psutil.Error as error:
            states.append(f"{pid}: {error}")
            continue
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            dump = subprocess.run(
                [str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20, check=False
            )
            states.append(f"stacks of {pid}:\n{dump.stdout}{dump.stderr}")
    return "; ".join(states)


def statuses(directory: Path) -> dict[int, dict[str, Any]]:
    found = {}
    for rank in (0, 1):
        with contextlib.suppress(FileNotFoundError, ValueError):  # not written yet, or being replaced
            found[rank] = json.loads((directory / "status" / f"rank{rank}.json").read_text())
    return found


def test_workers_of_a_killed_agent_stop_and_free_their_ports(tmp_path: Path) -> None:
    base = free_port_block(2)
    config = write_config(
        tmp_path,
        "orphans",
        {
            "training": {"max_steps": 1_000_000},
            "checkpoint": {"enabled": False},
            "metrics": {
                "enabled": True,
                "base_port": base,
                "bind_address": "127.0.0.1",
                "status_every_steps": 5,
            },
        },
    )
    directory = run_dir(tmp_path, "orphans")
    with (tmp_path / "torchrun.log").open("w") as log:
        agent = subprocess.Popen(
            torchrun_command(config, 2), stdout=log, stderr=subprocess.STDOUT, env=trainer_env(), cwd=tmp_path
        )
    workers: list[int] = []
    try:
        wait_until(
            lambda: (
                all(s.get("step", 0) >= 5 for s in statuses(directory).values())
                and len(statuses(directory)) == 2
            ),
            180,
            "both ranks training",
        )
        workers = [status["pid"] for status in statuses(directory).values()]
        assert all(port_taken("127.0.0.1", base + rank) for rank in (0, 1)), "the metrics ports are served"

        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(timeout=10)
        # The guard calls os._exit within its poll (0.5 s) plus its last words' bound (2 s). Loaded runs (2
        # cores, a training cluster or CPU hogs beside it) have seen a worker outlive 10 s and then 30 s, all
        # its threads asleep, about once in 15; so a failure says what each worker and its threads were
        # doing, with their Python stacks.
        try:
            wait_until(lambda: all(gone(pid) for pid in workers), 30, f"workers {workers} exited")
        except AssertionError as late:
            raise AssertionError(f"{late}; {process_states(workers)}") from None
        wait_until(lambda: not any(port_taken("127.0.0.1", base + rank) for rank in (0, 1)), 5, "ports freed")
    finally:
        for pid in [agent.pid, *workers]:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
    for rank, status in statuses(directory).items():
        assert status["state"] == "failed", (rank, status)
        assert status["error"].startswith(f"the torchrun agent (pid {agent.pid}) is gone"), status
        assert status["step"] >= 5, "the last status keeps the rank's progress"
