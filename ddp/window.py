"""Sliding-window step statistics: throughput and its stability (sigma) over the last N steps."""

from __future__ import annotations

import math
import statistics
from collections import deque


class StepWindow:
    """Read from the metrics endpoint's thread while the training thread adds: each (samples, seconds)
    pair is one item of one deque, and readers work on a copy (taken in one C call, so never torn)."""

    def __init__(self, size: int) -> None:
        self._steps: deque[tuple[int, float]] = deque(maxlen=size)

    def add(self, duration_s: float, samples: int) -> None:
        self._steps.append((samples, duration_s))

    def __len__(self) -> int:
        return len(self._steps)

    def samples_per_second(self) -> float:
        steps = tuple(self._steps)
        total = sum(d for _, d in steps)
        return sum(n for n, _ in steps) / total if total > 0 else 0.0

    def rate_stddev(self, scale: float = 1.0) -> float:
        """Sigma of the per-step rate (samples/step_time) times `scale` (world size -> job-wide rate)."""
        rates = [scale * n / d for n, d in tuple(self._steps) if d > 0]
        return statistics.pstdev(rates) if len(rates) >= 2 else 0.0

    def mean_duration(self) -> float:
        steps = tuple(self._steps)
        return statistics.fmean(d for _, d in steps) if steps else 0.0


class SplitWindow:
    """Mean compute and collective-wait seconds per step over the last N steps that measured both."""

    def __init__(self, size: int) -> None:
        self._compute: deque[float] = deque(maxlen=size)
        self._wait: deque[float] = deque(maxlen=size)

    def add(self, compute_s: float, wait_s: float) -> None:
        self._compute.append(compute_s)
        self._wait.append(wait_s)

    def means(self) -> tuple[float, float] | None:
        """(compute, wait) means, None before the first measured step. Also read from the metrics
        endpoint's thread: each deque is copied in one C call before it is summed."""
        compute, wait = tuple(self._compute), tuple(self._wait)
        if not compute or not wait:
            return None
        return statistics.fmean(compute), statistics.fmean(wait)


class Decimated:
    """A bounded series for long runs: when full, keep every other point and sample half as often."""

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self.points: list[list[float]] = []
        self._stride = 1
        self._seen = 0

    def add(self, *values: float) -> None:
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self.points.append([float(v) for v in values])
        if len(self.points) >= self.capacity:
            self.points = self.points[::2]
            self._stride *= 2

    def extend_from(self, points: list[list[float | None]]) -> None:
        """Re-load a series written to JSON, where NaN was stored as null."""
        for point in points:
            self.add(*(math.nan if v is None else v for v in point))
