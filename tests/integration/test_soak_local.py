"""`tooling soak --local` on a real 2-process torchrun job: a rank killed mid-soak is a restart with its
cause, uptime falls below 100 % but not to 0, and the job ends with a final checkpoint. On a loaded machine
the restart can outlast the window: the record counts it all the same (tooling/soak/uptime.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.trainer_harness import trainer_env

pytestmark = pytest.mark.slow

SOAK_ID = "soak-phase1-itest"
TINY = [
    "workload.input_dim=32",
    "workload.hidden_dim=32",
    "workload.num_layers=2",
    "workload.num_samples=2048",
    "training.batch_size=16",
    "training.log_every_steps=20",
    "checkpoint.every_steps=100",
    "metrics.enabled=false",
]


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def _end_job(state: dict[str, Any] | None) -> None:
    """Leave no trainer behind when the test fails half-way (the job runs in its own session)."""
    pid = (state or {}).get("job", {}).get("launcher_pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def test_killed_rank_is_a_restart_with_its_cause_and_uptime_drops(tmp_path: Path) -> None:
    sets = [arg for item in TINY for arg in ("--set", item)]
    command = [sys.executable, "-m", "tooling.cli", "soak", "--phase", "1", "--local", "--nproc", "2",
               "--duration", "40s", "--interval", "5s", "--run-id", SOAK_ID, *sets]  # fmt: skip
    home = tmp_path / "home"  # the soak's state root: soak/<id>/ (state, record) and runs/<id>/ (the job)
    env = {**trainer_env(), "TOOLING_HOME": str(home)}
    soak = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    soak_dir = home / "soak" / SOAK_ID
    state_path = soak_dir / "state.json"
    rank1 = home / "runs" / SOAK_ID / "status" / "rank1.json"
    killed: dict[str, Any] | None = None
    try:
        # Generous: on a loaded 2-core machine the two ranks' start (torch import, rendezvous) alone can take
        # tens of seconds; the soak's own 40 s only start once every rank runs.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and soak.poll() is None:
            state = _json(state_path) or {}
            status = _json(rank1) or {}
            # Three looks into the soak (two intervals up: the window has two throughput figures even when
            # the restart outlasts it, as it can under load), past a checkpoint: kill rank 1 the hard way.
            if len(state.get("samples", [])) >= 3 and status.get("step", 0) >= 150:
                os.kill(status["pid"], signal.SIGKILL)
                killed = status
                break
            time.sleep(0.2)
        if killed is None:
            if soak.poll() is None:
                soak.kill()
            pytest.fail(
                "the soak never got three samples with rank 1 past step 150: "
                f"state {_json(state_path)}, rank 1 {_json(rank1)}, output:\n{soak.communicate()[0][-4000:]}"
            )
        # The rest of the window, a wait past its end for a restart still under way, and the final stop.
        output, _ = soak.communicate(timeout=180)
    finally:
        if soak.poll() is None:
            soak.kill()
            soak.communicate()
        _end_job(_json(state_path))
    assert soak.returncode == 0, output[-4000:]

    record = json.loads((soak_dir / "soak.json").read_text())
    assert record["status"] == "completed" and record["world_size"] == 2
    assert record["end"] - record["start"] == pytest.approx(40.0)

    restarts = record["restarts"]
    assert restarts["count"] == 1, restarts
    [event] = restarts["events"]
    [cause] = event["causes"]
    assert f"rank 1 (local rank 1, pid {killed['pid']}" in cause and "killed by SIGKILL" in cause, cause
    assert event["resumed_from_step"] is not None and event["resumed_from_step"] % 100 == 0

    ratio = record["uptime"]["ratio"]
    assert 0.0 < ratio < 1.0, record["uptime"]
    assert record["incidents"] and record["time_lost_s"] > 0
    assert record["throughput"]["intervals"] >= 2 and record["throughput"]["mean"] > 0

    final = record["final"]
    assert final["status"] == "stopped" and final["stopped"] == "stopped cleanly (STOP file)"
    assert final["checkpoint_step"] == final["steps"] > killed["step"]
    assert Path(final["checkpoint_file"]).is_file()
    assert "killed by SIGKILL" in (soak_dir / "soak.md").read_text()
    # Two processes are no evidence for phase 1's gate (four): what comes next is a soak of its own size.
    last = output.rstrip("\n").splitlines()[-1]
    assert last.startswith("next: tooling soak --phase 1 --duration ") and "phase's 4 processes" in last, last
