"""What a gate judges: one figure with where it came from (summary, Prometheus, given, previous phase).

A figure the source cannot give is a Measurement with value None and a note saying why: the judge turns
it into NO DATA, never into a pass. Run summaries, Prometheus and soak records all produce these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Measurement:
    value: float | None
    source: str  # "summary", "prometheus", "given", "previous phase"
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def missing(source: str, note: str) -> Measurement:
    return Measurement(None, source, note)
