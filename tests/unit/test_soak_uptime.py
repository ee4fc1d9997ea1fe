"""Uptime, incidents, restarts and throughput computed from recorded sample sequences (no processes)."""

from __future__ import annotations

from typing import Any

import pytest

from tooling.soak.samples import RankObs, Sample, sample_from_statuses
from tooling.soak.uptime import MAX_REASONS, analyse, judge_intervals, restart_in_progress


def kill_line(pid: int) -> str:
    """What torchrun logs when the worker with this pid (local rank 1) was SIGKILLed."""
    return (
        "E1125 15:55:13.048000 4348 torch/distributed/elastic/multiprocessing/api.py:1002] "
        f"failed (exitcode: -9) local_rank: 1 (pid: {pid}) of binary: /usr/bin/python3"
    )


KILL_LINE = kill_line(4353)


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
    after_end: bool = False,
) -> Sample:
    per_rank = steps if isinstance(steps, list) else [steps] * world
    ranks = {
        r: RankObs(r, per_rank[r], "failed" if r in failed else "running", restart, pid_base + r, "vm")
        for r in range(world)
        if r not in absent
    }
    return Sample(float(t), ranks, {}, events, after_end)


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
    incarnations: list[dict[str, Any]] = [
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
    statuses: list[dict[str, Any]] = [
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


# Rank 1 killed after t=20 (its status stays at step 160); the launcher's line is read at t=30. Under load
# the restarted workers had not written a status by the last look at t=40, the planned end.
KILLED_BEFORE_THE_END = [
    sample(0, 0),
    sample(10, 100),
    sample(20, [150, 160]),
    sample(30, [150, 160], events=(KILL_LINE,)),
    sample(40, [150, 160]),
]
RESTARTED: list[dict[str, Any]] = [
    {"restart_count": 0, "resumed_from_step": None, "started_at": -30.0},
    {"restart_count": 1, "resumed_from_step": 100, "started_at": 47.5},
]


def test_a_restart_the_looks_missed_is_counted_from_the_run_summary_with_its_cause() -> None:
    # Only the looks: a failure and no restart (what the soak recorded before it read the summary).
    looks_only = analyse(KILLED_BEFORE_THE_END, 2, 32, 10, planned_end=40)
    assert looks_only.restarts == [] and len(looks_only.unrestarted_failures) == 1

    result = analyse(KILLED_BEFORE_THE_END, 2, 32, 10, planned_end=40, incarnations=RESTARTED)
    [restart] = result.restarts
    assert restart.seen_in == "run summary"
    assert (restart.count_before, restart.count_after) == (0, 1)
    assert restart.causes == ["rank 1 (local rank 1, pid 4353, node vm) killed by SIGKILL at step 160"]
    assert (restart.after, restart.detected_at) == (40, 47.5)
    assert (restart.step_before, restart.step_after, restart.resumed_from_step) == (150, None, 100)
    assert restart.lost_steps == 50
    assert result.unrestarted_failures == [], "the summary's restart followed the failure"
    # The window itself is judged as before: down from t=20, the restart among the incident's causes.
    assert result.uptime_ratio == pytest.approx(20 / 40)
    [incident] = result.incidents
    assert incident.restarts == restart.causes


def test_a_failure_logged_after_the_last_look_names_the_summary_s_restart() -> None:
    # Killed between the last two looks: the launcher logged it only after the last one (read at the stop).
    samples = [sample(0, 0), sample(10, 100), sample(20, [150, 160])]
    result = analyse(samples, 2, 32, 10, incarnations=RESTARTED, final_lines=[KILL_LINE])
    [restart] = result.restarts
    assert restart.seen_in == "run summary"
    assert restart.causes == ["rank 1 (local rank 1, pid 4353, node vm) killed by SIGKILL at step 160"]
    # Without a restart after it, the same line is a failure no restart followed.
    assert analyse(samples, 2, 32, 10, final_lines=[KILL_LINE]).unrestarted_failures == restart.causes


def test_restarts_the_looks_saw_are_not_counted_again_from_the_summary() -> None:
    samples = [*KILLED_BEFORE_THE_END[:4], sample(40, 120, restart=1, pid_base=5000)]
    result = analyse(samples, 2, 32, 10, incarnations=RESTARTED)
    assert [(r.seen_in, r.count_after) for r in result.restarts] == [("samples", 1)]
    # A second restart after the last look (count 2 in the summary only) is added, without a cause line.
    later: list[dict[str, Any]] = [
        *RESTARTED,
        {"restart_count": 2, "resumed_from_step": 100, "started_at": 55.0},
    ]
    result = analyse(samples, 2, 32, 10, incarnations=later)
    assert [(r.seen_in, r.count_before, r.count_after) for r in result.restarts] == [
        ("samples", 0, 1),
        ("run summary", 1, 2),
    ]
    assert "logged no failed worker" in result.restarts[1].causes[0]


def test_restart_in_progress_tells_a_restart_from_a_stall() -> None:
    assert restart_in_progress(steady(4), 2, 20) is None
    # A failure logged and no new group yet.
    assert "killed by SIGKILL" in (restart_in_progress(KILLED_BEFORE_THE_END, 2, 20) or "")
    # The new group reports, but is redoing steps below the old high.
    redoing = [*KILLED_BEFORE_THE_END[:4], sample(40, 120, restart=1, pid_base=5000)]
    assert "restarted (0 -> 1) and is at step 120, not past 150 again" in (
        restart_in_progress(redoing, 2, 20) or ""
    )
    # Past the old high: up again.
    assert restart_in_progress([*redoing, sample(50, 170, restart=1, pid_base=5000)], 2, 20) is None
    # A rank that stopped reporting.
    assert restart_in_progress([*steady(3), sample(30, 300, absent=(1,))], 2, 20) == "rank(s) 1 not reporting"
    # Every rank running and the step stuck: a hang, not a restart.
    assert restart_in_progress([*steady(3), sample(30, 200)], 2, 20) is None
    # A failure read at the last look, while the statuses (written before it) still show progress.
    assert "killed by SIGKILL" in (
        restart_in_progress([*steady(3), sample(30, 300, events=(KILL_LINE,))], 2, 20) or ""
    )
    # A worker that failed at the launch, restarted before the first look: the job runs, nothing to wait for.
    launch = [
        sample(0, 0, restart=1, events=(KILL_LINE,)),
        sample(10, 100, restart=1),
        sample(20, 200, restart=1),
    ]
    assert restart_in_progress(launch, 2, 20) is None


def test_looks_after_the_planned_end_count_restarts_but_stay_out_of_the_uptime_window() -> None:
    after = [
        sample(50, 120, restart=1, pid_base=5000, after_end=True),
        sample(60, 170, restart=1, pid_base=5000, after_end=True),
    ]
    result = analyse([*KILLED_BEFORE_THE_END, *after], 2, 32, 10, planned_end=40, incarnations=RESTARTED)
    # The same window as without the looks after the end.
    assert [i.end for i in result.intervals] == [10, 20, 30, 40]
    assert result.uptime_ratio == pytest.approx(20 / 40) and result.throughput["intervals"] == 2
    [restart] = result.restarts
    assert (restart.seen_in, restart.after, restart.detected_at) == ("samples", 40, 50)
    assert result.after_end == {"looks": 2, "until": 60, "back_at": 60, "down_s": 20}
    [incident] = result.incidents
    assert (incident.end, incident.after_end_s) == (40, 20)
    assert incident.restarts == restart.causes


def test_a_warm_started_rank_is_named_by_the_launcher_pid_torchrun_logs() -> None:
    # With the warm start torchrun's worker is the launcher (ddp/warm_client.py), the rank a process the
    # node's pool forked: the failure line names the launcher, the status file both.
    from tooling.soak.causes import explain

    forked = RankObs(1, 160, "running", 0, pid=7001, node="vm", launcher_pid=4353)
    history = [Sample(20.0, {1: forked})]
    assert explain([KILL_LINE], history) == [
        "rank 1 (local rank 1, pid 4353, node vm) killed by SIGKILL at step 160"
    ]


def test_rank_observations_round_trip_and_older_six_field_samples_still_load() -> None:
    obs = RankObs(1, 160, "running", 2, pid=7001, node="vm", launcher_pid=4353)
    assert RankObs.from_json(obs.to_json()) == obs
    assert RankObs.from_json([1, 160, "running", 2, 7001, "vm"]) == RankObs(1, 160, "running", 2, 7001, "vm")
    sampled = sample_from_statuses(1.0, [{"rank": 1, "step": 5, "pid": 7001, "launcher_pid": 4353}])
    assert sampled.ranks[1].ran_as(4353) and sampled.ranks[1].ran_as(7001)
    assert not sampled.ranks[1].ran_as(4354)
