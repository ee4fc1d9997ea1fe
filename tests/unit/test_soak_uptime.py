"""Uptime, incidents, restarts and throughput computed from recorded sample sequences (no processes)."""

from __future__ import annotations

import pytest

from tooling.soak.samples import RankObs, Sample, sample_from_statuses
from tooling.soak.uptime import MAX_REASONS, analyse, judge_intervals

KILL_LINE = (
    "E1125 15:55:13.048000 4348 torch/distributed/elastic/multiprocessing/api.py:1002] "
    "failed (exitcode: -9) local_rank: 1 (pid: 4353) of binary: /usr/bin/python3"
)


def sample(
    t: float,
    steps: list[int] | int,
    *,
    restart: int = 0,
    world: int = 2,
    absent: tuple[int, ...] = (),
    failed: tuple[int, ...] = (),
    events: tuple[str, ...] = (),
    pid_base: int = 4352,
) -> Sample:
    per_rank = steps if isinstance(steps, list) else [steps] * world
    ranks = {
        r: RankObs(r, per_rank[r], "failed" if r in failed else "running", restart, pid_base + r, "vm")
        for r in range(world)
        if r not in absent
    }
    return Sample(float(t), ranks, {}, events)


def steady(n: int, start: int = 0, per: int = 100, interval: float = 10.0) -> list[Sample]:
    return [sample(i * interval, start + i * per) for i in range(n)]


def test_all_up_is_100_percent_and_throughput_is_steady() -> None:
    result = analyse(steady(7), expected=2, samples_per_step=32, interval_s=10, planned_end=60)
    assert result.uptime_ratio == 1.0
    assert result.up_seconds == 60 and result.down_seconds == 0 and result.unobserved_seconds == 0
    assert result.incidents == [] and result.restarts == []
    # 100 steps x 32 samples per 10 s, every interval.
    assert result.throughput["mean"] == pytest.approx(320.0)
    assert result.throughput["stddev"] == pytest.approx(0.0)
    assert result.throughput["cv"] == pytest.approx(0.0)
    assert len(result.throughput["series"]) == 6


