"""Scaling efficiency against the previous phase's measured throughput, and the ceiling it cannot beat.

    E = X(N) / (X(N0) * N / N0)

X(N0) and N0 come from the previous phase's decision of record (or a summary given with --baseline).
The ceiling is T_sync / T_nosync of the baseline (the trainer's no_sync probe, ddp/comm_probe.py): the
most a process can gain over the baseline is losing all of the baseline's communication time, so a
measured E above that ceiling cannot be real and is flagged as suspect. E above 100 % is possible only
when the baseline ran slower per process than it should have, and is reported with those likely causes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tooling.gates.display import fmt_percent
from tooling.plan.measurements import Measurement, missing

SUPERLINEAR_CAUSES = (
    "the baseline was oversubscribed (its processes shared CPU cores, GPUs or memory bandwidth), "
    "padding or uneven last batches differ between the runs, or the baseline run was short enough "
    "for warm-up to weigh on it; re-measure the baseline before trusting this"
)


@dataclass(frozen=True)
class Baseline:
    phase: str
    throughput: float | None
    world_size: int | None
    sync_step_seconds: float | None
    nosync_step_seconds: float | None
    efficiency: float | None  # the baseline phase's own E against its predecessor
    source: str  # the decision record or summary it came from
    decision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scaling:
    efficiency: Measurement
    degradation: Measurement
    ceiling: float | None
    suspect: bool
    baseline: Baseline | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "efficiency": self.efficiency.value,
            "degradation": self.degradation.value,
            "ceiling": self.ceiling,
            "suspect": self.suspect,
            "baseline": self.baseline.as_dict() if self.baseline else None,
        }


def baseline_from_record(phase: str, record: dict[str, Any]) -> Baseline:
    run = record.get("run", {})
    measured = record.get("measurements", {}).get("throughput", {})
    return Baseline(
        phase=phase,
        throughput=measured.get("value"),
        world_size=run.get("world_size"),
        sync_step_seconds=run.get("sync_step_seconds"),
        nosync_step_seconds=run.get("nosync_step_seconds"),
        efficiency=(record.get("scaling") or {}).get("efficiency"),
        source=f"decision record {record.get('_path', '?')}",
        decision=record.get("decision"),
    )


def _ratio(sync: float | None, nosync: float | None) -> float | None:
    # Never below 1: without communication the two timings differ by noise alone (one process).
    return max(1.0, sync / nosync) if sync and nosync and nosync > 0 else None


def compute(
    throughput: float | None,
    world_size: int | None,
    run_sync: float | None,
    run_nosync: float | None,
    baseline: Baseline | None,
) -> Scaling:
    src = "previous phase"
    if baseline is None:
        why = (
            "no baseline: gate the previous phase first (its decision record is the baseline) "
            "or pass --baseline"
        )
        return Scaling(missing(src, why), missing(src, why), None, False, None)
    base = (
        f"phase {baseline.phase}: {baseline.throughput or 0:.1f} samples/s on {baseline.world_size} processes"
    )
    if not (throughput and world_size and baseline.throughput and baseline.world_size):
        why = f"needs this run's and the baseline's throughput and world size ({base})"
        return Scaling(missing(src, why), missing(src, why), None, False, baseline)
    efficiency = throughput / (baseline.throughput * world_size / baseline.world_size)
    ceiling = _ratio(baseline.sync_step_seconds, baseline.nosync_step_seconds)
    ceiling_from = f"phase {baseline.phase}'s T_sync/T_nosync"
    if ceiling is None:
        ceiling = _ratio(run_sync, run_nosync)
        ceiling_from = "this run's T_sync/T_nosync (the baseline has no probe figures)"
    notes = [
        f"E = {throughput:.1f} / ({baseline.throughput:.1f} x {world_size}/{baseline.world_size}) "
        f"against phase {baseline.phase}"
    ]
    if ceiling is not None:
        notes.append(f"ceiling {fmt_percent(ceiling)} ({ceiling_from})")
    if baseline.decision == "NO-GO":
        notes.append(f"phase {baseline.phase}'s own gate was NO-GO")
    suspect = ceiling is not None and efficiency > ceiling
    if suspect:
        notes.append(
            "SUSPECT: above the ceiling; no real run can beat it, "
            "so one of the two measurements is wrong (judged FAIL until re-measured)"
        )
    if efficiency > 1.0:
        notes.append(f"above 100 % is not a speed-up to celebrate: likely {SUPERLINEAR_CAUSES}")
    if ceiling is None:
        notes.append("no ceiling: neither run has no_sync probe figures")
    eff = Measurement(efficiency, src, "; ".join(notes))
    if baseline.efficiency:
        drop = (baseline.efficiency - efficiency) / baseline.efficiency
        degradation = Measurement(
            drop,
            src,
            f"E {fmt_percent(efficiency)} vs phase {baseline.phase}'s {fmt_percent(baseline.efficiency)}",
        )
    else:
        degradation = missing(
            src, f"phase {baseline.phase} has no scaling efficiency of its own to compare with"
        )
    return Scaling(eff, degradation, ceiling, suspect, baseline)
