"""roles/ddp_trainer/files/finished_run_wait.py, which launch runs before stopping an active run on restart:
a run with a rank still going is `running` at once (stopped as before); one whose ranks all ended is left to
end by itself (`ended`), within the grace (`timeout` past it); status files are read without following a
link the training account planted. systemctl is a stand-in here that says "active" a given number of times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.local_playbook import ROOT

SCRIPT = ROOT / "roles" / "ddp_trainer" / "files" / "finished_run_wait.py"


def _run(tmp_path: Path, states: list[str], active_polls: int, grace_s: float = 10) -> tuple[str, float]:
    status = tmp_path / "status"
    status.mkdir(exist_ok=True)
    for rank, state in enumerate(states):
        (status / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "state": state}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    counter = tmp_path / "polls"
    counter.write_text("0")
    fake = bin_dir / "systemctl"
    fake.write_text(
        f'#!/bin/sh\nn=$(cat {counter}); echo $((n + 1)) > {counter}\n[ "$n" -lt {active_polls} ]\n'
    )
    fake.chmod(0o755)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "ddp-trainer", str(status), str(grace_s)],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip(), time.monotonic() - started


def test_a_run_with_a_rank_still_training_is_stopped_as_before(tmp_path: Path) -> None:
    assert _run(tmp_path, ["completed", "running"], active_polls=100)[0] == "running"


def test_a_run_whose_ranks_all_ended_is_left_to_end(tmp_path: Path) -> None:
    said, took = _run(tmp_path, ["completed", "completed"], active_polls=2)
    assert said == "ended" and took < 8, took


def test_past_the_grace_it_is_stopped(tmp_path: Path) -> None:
    assert _run(tmp_path, ["stopped"], active_polls=100, grace_s=1.5)[0] == "timeout"


def test_no_status_or_a_planted_link_counts_as_running(tmp_path: Path) -> None:
    assert _run(tmp_path, [], active_polls=0)[0] == "running"
    secret = tmp_path / "root-only.json"
    secret.write_text(json.dumps({"state": "completed"}))
    (tmp_path / "status" / "rank0.json").symlink_to(secret)
    assert _run(tmp_path, [], active_polls=0)[0] == "running"


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"state": 3}'])
def test_an_unreadable_status_counts_as_running(tmp_path: Path, text: str) -> None:
    (tmp_path / "status").mkdir()
    (tmp_path / "status" / "rank0.json").write_text(text)
    assert _run(tmp_path, [], active_polls=0)[0] == "running"
