"""Small trainer parts: windows, schedules, probe cadence, overrides, atomic writes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ddp.atomic import atomic_write_json, atomic_write_text
from ddp.comm_probe import CommOverhead
from ddp.config import ScheduleSection
from ddp.schedule import lr_factor
from ddp.summary import group_restarts
from ddp.window import Decimated, StepWindow


def test_step_window_rate_and_sigma() -> None:
    window = StepWindow(size=3)
    for seconds in (1.0, 1.0, 0.5, 0.5):  # oldest drops out
        window.add(seconds, 10)
    assert window.samples_per_second() == pytest.approx(30 / 2.0)
    rates = [10.0, 20.0, 20.0]
    mean = sum(rates) / 3
    sigma = math.sqrt(sum((r - mean) ** 2 for r in rates) / 3)
    assert window.rate_stddev() == pytest.approx(sigma)
    assert window.rate_stddev(scale=4) == pytest.approx(4 * sigma)


def test_steady_window_has_zero_sigma() -> None:
    window = StepWindow(size=10)
    for _ in range(10):
        window.add(0.1, 8)
    assert window.rate_stddev() == pytest.approx(0.0)


def test_decimated_series_stays_bounded_and_spans_the_run() -> None:
    series = Decimated(capacity=100)
    for i in range(10_000):
        series.add(i, i)
    assert len(series.points) < 100
    assert series.points[0][0] == 0
    assert series.points[-1][0] > 9000


@pytest.mark.parametrize(
    ("kind", "step", "expected"),
    [
        ("constant", 50, 1.0),
        ("step", 0, 1.0),
        ("step", 10, 0.5),
        ("step", 25, 0.25),
        ("cosine", 0, 1.0),
        ("cosine", 50, 0.5),
        ("cosine", 100, 0.0),
    ],
)
def test_lr_factor(kind: str, step: int, expected: float) -> None:
    section = ScheduleSection(kind=kind, step_size=10, gamma=0.5)
    assert lr_factor(section, step, max_steps=100) == pytest.approx(expected, abs=1e-9)


def test_warmup_ramps_then_hands_over() -> None:
    section = ScheduleSection(kind="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(section, 0, 110) == pytest.approx(0.1)
    assert lr_factor(section, 9, 110) == pytest.approx(1.0)
    assert lr_factor(section, 110, 110) == pytest.approx(0.1)


def test_probe_cadence_and_estimate() -> None:
    probe = CommOverhead(every_steps=10, warmup_steps=3)
    assert [s for s in range(1, 31) if probe.due(s)] == [3, 13, 23]
    assert probe.estimate() is None
    probe.add(sync_fwd_bwd=0.008, nosync_fwd_bwd=0.006, step_seconds=0.010)
    probe.add(sync_fwd_bwd=0.009, nosync_fwd_bwd=0.006, step_seconds=0.010)
    probe.add(sync_fwd_bwd=0.050, nosync_fwd_bwd=0.006, step_seconds=0.060)  # an outlier
    estimate = probe.estimate()
    assert estimate is not None
    assert estimate.ratio == pytest.approx((0.009 - 0.006) / 0.010)
    assert estimate.sync_seconds / estimate.nosync_seconds == pytest.approx(1.5)


def test_probe_never_reports_negative_overhead() -> None:
    probe = CommOverhead(every_steps=10)
    probe.add(sync_fwd_bwd=0.004, nosync_fwd_bwd=0.006, step_seconds=0.010)
    estimate = probe.estimate()
    assert estimate is not None and estimate.ratio == 0.0


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_text(target, "second\n", durable=False)
    assert target.read_text() == "second\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"x": object()}, default=None)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def _incarnation(restart_count: int) -> dict:
    return {"restart_count": restart_count, "started_at": 0.0, "world_size": 8, "resumed_from_step": None}


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([], 0),
        ([0], 0),
        # Rank 0's agent saw the second failure as a membership change and did not count it.
        ([0, 1, 1], 2),
        ([0, 0], 1),
        # Restarts before the first checkpoint leave no carried-over incarnation; rank 0's count has them.
        ([3], 3),
        ([2, 3], 3),
    ],
)
def test_group_restarts_counts_incarnations_and_torchruns_count(counts: list[int], expected: int) -> None:
    assert group_restarts([_incarnation(c) for c in counts]) == expected
