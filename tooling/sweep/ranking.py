"""Which trial wins: pure functions over trial records, no I/O.

Only trials that ran to completion with a measured throughput and a loss that behaved (finite, no
non-finite steps, fell from first to last by at least the margin) are ranked, fastest first. A fast
setting that diverges is no production setting, so it is listed with why, never ranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tooling.sweep.records import TrialRecord


@dataclass(frozen=True)
class Ranking:
    ranked: list[TrialRecord]  # best first
    excluded: list[tuple[TrialRecord, str]]  # ran, but the loss misbehaved
    failed: list[tuple[TrialRecord, str]]  # no usable measurement

    @property
    def best(self) -> TrialRecord | None:
        return self.ranked[0] if self.ranked else None

    def why_not(self, trial: int) -> str | None:
        """Why trial `trial` is not ranked, or None when it is."""
        for record, why in (*self.excluded, *self.failed):
            if record.trial == trial:
                return why
        if any(r.trial == trial for r in self.ranked):
            return None
        return "no such trial in this sweep"


def loss_problem(record: TrialRecord, margin: float) -> str | None:
    """Why the trial's loss does not qualify it, or None when it behaved.

    `margin` is the relative drop required: 0.05 means the last loss is at least 5 % below the first.
    """
    if record.nonfinite:
        return f"{record.nonfinite} non-finite loss(es)"
    first, last = record.loss_first, record.loss_last
    if first is None or last is None or not (math.isfinite(first) and math.isfinite(last)):
        return "no finite loss measured"
    drop = first - last
    if drop <= 0 or drop < margin * abs(first):
        needed = f" by {margin:.0%}" if margin > 0 else ""
        return f"loss did not fall{needed}: {first:.4g} -> {last:.4g}"
    return None


def rank(records: list[TrialRecord], margin: float) -> Ranking:
    ranked: list[TrialRecord] = []
    excluded: list[tuple[TrialRecord, str]] = []
    failed: list[tuple[TrialRecord, str]] = []
    for record in records:
        if record.status != "ok" or record.throughput is None:
            failed.append((record, record.reason or "failed"))
        elif (problem := loss_problem(record, margin)) is not None:
            excluded.append((record, problem))
        else:
            ranked.append(record)
    # Equal throughput: the steadier trial first, then the earlier one, so the order never depends on luck.
    ranked.sort(
        key=lambda r: (
            -(r.throughput or 0.0),
            r.throughput_sigma if r.throughput_sigma is not None else math.inf,
            r.trial,
        )
    )
    return Ranking(ranked, excluded, failed)
