"""A ratio measured side by side, round by round, with an interval that says whether it can be trusted.

Both ratio benchmarks (trainer_overhead.py, recovery.py) measure the two sides of their ratio in the same
round (a round's pair shares the machine's state at that moment), so the ratio is taken per round and the
rounds are resampled (bootstrap, percentile interval) to see how far its median could move. A verdict
against a target is PASS or FAIL only when the whole interval is on one side of it; an interval that
straddles the target is INCONCLUSIVE: more rounds or a quieter machine are needed, not a conclusion.
"""

from __future__ import annotations

import os
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
# Below this many rounds a resampled median says nothing about the spread.
MIN_ROUNDS = 3


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float  # median over rounds of numerator / denominator
    low: float
    high: float
    confidence: float
    rounds: int

    def describe(self) -> str:
        return (
            f"{self.ratio:.3f} ({self.confidence:.0%} interval {self.low:.3f}..{self.high:.3f}, "
            f"{self.rounds} rounds)"
        )


def paired_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> RatioEstimate:
    """Median of the per-round ratios, with a bootstrap percentile interval over rounds. The seed is
    fixed so the same measurements always print the same interval."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f"need paired rounds, got {len(numerators)} and {len(denominators)} values")
    if any(d <= 0 for d in denominators):
        raise ValueError("every denominator must be positive")
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    middle = statistics.median(ratios)
    if len(ratios) < MIN_ROUNDS:
        return RatioEstimate(middle, min(ratios), max(ratios), confidence, len(ratios))
    pick = random.Random(seed).choices
    medians = sorted(statistics.median(pick(ratios, k=len(ratios))) for _ in range(resamples))
    tail = (1.0 - confidence) / 2
    low = medians[int(tail * (resamples - 1))]
    high = medians[int((1.0 - tail) * (resamples - 1))]
    return RatioEstimate(middle, low, high, confidence, len(ratios))


def judge(estimate: RatioEstimate, target: float, higher_is_better: bool) -> Verdict:
    """PASS or FAIL only when the interval lies wholly on one side of `target`."""
    if estimate.rounds < MIN_ROUNDS:
        return "INCONCLUSIVE"
    good, bad = (estimate.low >= target, estimate.high < target)
    if not higher_is_better:
        good, bad = (estimate.high <= target, estimate.low > target)
    return "PASS" if good else "FAIL" if bad else "INCONCLUSIVE"


def relative_spread(values: Sequence[float]) -> float | None:
    """Standard deviation over mean of one side's rounds: how steady the machine was."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


def machine_load() -> str:
    """The load the measurement ran under, printed beside its result: a ratio taken on a busy machine
    is read with that in mind."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs"
