"""Which ranks are stragglers: own work per step (compute, ddp/collective_clock.py) against the median rank's.

Every rank contributes its mean compute over the window to the heartbeat's all-reduce, in its own slot of a
world-size vector, so every rank learns every rank's figure without a collective of its own. The median is
the reference because a few slow ranks cannot move it; a rank with no figure yet (0 in its slot) is left
out of the median and judged nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def ratios_to_median(computes: Sequence[float]) -> list[float | None]:
    """Each rank's compute over the median of the ranks that measured one; None where a rank has none."""
    measured = [c for c in computes if c > 0]
    if not measured:
        return [None] * len(computes)
    median = statistics.median(measured)
    return [c / median if c > 0 else None for c in computes]


def is_straggler(ratio: float, margin: float) -> bool:
    """Whether a rank's compute, `ratio` times the median's, exceeds it by more than `margin` (0.2 = 20 %)."""
    return ratio > 1.0 + margin