def test_throughput_sigma_and_cv_follow_the_rates() -> None:
    samples = [sample(0, 0), sample(10, 100), sample(20, 300), sample(30, 400)]
    rates = analyse(samples, 2, 10, 10).throughput
    assert [r for _, r in rates["series"]] == pytest.approx([100.0, 200.0, 100.0])
    assert rates["mean"] == pytest.approx(400 / 3)
    assert rates["stddev"] == pytest.approx(47.14045, rel=1e-5)
    assert rates["cv"] == pytest.approx(47.14045 / (400 / 3), rel=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_a_stall_of_k_intervals_is_one_incident_of_k_intervals(k: int) -> None:
    steps = [0, 100, 200] + [200] * k + [300, 400]
    samples = [sample(10 * i, s) for i, s in enumerate(steps)]
    result = analyse(samples, 2, 32, 10, planned_end=samples[-1].t)
    total = 10 * (len(steps) - 1)
    assert result.down_seconds == 10 * k
    assert result.uptime_ratio == pytest.approx((total - 10 * k) / total)
    [incident] = result.incidents
    assert (incident.start, incident.end, incident.intervals, incident.seconds) == (
        20,
        20 + 10 * k,
        k,
        10 * k,
    )
    assert "step did not advance past 200; rank(s) 0, 1 did not move" in incident.reasons


def test_a_restart_counts_with_its_cause_and_redone_steps_are_not_progress() -> None:
    samples = [
        sample(0, 0),
        sample(10, 100),
        sample(20, [150, 160]),
        # rank 1 was killed: the launcher says so; the group restarts from the checkpoint of step 100.
        sample(30, [150, 160], events=(KILL_LINE,)),
        sample(40, 120, restart=1, pid_base=5000),
        sample(50, 170, restart=1, pid_base=5000),  # above 150 again: progress resumes
        sample(60, 270, restart=1, pid_base=5000),
    ]
    incarnations = [
        {"restart_count": 0, "resumed_from_step": None},
        {"restart_count": 1, "resumed_from_step": 100},
    ]
    result = analyse(samples, 2, 32, 10, planned_end=60, incarnations=incarnations)
    kinds = [i.kind for i in result.intervals]
    # 120 after reaching 150 is work done again: down until the step passes 150.
    assert kinds == ["up", "up", "down", "down", "up", "up"]
    assert result.uptime_ratio == pytest.approx(40 / 60)
    [restart] = result.restarts
    assert (restart.count_before, restart.count_after) == (0, 1)
    assert restart.causes == ["rank 1 (local rank 1, pid 4353, node vm) killed by SIGKILL at step 160"]
    assert (restart.step_before, restart.step_after, restart.resumed_from_step) == (150, 120, 100)
    assert restart.lost_steps == 50
    [incident] = result.incidents
    assert incident.seconds == 20
    assert any("killed by SIGKILL" in r for r in incident.reasons)
    assert any("step back at 120 after reaching 150" in r for r in incident.reasons)
    assert incident.restarts == restart.causes
    # No rate for the interval that spans the restart: it mixes two incarnations.
    assert [t for t, _ in result.throughput["series"]] == [10, 20, 50, 60]


def test_a_restart_without_a_launcher_line_still_counts() -> None:
    samples = [sample(0, 0), sample(10, 100), sample(20, 40, restart=1)]
    [restart] = analyse(samples, 2, None, 10).restarts
    assert "logged no failed worker" in restart.causes[0]


def test_missing_or_failed_ranks_make_an_interval_down_even_if_others_advance() -> None:
    samples = [
        sample(0, 0),
        sample(10, 100),
        sample(20, 200, absent=(1,)),
        sample(30, 300, failed=(0,)),
        sample(40, 400),
    ]
    result = analyse(samples, 2, 32, 10)
    assert [i.kind for i in result.intervals] == ["up", "down", "down", "up"]
    reasons = result.incidents[0].reasons
    assert "no status from rank(s) 1" in reasons and "rank(s) 0 failed" in reasons
    # Ranks the job should have but never reported at all: every interval is down.
    assert analyse(steady(4), expected=4, samples_per_step=32, interval_s=10).uptime_ratio == 0.0


def test_first_interval_starts_at_the_first_sample_and_a_partial_last_counts_by_its_length() -> None:
    # Start-up before t=100 is not judged; the planned end 135 falls 5 s after the grid point 130.
    samples = [sample(100, 0), sample(110, 100), sample(120, 200), sample(130, 200), sample(135, 250)]
    result = analyse(samples, 2, 32, 10, planned_end=135)
    assert [i.seconds for i in result.intervals] == [10, 10, 10, 5]
    assert result.up_seconds == 25 and result.down_seconds == 10
    assert result.uptime_ratio == pytest.approx(25 / 35)
    # 50 steps in the 5 s partial interval is the same rate as 100 in 10 s.
    assert result.throughput["series"][-1][1] == pytest.approx(320.0)


def test_unobserved_gap_counts_neither_way_and_lowers_coverage() -> None:
    samples = [sample(0, 0), sample(10, 100), sample(100, 900), sample(110, 1000)]
    result = analyse(samples, 2, 32, 10, planned_end=110)
    assert [i.kind for i in result.intervals] == ["up", "gap", "up"]
    assert result.uptime_ratio == 1.0
    assert result.unobserved_seconds == 90
    assert result.coverage_ratio == pytest.approx(20 / 110)


def test_a_job_that_ended_early_is_down_until_the_planned_end() -> None:
    samples = [sample(0, 0), sample(10, 100), sample(20, 100)]
    result = analyse(samples, 2, 32, 10, planned_end=60, ended=(20, "torchrun exited with code 1"))
    assert result.up_seconds == 10 and result.down_seconds == 50
    assert result.incidents[-1].end == 60
    assert "job ended: torchrun exited with code 1" in result.incidents[-1].reasons


def test_planned_end_not_reached_by_samples_is_unobserved_without_an_end() -> None:
    result = analyse(steady(3), 2, 32, 10, planned_end=40)
    assert result.unobserved_seconds == 20 and result.uptime_ratio == 1.0


def test_failure_with_no_restart_after_it_is_kept() -> None:
    samples = [sample(0, 0), sample(10, 100), sample(20, 100, events=(KILL_LINE,))]
    result = analyse(samples, 2, 32, 10)
    assert result.restarts == []
    assert result.unrestarted_failures == [
        "rank 1 (local rank 1, pid 4353, node vm) killed by SIGKILL at step 100"
    ]


def test_status_files_become_samples_robustly() -> None:
    statuses = [
        {"rank": 0, "step": 10, "state": "running", "restart_count": 0, "pid": 1, "updated_at": 5.0},
        {"rank": 1, "step": 3, "state": "running", "restart_count": 0, "pid": 2, "updated_at": 1.0},
        {"rank": 1, "step": 12, "state": "running", "restart_count": 1, "pid": 3, "updated_at": 6.0},
        {"rank": "x"},
        {"step": 4},
    ]
    s = sample_from_statuses(7.0, statuses)
    assert sorted(s.ranks) == [0, 1]
    assert s.ranks[1].step == 12 and s.ranks[1].pid == 3  # the newer of two files for one rank
    assert s.global_step(2) == 10 and s.restart_count() == 1
    assert s.global_step(3) is None and s.missing(3) == [2]
    assert Sample.from_json(s.to_json()) == s


def test_judging_needs_an_earlier_step() -> None:
    samples = [sample(0, 0, absent=(1,)), sample(10, 100)]
    [interval] = judge_intervals(samples, 2, 32, max_gap_s=20)
    assert interval.kind == "down" and "no earlier step to compare with" in interval.reasons


def test_a_restart_recovered_within_one_interval_is_still_down() -> None:
    # Killed and restarted between t=20 and t=30, already past its old high (200) by t=30.
    samples = [
        sample(0, 0),
        sample(10, 100),
        sample(20, 200),
        sample(30, 260, restart=1),
        sample(40, 360, restart=1),
    ]
    result = analyse(samples, 2, 32, 10)
    assert [i.kind for i in result.intervals] == ["up", "up", "down", "up"]
    assert result.incidents[0].reasons == ["worker group restarted (0 -> 1)"]
    assert len(result.restarts) == 1


def test_a_long_outage_keeps_its_first_reasons_and_counts_the_rest() -> None:
    # A slow crawl back after a restart: every interval is "step back at <a different step>".
    samples = [sample(0, 0), sample(10, 1000)] + [sample(20 + 10 * i, 100 + i, restart=1) for i in range(20)]
    [incident] = analyse(samples, 2, 32, 10).incidents
    assert incident.intervals == 20
    assert len(incident.reasons) == MAX_REASONS and incident.more_reasons > 0
