"""Ranking: throughput among trials whose loss behaved; the rest are listed with why, never ranked."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.unit.sweep_fakes import summary
from tooling.sweep.ranking import loss_problem, rank
from tooling.sweep.records import TrialRecord, record_from_summary


def trial(number: int, error: str | None = None, **figures: Any) -> TrialRecord:
    data = None if error is not None and not figures else summary(**figures)
    return record_from_summary(number, {"optimizer.lr": number / 100}, f"s-t{number:02d}", data, error, 0.0)


def test_fastest_well_behaved_trial_wins_and_the_rest_say_why() -> None:
    records = [
        trial(1, throughput=100.0),
        trial(2, throughput=900.0, nonfinite=3),  # fastest, but diverged
        trial(3, throughput=300.0),
        trial(4, throughput=800.0, first=1.0, last=1.2),  # loss rose
        trial(5, "torchrun exited 1 (see t05.log)"),
        trial(6, throughput=None),  # too short to measure
        trial(7, throughput=500.0, status="failed", reason="nonfinite_policy=stop at step 9"),
        trial(8, throughput=250.0, first=math.nan, last=1.0),
    ]
    ranking = rank(records, margin=0.0)
    assert [r.trial for r in ranking.ranked] == [3, 1]
    assert ranking.best is records[2]
    excluded = {r.trial: why for r, why in ranking.excluded}
    assert excluded == {
        2: "3 non-finite loss(es)",
        4: "loss did not fall: 1 -> 1.2",
        8: "no finite loss measured",
    }
    failed = {r.trial: why for r, why in ranking.failed}
    assert failed[5] == "torchrun exited 1 (see t05.log)"
    assert "too few steps" in failed[6]
    assert failed[7] == "run ended failed: nonfinite_policy=stop at step 9"
    assert ranking.why_not(3) is None and ranking.why_not(2) == excluded[2] and ranking.why_not(99)


def test_margin_requires_a_relative_drop() -> None:
    slight = trial(1, first=2.0, last=1.95)  # 2.5 % lower
    assert loss_problem(slight, 0.0) is None
    assert loss_problem(slight, 0.02) is None
    assert loss_problem(slight, 0.05) == "loss did not fall by 5%: 2 -> 1.95"
    flat = trial(2, first=2.0, last=2.0)
    assert loss_problem(flat, 0.0) == "loss did not fall: 2 -> 2"
    assert [r.trial for r in rank([slight, flat], 0.05).ranked] == []


def test_ties_go_to_the_steadier_then_the_earlier_trial() -> None:
    records = [
        trial(1, throughput=200.0, sigma=9.0),
        trial(2, throughput=200.0, sigma=1.0),
        trial(3, throughput=200.0, sigma=None),
        trial(4, throughput=200.0, sigma=1.0),
    ]
    assert [r.trial for r in rank(records, 0.0).ranked] == [2, 4, 1, 3]


@pytest.mark.parametrize(
    ("figures", "fell"),
    [({"first": 2.0, "last": 1.0}, True), ({"first": 1.0, "last": 2.0}, False), ({"first": None}, None)],
)
def test_record_keeps_the_trial_figures(figures: dict[str, Any], fell: bool | None) -> None:
    record = trial(1, throughput=123.4, sigma=4.5, comm=0.07, nonfinite=0, **figures)
    assert (record.throughput, record.throughput_sigma, record.comm_overhead) == (123.4, 4.5, 0.07)
    assert record.nonfinite == 0 and record.loss_fell is fell and record.status == "ok"
    assert record.duration_s is not None and record.duration_s >= 0
