"""The machine-readable run summary (summary.json) that gates, reports and soak runs read.

Rank 0 writes it at every checkpoint (so a killed job still leaves one) and at the end. Figures that
differ per rank are gathered from every rank; the job-wide series come from rank 0's heartbeats.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_json
from ddp.window import Decimated

SUMMARY_FILE = "summary.json"
SCHEMA_VERSION = 1


@dataclass
class RankStats:
    """Accumulated on each rank; sent to rank 0 as a plain dict."""

    rank: int
    local_rank: int
    node: str
    steps: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)  # bounded sample for percentiles
    cpu_utilisation: list[float] = field(default_factory=list)
    memory_pressure_max: float = 0.0
    gpu_utilisation: list[float] = field(default_factory=list)
    gpu_memory_pressure_max: float | None = None
    last_loss: float | None = None
    comm_overhead_ratio: float | None = None
    sync_step_seconds: float | None = None
    nosync_step_seconds: float | None = None
    # This rank's own work and its wait in the gradient all-reduce (ddp/collective_clock.py), summed over
    # the steps that measured them.
    split_steps: int = 0
    compute_seconds: float = 0.0
    collective_wait_seconds: float = 0.0
    compute_ratio_to_median_max: float | None = None
    # Times a link from this node turned slow (ddp/links.py; counted by each node's local rank 0).
    slow_link_events: int = 0

    def add_split(self, compute: float, wait: float) -> None:
        self.split_steps += 1
        self.compute_seconds += compute
        self.collective_wait_seconds += wait

    def add_step(self, seconds: float, samples: int) -> None:
        self.steps += 1
        self.samples += samples
        self.train_seconds += seconds
        if len(self.step_seconds) < 4096:
            self.step_seconds.append(seconds)
        else:  # keep a moving sample instead of growing without bound
            self.step_seconds[self.steps % 4096] = seconds

    def digest(self) -> dict[str, Any]:
        steps = sorted(self.step_seconds)
        return {
            "rank": self.rank,
            "local_rank": self.local_rank,
            "node": self.node,
            "steps": self.steps,
            "samples": self.samples,
            "train_seconds": self.train_seconds,
            "samples_per_second": self.samples / self.train_seconds if self.train_seconds else 0.0,
            "step_seconds_mean": statistics.fmean(steps) if steps else None,
            "step_seconds_p50": steps[len(steps) // 2] if steps else None,
            "step_seconds_p95": steps[min(len(steps) - 1, int(len(steps) * 0.95))] if steps else None,
            "cpu_utilisation_ratio": statistics.fmean(self.cpu_utilisation) if self.cpu_utilisation else None,
            "memory_pressure_ratio_max": self.memory_pressure_max,
            "gpu_utilisation_ratio": statistics.fmean(self.gpu_utilisation) if self.gpu_utilisation else None,
            "gpu_memory_pressure_ratio_max": self.gpu_memory_pressure_max,
            "last_loss": self.last_loss,
            "comm_overhead_ratio": self.comm_overhead_ratio,
            "sync_step_seconds": self.sync_step_seconds,
            "nosync_step_seconds": self.nosync_step_seconds,
            "compute_seconds_mean": self.compute_seconds / self.split_steps if self.split_steps else None,
            "collective_wait_seconds_mean": (
                self.collective_wait_seconds / self.split_steps if self.split_steps else None
            ),
            "compute_ratio_to_median_max": self.compute_ratio_to_median_max,
            "slow_link_events": self.slow_link_events,
        }


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def load_previous(run_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((run_dir / SUMMARY_FILE).read_text())
        return data
    except (FileNotFoundError, ValueError):
        return None


def group_restarts(incarnations: list[dict[str, Any]]) -> int:
    """How often the worker group started again in this run.

    Rank 0's TORCHELASTIC_RESTART_COUNT alone undercounts on several nodes: an agent whose own workers
    were still healthy when another node's failed restarts them as a membership change, without counting
    it. Every incarnation after the first is a restart; the count covers the restarts before the first
    checkpoint, whose incarnations are not carried over.
    """
    counted = max((i["restart_count"] for i in incarnations), default=0)
    return max(len(incarnations) - 1, counted)


def build_summary(
    *,
    header: dict[str, Any],
    status: str,
    reason: str | None,
    ranks: list[dict[str, Any]],
    timeline: Decimated,
    counters: dict[str, Any],
    checkpoints: dict[str, Any],
    incarnations: list[dict[str, Any]],
    warmup_points: int = 1,
) -> dict[str, Any]:
    # The first heartbeat includes start-up (allocation, first all-reduce): leave it out of the figures.
    steady = timeline.points[warmup_points:] or timeline.points
    rates = [p[2] for p in steady]
    sigmas = [p[4] for p in steady]
    losses = [p[3] for p in timeline.points if math.isfinite(p[3])]

    def per_rank(key: str) -> list[Any]:
        return [r[key] for r in ranks]

    mismatches = counters["sync_mismatches"]
    checks = counters["sync_checks"]
    overheads = [v for v in per_rank("comm_overhead_ratio") if v is not None]
    memory = [v for v in per_rank("memory_pressure_ratio_max") if v is not None]
    gpu_memory = [v for v in per_rank("gpu_memory_pressure_ratio_max") if v is not None]
    return {
        "schema": SCHEMA_VERSION,
        **header,
        "status": status,
        "reason": reason,
        "written_at": time.time(),
        "steps": counters["steps"],
        "samples_total": sum(per_rank("samples")),
        "throughput": {
            "global_samples_per_second_mean": _mean(rates),
            "global_samples_per_second_stddev": statistics.pstdev(rates) if len(rates) >= 2 else None,
            "window_stddev_mean": _mean(sigmas),
            "global_samples_per_second_overall": sum(per_rank("samples_per_second")),
        },
        "step_time": {
            "mean_seconds": _mean([v for v in per_rank("step_seconds_mean") if v is not None]),
            "per_rank_mean_seconds": per_rank("step_seconds_mean"),
            "balance_ratio": _balance(per_rank("step_seconds_mean")),
        },
        "comm_overhead_ratio": _mean(overheads),
        "sync_step_seconds": _mean([v for v in per_rank("sync_step_seconds") if v is not None]),
        "nosync_step_seconds": _mean([v for v in per_rank("nosync_step_seconds") if v is not None]),
        "cpu_utilisation_ratio": _mean([v for v in per_rank("cpu_utilisation_ratio") if v is not None]),
        "gpu_utilisation_ratio": _mean([v for v in per_rank("gpu_utilisation_ratio") if v is not None]),
        "memory_pressure_ratio_max": max(memory) if memory else None,
        "gpu_memory_pressure_ratio_max": max(gpu_memory) if gpu_memory else None,
        "loss": {
            "first": losses[0] if losses else None,
            "last": losses[-1] if losses else None,
            "min": min(losses) if losses else None,
        },
        "nonfinite_loss_count": counters["nonfinite"],
        "skipped_steps": counters["skipped"],
        "grad_sync": {
            "checks": checks,
            "mismatches": mismatches,
            "accuracy_ratio": (checks - mismatches) / checks if checks else None,
        },
        "checkpoints": checkpoints,
        "restarts": group_restarts(incarnations),
        "incarnations": incarnations,
        "ranks": ranks,
        # [unix time, step, job samples/s, mean loss, window sigma] at each heartbeat (bounded).
        "timeline": [[v if math.isfinite(v) else None for v in p] for p in timeline.points],
    }


def _balance(means: list[float | None]) -> float | None:
    values = [m for m in means if m]
    return max(values) / min(values) if values else None


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = run_dir / SUMMARY_FILE
    atomic_write_json(path, summary)
    return path
