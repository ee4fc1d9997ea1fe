"""bench/ratio_stats.py: the interval of a side-by-side ratio and the three-way verdict against a target."""

from __future__ import annotations

import pytest

from bench.ratio_stats import RatioEstimate, judge, paired_ratio, relative_spread


def test_steady_rounds_give_a_narrow_interval_around_the_median() -> None:
    bare = [2000.0, 2010.0, 1990.0, 2005.0, 1995.0, 2002.0, 1998.0]
    trainer = [b * 0.95 for b in bare]
    estimate = paired_ratio(trainer, bare)
    assert estimate.ratio == pytest.approx(0.95)
    assert estimate.low == pytest.approx(0.95) and estimate.high == pytest.approx(0.95)
    assert judge(estimate, 0.97, higher_is_better=True) == "FAIL"
    assert judge(estimate, 0.90, higher_is_better=True) == "PASS"


def test_noisy_rounds_straddling_the_target_are_inconclusive() -> None:
    # Per-round ratios 0.93..1.01: the median (0.97) cannot be told from the target either way.
    bare = [1000.0] * 7
    trainer = [930.0, 1010.0, 950.0, 990.0, 970.0, 940.0, 1000.0]
    estimate = paired_ratio(trainer, bare)
    assert estimate.low < 0.97 < estimate.high
    assert judge(estimate, 0.97, higher_is_better=True) == "INCONCLUSIVE"
    assert paired_ratio(trainer, bare) == estimate  # a fixed seed: the same figures print the same interval


def test_lower_is_better_targets_are_judged_from_the_other_side() -> None:
    cold = [20.0, 21.0, 19.5, 20.5]
    assert judge(paired_ratio([8.0, 8.5, 8.2, 8.1], cold), 0.5, higher_is_better=False) == "PASS"
    assert judge(paired_ratio([20.0, 21.0, 19.0, 20.0], cold), 0.5, higher_is_better=False) == "FAIL"


def test_too_few_rounds_never_conclude() -> None:
    estimate = paired_ratio([1.0, 1.0], [2.0, 2.0])
    assert estimate == RatioEstimate(0.5, 0.5, 0.5, 0.95, 2)
    assert judge(estimate, 0.97, higher_is_better=True) == "INCONCLUSIVE"


def test_unpaired_or_empty_rounds_are_refused() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_ratio([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="paired"):
        paired_ratio([], [])
    with pytest.raises(ValueError, match="positive"):
        paired_ratio([1.0], [0.0])


def test_spread_is_relative_to_the_mean() -> None:
    assert relative_spread([100.0]) is None
    assert relative_spread([90.0, 110.0]) == pytest.approx(14.142 / 100, rel=1e-3)
