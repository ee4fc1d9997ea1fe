"""A run's evidence for the gate: its summary.json found, read and turned into Measurements
(tooling/plan/measurements.py), and the run's identity and time window for Prometheus.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ddp.stragglers import is_straggler
from tooling.console import ToolingError
from tooling.plan.measurements import Measurement, missing

SUMMARY_FILE = "summary.json"


@dataclass
class RunInfo:
    """The run being judged: identity, shape and the time window Prometheus is asked about."""

    run_id: str
    summary_path: str | None
    world_size: int | None
    nodes: int | None
    device: str | None
    start: float | None
    end: float | None
    status: str | None = None
    sync_step_seconds: float | None = None
    nosync_step_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_summary_path(run: Path) -> Path:
    path = run / SUMMARY_FILE if run.is_dir() else run
    if not path.is_file():
        raise ToolingError(
            f"{path}: no run summary here",
            hint="pass --run with a run directory (it holds summary.json) or the summary file itself",
        )
    return path


def load_summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolingError(f"{path}: cannot read the run summary: {exc}") from None
    if not isinstance(data, dict) or "throughput" not in data or "timeline" not in data:
        raise ToolingError(f"{path}: not a trainer run summary (expected the keys throughput and timeline)")
    return data


def find_latest_run(runs_dir: Path, phase: str) -> Path | None:
    """The newest summary.json under runs_dir named for the phase (phase2a, rehearsal-phase2a-...)."""
    token = f"phase{phase}"
    found: list[tuple[float, Path]] = []
    for path in runs_dir.glob(f"*/{SUMMARY_FILE}"):
        name = path.parent.name
        if (
            name == token
            or name.startswith(f"{token}-")
            or f"-{token}-" in name
            or name.endswith(f"-{token}")
        ):
            found.append((path.stat().st_mtime, path))
    return max(found)[1] if found else None


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _heartbeat_times(summary: dict[str, Any]) -> list[float]:
    return [p[0] for p in summary.get("timeline", []) if p and p[0] is not None]


def run_start(summary: dict[str, Any]) -> float | None:
    """When the run began as far as its summary knows: its first incarnation's start, else its first
    heartbeat. The gate's window and the report's time axes both count from here."""
    starts = [i.get("started_at") for i in summary.get("incarnations", []) if i.get("started_at")]
    return min([*starts, *_heartbeat_times(summary)[:1]], default=None)


def run_info(summary: dict[str, Any], path: Path | None) -> RunInfo:
    times = _heartbeat_times(summary)
    start = run_start(summary)
    end = _finite(summary.get("written_at")) or (times[-1] if times else None)
    return RunInfo(
        run_id=str(summary.get("run", "?")),
        summary_path=str(path) if path else None,
        world_size=summary.get("world_size"),
        nodes=summary.get("nodes"),
        device=summary.get("device"),
        start=start,
        end=end,
        status=summary.get("status"),
        sync_step_seconds=_finite(summary.get("sync_step_seconds")),
        nosync_step_seconds=_finite(summary.get("nosync_step_seconds")),
        extra={"written_at": summary.get("written_at"), "steps": summary.get("steps")},
    )


def from_summary(summary: dict[str, Any], expected_world_size: int) -> dict[str, Measurement]:
    """Every figure the run summary can give; the rest (network, thermal, uptime) are missing, with why."""
    src = "summary"
    throughput = summary.get("throughput", {})
    heartbeats = max(0, len(summary.get("timeline", [])) - 1)
    grad = summary.get("grad_sync", {})
    ranks = summary.get("ranks", [])
    out: dict[str, Measurement] = {}

    out["world_size"] = Measurement(
        _finite(summary.get("world_size")),
        src,
        f"{summary.get('nodes')} node(s) x {summary.get('nproc_per_node')} process(es)",
    )
    rate = _finite(throughput.get("global_samples_per_second_mean"))
    out["throughput"] = (
        Measurement(rate, src, f"mean job-wide rate over {heartbeats} heartbeat(s), first one left out")
        if rate is not None
        else missing(src, "no heartbeat recorded (run too short?)")
    )
    sigma = _finite(throughput.get("global_samples_per_second_stddev"))
    out["throughput_sigma"] = (
        Measurement(sigma, src, f"stddev of the job-wide rate over {heartbeats} heartbeat(s)")
        if sigma is not None
        else missing(src, "fewer than 2 heartbeats: no spread to measure")
    )
    overhead = _finite(summary.get("comm_overhead_ratio"))
    out["comm_overhead"] = (
        Measurement(overhead, src, "mean over ranks of the no_sync probe's median")
        if overhead is not None
        else missing(src, "the no_sync probe never ran (metrics.comm_probe_every_steps beyond the run?)")
    )
    gpu = _finite(summary.get("gpu_utilisation_ratio"))
    out["gpu_utilisation"] = (
        Measurement(gpu, src, "mean over ranks")
        if gpu is not None
        else missing(src, "no GPU utilisation sampled (NVML unavailable?)")
    )
    host = _finite(summary.get("memory_pressure_ratio_max"))
    gpu_mem = _finite(summary.get("gpu_memory_pressure_ratio_max"))
    if host is None and gpu_mem is None:
        out["memory_pressure"] = missing(src, "no memory sample recorded")
    elif gpu_mem is not None and (host is None or gpu_mem > host):
        out["memory_pressure"] = Measurement(gpu_mem, src, "GPU memory, highest rank (above host RAM)")
    else:
        out["memory_pressure"] = Measurement(host, src, "host RAM, highest rank")
    nonfinite = _finite(summary.get("nonfinite_loss_count"))
    out["nonfinite_losses"] = (
        Measurement(nonfinite, src, f"{summary.get('skipped_steps', 0)} step(s) skipped")
        if nonfinite is not None
        else missing(src, "not recorded")
    )
    accuracy = _finite(grad.get("accuracy_ratio"))
    out["grad_sync_accuracy"] = (
        Measurement(accuracy, src, f"{grad.get('mismatches', 0)} mismatch(es) in {grad.get('checks')} checks")
        if accuracy is not None
        else missing(src, "no parameter check ran (metrics.sync_check_every_steps beyond the run?)")
    )
    absent = max(0, expected_world_size - len(ranks))
    mismatches = int(grad.get("mismatches") or 0)
    out["ranks_in_sync"] = Measurement(
        float(absent + mismatches),
        src,
        f"{len(ranks)} of {expected_world_size} ranks reported, {mismatches} check(s) disagreed",
    )
    out["stragglers"] = _stragglers(summary, src)
    out["packet_loss"] = missing(
        src, "the run summary has no network counters; needs node_exporter via --prometheus"
    )
    out["thermal_throttling"] = missing(
        src, "the run summary has no throttle counters; needs node_exporter via --prometheus"
    )
    out["uptime"] = missing(
        src, "one run's summary is not a soak; run `tooling soak --phase P` (or --prometheus over a soak)"
    )
    return out


def _stragglers(summary: dict[str, Any], src: str) -> Measurement:
    """Ranks whose compute ever exceeded the median rank's by the run's margin (ddp/stragglers.py), from
    each rank's highest ratio over the run."""
    margin = ((summary.get("config") or {}).get("metrics") or {}).get("straggler_margin")
    worst = {
        r.get("rank"): ratio
        for r in summary.get("ranks", [])
        if (ratio := _finite(r.get("compute_ratio_to_median_max"))) is not None
    }
    if not worst or margin is None:
        return missing(
            src, "no rank measured its compute against the median (run too short, or older trainer)"
        )
    named = sorted(rank for rank, ratio in worst.items() if is_straggler(ratio, float(margin)))
    slowest = max(worst.values())
    detail = f"ranks {', '.join(map(str, named))}" if named else "none"
    return Measurement(
        float(len(named)), src, f"{detail}; highest compute {slowest:.2f}x the median (margin {margin:.0%})"
    )
