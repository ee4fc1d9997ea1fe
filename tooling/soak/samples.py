"""One look at the job: every rank's step, state and restart count at one moment, plus what the launcher
logged about failed workers since the previous look. Samples are what the soak persists and judges.

A look taken after the planned end (the soak waiting for a restarting worker group to come back before
its final stop, tooling/soak/watch.py) is marked `after_end`: it counts restarts but is outside the
uptime window."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Rank states that still count as "reporting"; a rank that wrote "failed" is down even if its file is fresh.
REPORTING_STATES = ("running", "completed", "stopped")


@dataclass(frozen=True)
class RankObs:
    rank: int
    step: int
    state: str
    restart_count: int = 0
    pid: int | None = None
    node: str | None = None
    launcher_pid: int | None = None  # the process torchrun started (ddp/warm_client.py), when not `pid`

    def to_json(self) -> list[Any]:
        return [self.rank, self.step, self.state, self.restart_count, self.pid, self.node, self.launcher_pid]

    @classmethod
    def from_json(cls, data: list[Any]) -> RankObs:
        # Samples kept before the launcher's pid was recorded have six fields.
        launcher = data[6] if len(data) > 6 else None
        return cls(int(data[0]), int(data[1]), str(data[2]), int(data[3]), data[4], data[5], launcher)

    def ran_as(self, pid: int) -> bool:
        """Whether torchrun's `pid` for a worker was this rank's process or its launcher."""
        return pid in (self.pid, self.launcher_pid)


@dataclass(frozen=True)
class Sample:
    t: float
    ranks: dict[int, RankObs]
    unreachable: dict[str, str] = field(default_factory=dict)  # node -> why its ranks could not be read
    events: tuple[str, ...] = ()  # launcher log lines about failed workers, read with this sample
    after_end: bool = False  # taken after the planned end, while waiting for a restart to finish

    def missing(self, expected: int) -> list[int]:
        """Expected ranks (0..expected-1) without a status file, or whose status says they failed."""
        return [
            r for r in range(expected) if r not in self.ranks or self.ranks[r].state not in REPORTING_STATES
        ]

    def global_step(self, expected: int) -> int | None:
        """The job's step: the lowest step over all expected ranks (ranks move in lockstep; the lowest is
        the one every rank has reached). None when any expected rank is missing."""
        if self.missing(expected):
            return None
        return min(self.ranks[r].step for r in range(expected))

    def restart_count(self) -> int:
        return max((r.restart_count for r in self.ranks.values()), default=0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "ranks": [r.to_json() for r in self.ranks.values()]}
        if self.unreachable:
            out["unreachable"] = self.unreachable
        if self.events:
            out["events"] = list(self.events)
        if self.after_end:
            out["after_end"] = True
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        ranks = [RankObs.from_json(r) for r in data.get("ranks", [])]
        return cls(
            float(data["t"]),
            {r.rank: r for r in ranks},
            dict(data.get("unreachable", {})),
            tuple(data.get("events", ())),
            bool(data.get("after_end", False)),
        )


def _int(value: Any, default: int | None = 0) -> int | None:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return default


def sample_from_statuses(
    t: float,
    statuses: list[dict[str, Any]],
    unreachable: dict[str, str] | None = None,
    events: list[str] | tuple[str, ...] = (),
    *,
    after_end: bool = False,
) -> Sample:
    """A sample from raw rank status files (ddp/status.py). Unreadable entries are skipped; when two files
    claim one rank (a stale file left beside a new one), the most recently updated wins."""
    chosen: dict[int, tuple[float, RankObs]] = {}
    for status in statuses:
        rank = _int(status.get("rank"), None)
        if rank is None or rank < 0:
            continue
        obs = RankObs(
            rank=rank,
            step=_int(status.get("step")) or 0,
            state=str(status.get("state", "unknown")),
            restart_count=_int(status.get("restart_count")) or 0,
            pid=_int(status.get("pid"), None),
            launcher_pid=_int(status.get("launcher_pid"), None),
            node=str(status["node"]) if status.get("node") is not None else None,
        )
        updated = status.get("updated_at")
        when = float(updated) if isinstance(updated, int | float) else 0.0
        if rank not in chosen or when >= chosen[rank][0]:
            chosen[rank] = (when, obs)
    ranks = {rank: obs for rank, (_, obs) in sorted(chosen.items())}
    return Sample(t, ranks, dict(unreachable or {}), tuple(events), after_end)
