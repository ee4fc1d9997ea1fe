"""A measured run as the forecast reads it: its summary.json reduced to a step-time point of the model.

Step time is job-wide (samples per step / mean throughput over the heartbeats, as the gate measures it, or
over Prometheus' samples of the run's window when the forecast is given --prometheus).
Compute and wait come from the per-rank split the trainer records (ddp/collective_clock.py); runs from
before that split fall back on the no_sync probe (ddp/comm_probe.py): its overhead ratio (T_sync - T_nosync
over the step) is the share of the step spent waiting, the rest counts as compute.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddp.config import DDPSection
from tooling.console import ToolingError, err_console
from tooling.gates.evidence import load_summary, resolve_summary_path, run_info
from tooling.gates.gate import gather
from tooling.plan.phases import PhasePlan
from tooling.plan.step_model import RunPoint
from tooling.prometheus_api import PrometheusAccess

FP32_BYTES = 4
FP16_BYTES = 2


@dataclass(frozen=True)
class MeasuredRun:
    path: Path
    phase: str | None  # the plan's phase of the run's shape (None: no phase has it)
    point: RunPoint
    throughput: float
    throughput_sigma: float | None
    samples_per_rank_step: float
    gradient_bytes: float
    split_from: str  # "compute/wait split" or "no_sync probe"

    def as_dict(self) -> dict[str, Any]:
        p = self.point
        return {
            "summary": str(self.path),
            "phase": self.phase,
            "nodes": p.nodes,
            "world_size": p.world_size,
            "throughput": self.throughput,
            "throughput_sigma": self.throughput_sigma,
            "step_seconds": p.step_seconds,
            "compute_seconds": p.compute_seconds,
            "wait_seconds": p.wait_seconds,
            "spread_ratio": p.spread,
            "split_from": self.split_from,
            "gradient_bytes": self.gradient_bytes,
        }


def _mean_of(ranks: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in ranks if isinstance(r.get(key), int | float)]
    return statistics.fmean(values) if values else None


def gradient_bytes(summary: dict[str, Any], path: Path) -> float:
    """S: the parameters' gradients as the all-reduce carries them (fp16 when the run compressed them)."""
    parameters = summary.get("parameters")
    if not isinstance(parameters, int) or parameters <= 0:
        raise ToolingError(f"{path}: parameters: expected the model's parameter count (a positive integer)")
    ddp = DDPSection.model_validate((summary.get("config") or {}).get("ddp") or {})
    return float(parameters * (FP16_BYTES if ddp.fp16_compression else FP32_BYTES))


def measured_run(
    summary: dict[str, Any],
    path: Path,
    plan: PhasePlan,
    prometheus_url: str | None = None,
    access: PrometheusAccess | None = None,
) -> MeasuredRun:
    """The run as a point of the model. Throughput, its spread and the probe's overhead are the gate's
    figures (tooling/gates/gate.py gather: the summary's, replaced by Prometheus' over the run's window when
    `prometheus_url` is given); the per-rank compute/wait split comes from the summary alone."""
    info = run_info(summary, path)
    if not info.world_size or not info.nodes:
        raise ToolingError(f"{path}: world_size, nodes: expected the run's shape (positive integers)")
    _, figures, sources = gather(summary, path, info.world_size, prometheus_url, access=access)
    if sources.prometheus_error:
        err_console.print(
            f"[yellow]warning:[/] {path}: Prometheus {prometheus_url}: {sources.prometheus_error}"
        )
    throughput, sigma = figures["throughput"].value, figures["throughput_sigma"].value
    per_step = summary.get("samples_per_step")
    if not throughput:
        raise ToolingError(
            f"{path}: throughput: {figures['throughput'].note}",
            hint="the run needs two heartbeats or more (metrics.status_every_steps below its steps), "
            "or --prometheus over its time window",
        )
    if not per_step:
        raise ToolingError(f"{path}: samples_per_step: expected the job-wide samples per step")
    step = per_step / throughput
    ranks = summary.get("ranks") or []
    compute, wait = _mean_of(ranks, "compute_seconds_mean"), _mean_of(ranks, "collective_wait_seconds_mean")
    split_from = "compute/wait split"
    if compute is None or wait is None:
        overhead = figures["comm_overhead"].value
        if overhead is None:
            raise ToolingError(
                f"{path}: ranks[].compute_seconds_mean and comm_overhead_ratio: the run measured neither its "
                "compute/wait split nor the no_sync probe, so its communication time is unknown",
                hint="re-run the phase with this trainer (it records the split once past its warm-up steps)",
            )
        # The probe's ratio is its exposed communication over its own step time: the same share of this step.
        wait = min(max(0.0, overhead), 1.0) * step
        compute = step - wait
        split_from = "no_sync probe"
    shaped = plan.shaped(info.nodes, info.world_size)
    return MeasuredRun(
        path=path,
        phase=shaped[0] if shaped else None,
        point=RunPoint(
            label=str(path),
            world_size=info.world_size,
            nodes=info.nodes,
            step_seconds=step,
            compute_seconds=compute,
            wait_seconds=wait,
            spread=(sigma / throughput) if sigma else 0.0,
        ),
        throughput=float(throughput),
        throughput_sigma=sigma,
        samples_per_rank_step=per_step / info.world_size,
        gradient_bytes=gradient_bytes(summary, path),
        split_from=split_from,
    )


def load_runs(
    paths: list[Path],
    plan: PhasePlan,
    prometheus_url: str | None = None,
    access: PrometheusAccess | None = None,
) -> list[MeasuredRun]:
    """Every run given; they must train the same model with the same per-rank batch to share one model."""
    runs = [
        measured_run(load_summary(p), p, plan, prometheus_url, access)
        for p in (resolve_summary_path(r) for r in paths)
    ]
    shapes = {(r.gradient_bytes, r.samples_per_rank_step) for r in runs}
    if len(shapes) > 1:
        described = "; ".join(
            f"{r.path}: {r.gradient_bytes:,.0f} gradient bytes, {r.samples_per_rank_step:g} samples per rank"
            for r in runs
        )
        raise ToolingError(
            f"the runs train different models or batches, one step-time model cannot cover them: {described}",
            hint="give runs of the same trainer config at different sizes (the phases' configs share one)",
        )
    return runs
