"""Soak state and record on disk, and `tooling soak` end to end on a fake job: Ctrl-C writes an interrupted
record and leaves the job running; `--resume` watches the same job to the original end and finishes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.panel_text import flat
from tests.unit.test_soak_watch import FakeClock, FakeJob, RestartingJob, new_state
from tooling.cli import app
from tooling.console import ToolingError
from tooling.soak import cli as soak_cli
from tooling.soak import jobs as soak_jobs
from tooling.soak import state as states
from tooling.soak.samples import RankObs, Sample

runner = CliRunner()


def test_state_round_trips_atomically(tmp_path: Path) -> None:
    state = new_state()
    state.samples = [
        Sample(1.0, {0: RankObs(0, 5, "running", 1, 42, "node1")}, {"node2": "timed out"}, ("x",))
    ]
    state.job = {"kind": "local", "position": {"log_offset": 17}}
    path = states.save(state, tmp_path)
    assert path == tmp_path / "soak-test" / "state.json"
    assert states.load(tmp_path, "soak-test") == state
    assert [p.name for p in path.parent.iterdir()] == ["state.json"], "no temp file may be left behind"


def test_state_errors_name_the_soak_and_the_fix(tmp_path: Path) -> None:
    states.save(new_state(), tmp_path)
    with pytest.raises(ToolingError, match="no soak 'other'") as caught:
        states.load(tmp_path, "other")
    assert caught.value.hint and "soak-test" in caught.value.hint
    (tmp_path / "soak-test" / "state.json").write_text('{"schema": 99}')
    with pytest.raises(ToolingError, match="schema"):
        states.load(tmp_path, "soak-test")
    with pytest.raises(ToolingError, match="names a directory"):
        states.check_id("../escape")


class CliJob(FakeJob):
    """A fake job for the CLI: it presses Ctrl-C on the soak at its `interrupt_at`-th look."""

    def __init__(self, clock: FakeClock, interrupt_at: int | None = None) -> None:
        super().__init__(clock, up_at=clock.t)
        self.interrupt_at = interrupt_at
        self.stopped: list[float] = []

    def observe(self) -> Any:
        obs = super().observe()
        if self.interrupt_at is not None and self.looks == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        return obs

    def to_json(self) -> dict[str, Any]:
        return {"kind": "fake", "run_id": "s1", "run_dir": "/nowhere/s1"}

    def how_to_stop(self) -> str:
        return "fake job 1; stop it with magic"

    def stop(self, timeout_s: float) -> str:
        self.stopped.append(self.clock.t)
        return "stopped cleanly (STOP file)"

    def fetch_summary(self) -> tuple[dict[str, Any], str]:
        step = self.step_at(self.clock.t)
        summary = {
            "status": "stopped",
            "steps": step,
            "checkpoints": {"last_step": step, "last_file": f"step-{step}.pt"},
            "restarts": 0,
            "incarnations": [{"restart_count": 0, "resumed_from_step": None}],
        }
        return summary, "/nowhere/s1/summary.json"


@pytest.fixture
def fake_soak(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeClock, CliJob]:
    clock = FakeClock(t=2000.0)
    job = CliJob(clock, interrupt_at=4)
    monkeypatch.setattr(soak_cli, "RealClock", lambda stop: clock)
    monkeypatch.setattr(soak_cli, "_start_local", lambda *args: job)
    monkeypatch.setattr(soak_jobs, "job_from_state", lambda data: job)  # imported where it is used
    return clock, job


def test_interrupt_then_resume_finishes_the_record(
    tmp_path: Path, fake_soak: tuple[FakeClock, CliJob]
) -> None:
    clock, job = fake_soak
    base = ["soak", "--soak-dir", str(tmp_path)]
    new = [*base, "--phase", "1", "--local", "--nproc", "2", "--duration", "60s", "--interval", "10s"]
    result = runner.invoke(app, [*new, "--run-id", "s1", "--set", "training.batch_size=8"])
    assert result.exit_code == 1, result.output
    out = flat(result.output)
    assert "soak s1 interrupted (SIGINT)" in out
    assert "The job is still running (fake job 1; stop it with magic)" in out
    assert "tooling soak --resume s1" in out
    assert job.stopped == [], "an interrupted soak must leave the job running"

    record = json.loads((tmp_path / "s1" / "soak.json").read_text())
    assert record["status"] == "interrupted" and record["job_left_running"] is True
    # The look during which Ctrl-C came still counts; none after it.
    assert record["samples"] == 4 and record["final"] is None
    assert record["uptime"]["ratio"] == 1.0
    # 8 per rank x 2 ranks, 10 steps a second.
    assert record["throughput"]["mean"] == pytest.approx(160.0)
    assert "the job was left running" in (tmp_path / "s1" / "soak.md").read_text()
    state = states.load(tmp_path, "s1")
    assert state.status == "interrupted" and state.end_at == 2060.0

    # The same id again is refused: it would overwrite the soak.
    again = runner.invoke(app, [*new, "--run-id", "s1"])
    assert again.exit_code == 2 and "already exists" in flat(again.output)

    clock.t = 2035.0
    job.interrupt_at = None
    resumed = runner.invoke(app, [*base, "--resume", "s1"])
    assert resumed.exit_code == 0, resumed.output
    record = json.loads((tmp_path / "s1" / "soak.json").read_text())
    assert record["status"] == "completed" and record["job_left_running"] is False
    assert record["start"] == 2000.0 and record["end"] == 2060.0 == record["planned_end"]
    times = [s.t for s in states.load(tmp_path, "s1").samples]
    assert times == [2000, 2010, 2020, 2030, 2040, 2050, 2060]
    assert record["uptime"]["ratio"] == 1.0 and record["uptime"]["unobserved_s"] == 0
    assert job.stopped == [2060.0]
    assert record["final"]["status"] == "stopped" and record["final"]["checkpoint_step"] == 600
    assert record["resumed_at"] and states.load(tmp_path, "s1").status == "finished"

    done = runner.invoke(app, [*base, "--resume", "s1"])
    assert done.exit_code == 2 and "has already finished" in flat(done.output)


def test_resume_refuses_new_settings(tmp_path: Path, fake_soak: tuple[FakeClock, CliJob]) -> None:
    result = runner.invoke(app, ["soak", "--soak-dir", str(tmp_path), "--resume", "s1", "--duration", "1h"])
    assert result.exit_code == 2 and "drop --duration" in flat(result.output)
    missing = runner.invoke(app, ["soak", "--soak-dir", str(tmp_path), "--resume", "nope"])
    assert missing.exit_code == 2 and "no soak 'nope'" in flat(missing.output)


def test_job_that_ends_early_exits_1_with_the_window_counted_down(
    tmp_path: Path, fake_soak: tuple[FakeClock, CliJob]
) -> None:
    _, job = fake_soak
    job.interrupt_at = None
    job.ends_at = 2030.0
    result = runner.invoke(
        app,
        ["soak", "--soak-dir", str(tmp_path), "--phase", "1", "--local", "--nproc", "2", "--duration", "60s",
         "--interval", "10s", "--run-id", "s2"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "the job ended before the soak's planned end" in flat(result.output)
    record = json.loads((tmp_path / "s2" / "soak.json").read_text())
    assert record["status"] == "ended-early" and record["ended"]["at"] == 2030.0
    assert record["uptime"]["ratio"] == pytest.approx(30 / 60)
    assert job.stopped == []


class KilledNearTheEndJob(CliJob):
    """Rank 1 killed 15 s before the end of a 60 s soak; the restarted group never reports while the soak
    looks, but the run summary written at the final stop has its incarnation."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.restarting = RestartingJob(clock, kill_at=2045, back_at=10_000, resumed=400, up_at=2000)

    def observe(self) -> Any:
        return self.restarting.observe()

    def fetch_summary(self) -> tuple[dict[str, Any], str]:
        summary, where = super().fetch_summary()
        summary["steps"] = summary["checkpoints"]["last_step"] = 420
        summary["incarnations"] = [
            {"restart_count": 0, "resumed_from_step": None, "started_at": 1990.0},
            {"restart_count": 1, "resumed_from_step": 400, "started_at": self.clock.t},
        ]
        return summary, where


