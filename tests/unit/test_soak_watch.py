"""The soak watcher driven by a fake clock and a fake job: sampling grid, the partial last interval, stop
requests, a job that ends by itself, persistence after every sample, resuming from the saved state, and a
restart still under way at the planned end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_soak_uptime import kill_line
from tooling.soak import state as states
from tooling.soak.state import SoakState
from tooling.soak.uptime import analyse
from tooling.soak.watch import Observation, Watcher


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)


class FakeJob:
    """Two ranks stepping 10 steps per second from `up_at`, stalled in [stall_from, stall_to)."""

    def __init__(
        self,
        clock: FakeClock,
        up_at: float = 1003.0,
        stall: tuple[float, float] | None = None,
        ends_at: float | None = None,
        probe_seconds: float = 0.0,
    ) -> None:
        self.clock = clock
        self.up_at = up_at
        self.stall = stall
        self.ends_at = ends_at
        self.probe_seconds = probe_seconds
        self.looks = 0

    def step_at(self, t: float) -> int:
        running = t - self.up_at
        if self.stall is not None:
            start, end = self.stall
            running -= max(0.0, min(t, end) - start)
        return int(10 * running)

    def observe(self) -> Observation:
        self.looks += 1
        t = self.clock.t
        self.clock.t += self.probe_seconds  # looking takes time (SSH), the sample keeps its start time
        if t < self.up_at:
            return Observation([])
        statuses = [
            {"rank": r, "step": self.step_at(t), "state": "running", "restart_count": 0, "pid": 10 + r}
            for r in range(2)
        ]
        return Observation(statuses)

    def ended(self, observation: Observation) -> str | None:
        if self.ends_at is not None and self.clock.t >= self.ends_at:
            return "torchrun exited with code 1"
        return None

    def position(self) -> dict[str, Any]:
        return {"looks": self.looks}


class RestartingJob(FakeJob):
    """Rank 1 (pid 11) is killed at `kill_at`: both status files stay at that step and the launcher logs the
    failure once; the restarted group (restart count 1, new pids) reports from `back_at`, stepping on from
    the checkpoint of step `resumed`."""

    def __init__(
        self, clock: FakeClock, kill_at: float, back_at: float, resumed: int, up_at: float = 1000.0
    ) -> None:
        super().__init__(clock, up_at=up_at)
        self.kill_at = kill_at
        self.back_at = back_at
        self.resumed = resumed
        self.logged = False

    def observe(self) -> Observation:
        t = self.clock.t
        if t < self.kill_at:
            return super().observe()
        self.looks += 1
        if t < self.back_at:
            events = [] if self.logged else [kill_line(11)]
            self.logged = True
            step, count, pid = self.step_at(self.kill_at), 0, 10
        else:
            events, step, count, pid = [], self.resumed + int(10 * (t - self.back_at)), 1, 20
        statuses = [
            {"rank": r, "step": step, "state": "running", "restart_count": count, "pid": pid + r}
            for r in range(2)
        ]
        return Observation(statuses, {}, events)


def new_state(duration: float = 60.0, interval: float = 10.0) -> SoakState:
    return SoakState(
        id="soak-test",
        phase="1",
        mode="local",
        world_size=2,
        phase_world_size=4,
        duration_s=duration,
        interval_s=interval,
        samples_per_step=32,
    )


def watcher(
    state: SoakState,
    job: FakeJob,
    clock: FakeClock,
    root: Path,
    stop: Callable[[], bool] = lambda: False,
) -> tuple[Watcher, list[int]]:
    saved: list[int] = []

    def persist(s: SoakState) -> None:
        states.save(s, root)
        saved.append(len(s.samples))

    return Watcher(state, job, clock, persist, stop), saved


def test_waits_for_every_rank_then_samples_on_a_grid_until_the_planned_end(tmp_path: Path) -> None:
    clock = FakeClock()
    state = new_state(duration=55.0)
    w, saved = watcher(state, FakeJob(clock, probe_seconds=0.5), clock, tmp_path)
    assert w.wait_for_ranks(timeout_s=60, poll_s=2) is None
    # Polls at 1000, 1002.5 (each look takes 0.5 s, then 2 s between), 1005: the first to see both ranks.
    assert state.watch_start == 1005.0
    assert state.end_at == 1060.0
    assert w.watch() == "completed"
    times = [s.t for s in state.samples]
    # On the grid from the first sample although every look takes 0.5 s; the last one at the planned end.
    assert times == [1005, 1015, 1025, 1035, 1045, 1055, 1060]
    assert saved == [1, 2, 3, 4, 5, 6, 7], "state must be persisted after every sample"
    assert states.load(tmp_path, "soak-test").samples == state.samples
    assert state.job["position"] == {"looks": 9}
    result = analyse(state.samples, 2, 32, 10, planned_end=state.end_at)
    assert result.uptime_ratio == 1.0
    assert [i.seconds for i in result.intervals][-1] == 5


def test_wait_for_ranks_gives_up_with_the_reason(tmp_path: Path) -> None:
    clock = FakeClock()
    w, _ = watcher(new_state(), FakeJob(clock, up_at=10_000), clock, tmp_path)
    assert w.wait_for_ranks(timeout_s=30) == "only 0 of 2 ranks were running after 30 s"
    assert clock.t == pytest.approx(1030)
    ended = FakeJob(clock, up_at=10_000, ends_at=0)
    w2, _ = watcher(new_state(), ended, clock, tmp_path)
    assert "the job ended before every rank reported: torchrun exited" in (w2.wait_for_ranks(30) or "")


def test_stall_is_seen_and_the_loop_keeps_sampling(tmp_path: Path) -> None:
    clock = FakeClock()
    state = new_state(duration=60.0)
    w, _ = watcher(state, FakeJob(clock, up_at=1000, stall=(1020, 1045)), clock, tmp_path)
    assert w.wait_for_ranks(60) is None
    assert w.watch() == "completed"
    result = analyse(state.samples, 2, 32, 10, planned_end=state.end_at)
    # Samples at 1000..1060: intervals ending 1030 and 1040 saw no progress.
    assert [i.kind for i in result.intervals] == ["up", "up", "down", "down", "up", "up"]
    assert [(i.start, i.end) for i in result.incidents] == [(1020, 1040)]


def test_stop_request_ends_watching_as_interrupted_with_samples_kept(tmp_path: Path) -> None:
    clock = FakeClock()
    state = new_state(duration=3600.0)
    job = FakeJob(clock, up_at=1000)
    w, saved = watcher(state, job, clock, tmp_path, stop=lambda: clock.t >= 1035)
    assert w.wait_for_ranks(60) is None
    assert w.watch() == "interrupted"
    assert [s.t for s in state.samples] == [1000, 1010, 1020, 1030]
    assert saved[-1] == 4


def test_job_ending_by_itself_ends_the_soak_early(tmp_path: Path) -> None:
    clock = FakeClock()
    state = new_state(duration=60.0)
    w, _ = watcher(state, FakeJob(clock, up_at=1000, ends_at=1020), clock, tmp_path)
    assert w.wait_for_ranks(60) is None
    assert w.watch() == "ended-early"
    assert state.ended == {"at": 1020, "reason": "torchrun exited with code 1"}
    assert states.load(tmp_path, "soak-test").ended == state.ended


def test_killed_soak_resumes_from_saved_state_and_finishes_at_the_original_end(tmp_path: Path) -> None:
    clock = FakeClock()
    job = FakeJob(clock, up_at=1000)
    first = new_state(duration=100.0)
    # The soak process is killed (no chance to clean up) while sleeping after its 4th sample.
    w, _ = watcher(first, job, clock, tmp_path, stop=lambda: len(first.samples) >= 4)
    assert w.wait_for_ranks(60) is None
    w.watch()
    clock.t = 1047.0  # the kill and the restart of `tooling soak --resume` took 17 s

    resumed = states.load(tmp_path, "soak-test")
    assert [s.t for s in resumed.samples] == [1000, 1010, 1020, 1030]  # nothing lost but the interval
    assert resumed.end_at == 1100
    w2, _ = watcher(resumed, job, clock, tmp_path)
    assert w2.watch() == "completed"
    times = [s.t for s in resumed.samples]
    assert times == [1000, 1010, 1020, 1030, 1047, 1050, 1060, 1070, 1080, 1090, 1100]
    result = analyse(resumed.samples, 2, 32, 10, planned_end=resumed.end_at)
    assert result.uptime_ratio == 1.0 and result.unobserved_seconds == 0


def test_resumed_long_after_the_planned_end_does_not_sample_outside_the_window(tmp_path: Path) -> None:
    clock = FakeClock()
    job = FakeJob(clock, up_at=1000)
    state = new_state(duration=40.0)
    w, _ = watcher(state, job, clock, tmp_path, stop=lambda: len(state.samples) >= 2)
    assert w.wait_for_ranks(60) is None
    w.watch()
    clock.t = 5000.0
    resumed = states.load(tmp_path, "soak-test")
    w2, _ = watcher(resumed, job, clock, tmp_path)
    assert w2.watch() == "completed"
    assert [s.t for s in resumed.samples] == [1000, 1010]
    result = analyse(resumed.samples, 2, 32, 10, planned_end=resumed.end_at)
    assert result.unobserved_seconds == 30 and result.uptime_ratio == 1.0


def restarting_at_the_end(tmp_path: Path, back_at: float) -> tuple[SoakState, Watcher]:
    """A 60 s soak from t=1000 whose job took 30 s to start and loses rank 1 at 1045, 15 s before the end."""
    clock = FakeClock()
    state = new_state(duration=60.0)
    state.started_at = clock.t - 30.0
    w, _ = watcher(state, RestartingJob(clock, kill_at=1045, back_at=back_at, resumed=400), clock, tmp_path)
    assert w.wait_for_ranks(60) is None
    return state, w


def test_the_planned_end_waits_for_a_restarting_group_outside_the_uptime_window(tmp_path: Path) -> None:
    state, w = restarting_at_the_end(tmp_path, back_at=1065)
    assert w.grace_s() == 40  # one interval and the 30 s the job took to start
    assert w.watch() == "completed"
    # Back from 400 at 1065: at 1070 it is at 450 (the old high, not past it), at 1080 at 550.
    assert [(s.t, s.after_end) for s in state.samples][-3:] == [(1060, False), (1070, True), (1080, True)]
    assert (
        "the planned end came while the worker group was restarting (the launcher logged rank 1"
        in (state.notes[0])
    )
    assert state.notes[-1] == "the worker group was back 20 s after the planned end, at step 550"
    assert states.load(tmp_path, "soak-test").samples == state.samples

    result = analyse(state.samples, 2, 32, 10, planned_end=state.end_at)
    [restart] = result.restarts
    assert restart.seen_in == "samples" and restart.causes == [
        "rank 1 (local rank 1, pid 11) killed by SIGKILL at step 450"
    ]
    # The window is the planned 60 s: only 1050 -> 1060 (no progress after the kill) is down in it.
    assert result.uptime_ratio == pytest.approx(50 / 60)
    assert result.after_end == {"looks": 2, "until": 1080, "back_at": 1080, "down_s": 20}
    assert result.incidents[-1].after_end_s == 20


def test_a_group_that_does_not_come_back_in_time_is_left_to_the_summary(tmp_path: Path) -> None:
    state, w = restarting_at_the_end(tmp_path, back_at=10_000)
    assert w.watch() == "completed"
    assert [s.t for s in state.samples if s.after_end] == [1070, 1080, 1090, 1100]
    assert state.notes[-1].startswith("the worker group was not back 40 s after the planned end")
    # The looks never saw the restart; the run summary, read after the stop, has its incarnation.
    incarnations: list[dict[str, Any]] = [
        {"restart_count": 0, "resumed_from_step": None, "started_at": 970.0},
        {"restart_count": 1, "resumed_from_step": 400, "started_at": 1101.0},
    ]
    result = analyse(state.samples, 2, 32, 10, planned_end=state.end_at, incarnations=incarnations)
    [restart] = result.restarts
    assert restart.seen_in == "run summary" and (restart.after, restart.detected_at) == (1100, 1101)
    assert "killed by SIGKILL" in restart.causes[0] and result.unrestarted_failures == []
    assert result.after_end is not None and result.after_end["back_at"] is None
    assert result.after_end["down_s"] == 40


def test_a_stall_at_the_planned_end_is_not_waited_for(tmp_path: Path) -> None:
    clock = FakeClock()
    state = new_state(duration=60.0)
    w, _ = watcher(state, FakeJob(clock, up_at=1000, stall=(1045, 2000)), clock, tmp_path)
    assert w.wait_for_ranks(60) is None
    assert w.watch() == "completed"
    assert state.samples[-1].t == 1060 and not any(s.after_end for s in state.samples)
