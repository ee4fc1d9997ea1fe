"""Where the checkpoint filesystem is heading: a least-squares slope of free bytes over time and the
time until it reaches zero, from Prometheus (deriv over a range) or from the daily snapshots."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Points closer together than this say more about one checkpoint write than about a trend.
MIN_SPAN_S = 3600.0


@dataclass(frozen=True)
class Trend:
    slope_bytes_per_s: float
    source: str  # in words: "Prometheus deriv over 6h", "3 daily snapshots over 2.0 d"

    def time_to_full_s(self, avail_bytes: int) -> float | None:
        """Seconds until no space is left; None when free space is not shrinking."""
        if self.slope_bytes_per_s >= 0:
            return None
        return max(0.0, avail_bytes / -self.slope_bytes_per_s)


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (value per second); None with fewer than 2 points or too short a span."""
    if len(points) < 2:
        return None
    times = [t for t, _ in points]
    if max(times) - min(times) < MIN_SPAN_S:
        return None
    mean_t = statistics.fmean(times)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t in times)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def _utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def daily_points(
    records: Iterable[dict[str, Any]], inventory: str, host: str, mount: str, now: float, window_days: int
) -> list[tuple[float, float]]:
    """The last snapshot of each earlier UTC day within the window, for this host's same filesystem.

    One point a day: checks run several times a day would otherwise weigh the busiest day most."""
    today = _utc_day(now)
    earliest = now - window_days * 86400.0
    last_of_day: dict[str, tuple[float, float]] = {}
    for record in records:
        if record.get("inventory") != inventory:
            continue
        disk = (record.get("disk") or {}).get(host)
        ts = record.get("ts")
        if not isinstance(disk, dict) or not isinstance(ts, int | float) or disk.get("mount") != mount:
            continue
        if ts < earliest or ts >= now or _utc_day(ts) == today:
            continue
        avail = disk.get("avail_bytes")
        if not isinstance(avail, int | float):
            continue
        day = _utc_day(ts)
        if day not in last_of_day or ts > last_of_day[day][0]:
            last_of_day[day] = (float(ts), float(avail))
    return sorted(last_of_day.values())


def from_snapshots(points: list[tuple[float, float]], now: float, avail_now: int) -> Trend | None:
    series = [*points, (now, float(avail_now))]
    fitted = slope(series)
    if fitted is None:
        return None
    days = (now - series[0][0]) / 86400.0
    return Trend(fitted, f"{len(points)} earlier daily snapshot(s) over {days:.1f} d")