def test_a_restart_under_way_at_the_end_is_in_the_record(
    tmp_path: Path, fake_soak: tuple[FakeClock, CliJob], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, _ = fake_soak
    job = KilledNearTheEndJob(clock)
    monkeypatch.setattr(soak_cli, "_start_local", lambda *args: job)
    result = runner.invoke(
        app,
        ["soak", "--soak-dir", str(tmp_path), "--phase", "1", "--local", "--nproc", "2", "--duration", "60s",
         "--interval", "10s", "--run-id", "s3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "the planned end came while the worker group was restarting" in flat(result.output)
    record = json.loads((tmp_path / "s3" / "soak.json").read_text())
    assert record["status"] == "completed" and record["end"] - record["start"] == 60
    assert record["restarts"]["count"] == 1 and record["restarts"]["failures_without_restart"] == []
    [event] = record["restarts"]["events"]
    assert event["seen_in"] == "run summary" and event["resumed_from_step"] == 400
    assert event["causes"] == ["rank 1 (local rank 1, pid 11) killed by SIGKILL at step 450"]
    # Down from 2050 in the window; the wait past the end (2 looks, 20 s) is lost time too.
    assert record["uptime"]["ratio"] == pytest.approx(50 / 60)
    assert record["after_end"]["looks"] == 2 and record["after_end"]["back_at"] is None
    assert record["time_lost_s"] == 10 + 20
    assert job.stopped == [2080.0]
    text = (tmp_path / "s3" / "soak.md").read_text()
    assert "killed by SIGKILL" in text and "seen in the run summary" in text
