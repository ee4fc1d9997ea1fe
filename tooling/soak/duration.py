"""Durations as operators write them: 24h, 90m, 45s, 1h30m, 2d."""

from __future__ import annotations

import re

from tooling.console import ToolingError

UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str, option: str = "--duration") -> float:
    """Seconds in `text`; units d/h/m/s, largest first, each at most once. Raises ToolingError (exit 2)."""
    raw = text.strip().lower()
    expected = f"expected a duration like 24h, 90m, 45s or 1h30m (units d, h, m, s), got {text!r}"
    total = 0.0
    position = 0
    last_rank = -1
    order = list(UNITS)
    for match in _PART.finditer(raw):
        if match.start() != position:
            break
        rank = order.index(match.group(2))
        if rank <= last_rank:  # "30m1h" or "1h1h": almost certainly a typo, never silently summed
            raise ToolingError(f"{option}: {expected}; put each unit once, largest first")
        last_rank = rank
        total += float(match.group(1)) * UNITS[match.group(2)]
        position = match.end()
    if not raw or position != len(raw):
        hint = " (a bare number needs a unit: 90s or 90m?)" if raw.replace(".", "", 1).isdigit() else ""
        raise ToolingError(f"{option}: {expected}{hint}")
    if total <= 0:
        raise ToolingError(f"{option}: must be longer than zero, got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """The inverse for display, to the second: 5400 -> '1h30m', 45 -> '45s', 0.4 -> '0s'."""
    remaining = round(seconds)
    parts = []
    for unit, size in UNITS.items():
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
