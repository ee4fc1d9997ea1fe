"""Time in the report's figures: seconds since the run's start, and when the worker group restarted.

Every time axis counts from the same origin as the gate's window (tooling.gates.evidence.run_start), so a
heartbeat, a checkpoint and a restart line up across figures and with the window the report prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tooling.gates.evidence import run_start

TIME_LABEL = "seconds since the run's start"


@dataclass(frozen=True)
class Restarts:
    """The restarts a summary records: `seconds` for those with a start time, `total` for all of them."""

    seconds: list[float]
    total: int


def origin(summary: dict[str, Any]) -> float:
    """The run's start as a Unix time; 0 for a summary with no heartbeat and no incarnation (nothing to
    draw against it)."""
    return run_start(summary) or 0.0


def heartbeats(summary: dict[str, Any]) -> list[tuple[float, list[Any]]]:
    """(seconds since the run's start, timeline point) for each heartbeat with a time."""
    t0 = origin(summary)
    return [(p[0] - t0, p) for p in summary.get("timeline", []) if p and p[0] is not None]


def restarts(summary: dict[str, Any]) -> Restarts:
    """Every incarnation after the first is a restart, and so is the first when its restart count says
    the group had already restarted (restarts before the first checkpoint are not carried over:
    ddp/summary.py). The initial start is none of them."""
    t0 = origin(summary)
    incarnations = summary.get("incarnations", [])
    restarted = [i for n, i in enumerate(incarnations) if n > 0 or (i.get("restart_count") or 0) > 0]
    seconds = [float(i["started_at"]) - t0 for i in restarted if i.get("started_at")]
    return Restarts(seconds, max(len(restarted), int(summary.get("restarts") or 0)))
