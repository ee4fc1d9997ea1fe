"""Verdicts: each criterion -> PASS / WARN / FAIL / NO DATA / SKIP, and the phase -> GO / NO-GO.

NO DATA is never a pass: an unmeasured criterion blocks the gate unless the site waived it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from tooling.gates.site import Criterion
from tooling.plan.criteria import KINDS
from tooling.plan.measurements import Measurement

Verdict = Literal["PASS", "WARN", "FAIL", "NO DATA", "SKIP"]
Decision = Literal["GO", "NO-GO"]


@dataclass(frozen=True)
class Row:
    criterion: Criterion
    measurement: Measurement
    verdict: Verdict
    note: str
    suspect: bool = False

    @property
    def name(self) -> str:
        return self.criterion.name

    @property
    def blocks(self) -> bool:
        return self.verdict == "FAIL" or (self.verdict == "NO DATA" and not self.criterion.waived)

    def as_dict(self) -> dict[str, Any]:
        kind = KINDS[self.name]
        return {
            "criterion": self.name,
            "label": kind.label,
            "unit": kind.unit,
            **self.criterion.as_dict(),
            "measured": self.measurement.value,
            "source": self.measurement.source,
            "verdict": self.verdict,
            "note": self.note,
            "suspect": self.suspect,
            "blocks": self.blocks,
        }


def judge(criterion: Criterion, measurement: Measurement, device: str | None, suspect: bool = False) -> Row:
    kind = KINDS[criterion.name]
    notes = [measurement.note] if measurement.note else []
    if kind.gpu_only and device is not None and device != "cuda":
        why = f"does not apply: the run used {device} devices, no GPU to utilise"
        return Row(criterion, measurement, "SKIP", why)
    if measurement.value is None:
        if criterion.waived:
            notes.append(f"waived by the site: {criterion.waived}")
        return Row(criterion, measurement, "NO DATA", "; ".join(notes))
    value = measurement.value
    verdict: Verdict
    if criterion.target.met_by(value):
        verdict = "PASS"
    elif criterion.minimum.met_by(value):
        verdict = "WARN"
    else:
        verdict = "FAIL"
    if suspect:
        # A figure above its physical ceiling means one of the measurements is wrong: it is no evidence
        # of meeting any bound, and letting it through would celebrate a measurement error.
        verdict = "FAIL"
    if criterion.waived:
        notes.append(f"waiver ({criterion.waived}) covers missing data only; measured, so judged")
    return Row(criterion, measurement, verdict, "; ".join(notes), suspect)


def decide(rows: Iterable[Row]) -> Decision:
    return "NO-GO" if any(row.blocks for row in rows) else "GO"


def tally(rows: Iterable[Row]) -> dict[str, int]:
    counts = {v: 0 for v in ("PASS", "WARN", "FAIL", "NO DATA", "SKIP")}
    for row in rows:
        counts[row.verdict] += 1
    return counts
