"""ddp/stragglers.py: each rank's compute against the median rank's."""

from __future__ import annotations

import pytest

from ddp.stragglers import is_straggler, ratios_to_median


def test_ratio_to_the_median_of_the_ranks_that_measured() -> None:
    ratios = ratios_to_median([0.10, 0.10, 0.10, 0.10, 0.10, 0.16, 0.0, 0.10])
    assert ratios[0] == pytest.approx(1.0) and ratios[5] == pytest.approx(1.6)
    assert ratios[6] is None  # no figure yet: neither judged nor counted in the median
    assert [r for r, x in enumerate(ratios) if x is not None and is_straggler(x, 0.2)] == [5]


def test_half_the_ranks_slow_moves_the_median_but_still_names_them() -> None:
    # One node of two slowed: the median is the mean of a slow and a fast figure.
    ratios = ratios_to_median([0.1] * 4 + [0.2] * 4)
    assert [x is not None and is_straggler(x, 0.2) for x in ratios] == [False] * 4 + [True] * 4


def test_nobody_measured_yet() -> None:
    assert ratios_to_median([0.0, 0.0]) == [None, None]


def test_the_margin_is_exclusive() -> None:
    assert not is_straggler(1.2, 0.2) and is_straggler(1.2001, 0.2)
