"""Tomorrow's checkpoints on one node: how many the run will have written by this time tomorrow, what they
take, and the disk left, from the run's checkpoint trend (the manifest's checkpoints over time) and the
checkpoint filesystem's free space.

    interval        median time between the listed checkpoints
    new             whole intervals from the newest checkpoint to now + 24 h
    kept tomorrow   min(keep_last, kept now + new): the trainer prunes past keep_last
    growth          (kept tomorrow - kept now) * size of a checkpoint (the largest listed)
    disk left       free now - growth; or free now + 24 h of the filesystem's own trend when that is lower
                    (something else filling the disk counts too)
A save writes its file before it prunes the oldest, so every save needs one more checkpoint's room than
what stays: the disk would fill when the disk left is below that.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

from tooling.check.trend import Trend

HORIZON_S = 86400.0


@dataclass(frozen=True)
class Listed:
    step: int
    bytes: int
    saved_at: float


@dataclass(frozen=True)
class Listing:
    """What `python -m ddp.checkpoint_verify RUN --list` printed on a node."""

    directory: str
    keep_last: int | None
    entries: list[Listed]  # oldest first


@dataclass(frozen=True)
class Outlook:
    interval_s: float
    new_checkpoints: int
    kept_now: int
    kept_tomorrow: int
    checkpoint_bytes: int
    bytes_written: int  # by all the new checkpoints, pruned ones included
    growth_bytes: int
    avail_now: int
    avail_tomorrow: int  # the lower of the checkpoints' and the filesystem trend's
    by_trend: bool  # the filesystem's trend gave the lower figure

    @property
    def fills(self) -> bool:
        return self.new_checkpoints > 0 and self.avail_tomorrow < self.checkpoint_bytes

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fills": self.fills}


def outlook(listing: Listing, avail_now: int, trend: Trend | None, now: float) -> Outlook | None:
    """The outlook (module docstring); None with fewer than two checkpoints, which give no interval."""
    times = [e.saved_at for e in listing.entries]
    gaps = [b - a for a, b in pairwise(times) if b > a]
    if not gaps:
        return None
    interval = statistics.median(gaps)
    new = max(0, math.floor((now + HORIZON_S - times[-1]) / interval))
    kept_now = len(listing.entries)
    kept = kept_now + new if listing.keep_last is None else min(listing.keep_last, kept_now + new)
    size = max(e.bytes for e in listing.entries)
    growth = max(0, kept - kept_now) * size
    left = avail_now - growth
    trend_left = None if trend is None else avail_now + trend.slope_bytes_per_s * HORIZON_S
    by_trend = trend_left is not None and trend_left < left
    return Outlook(
        interval_s=interval,
        new_checkpoints=new,
        kept_now=kept_now,
        kept_tomorrow=kept,
        checkpoint_bytes=size,
        bytes_written=new * size,
        growth_bytes=growth,
        avail_now=avail_now,
        avail_tomorrow=int(trend_left if by_trend and trend_left is not None else left),
        by_trend=by_trend,
    )
