"""The report's figures, drawn from a run summary (ddp/summary.py) and decision records.

Each function returns its Figure so tests can read back the plotted data; `save` writes the PNG and
closes the figure. The Agg backend draws without a display (control machines are often headless).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ddp.atomic import atomic_write_bytes
from tooling.plan.bounds import Bound

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIZE = (8.0, 3.6)


@functools.cache
def _pyplot() -> ModuleType:
    """pyplot on the Agg backend, imported on the first figure rather than with this module: matplotlib
    takes most of a second to import, and every `tooling ... --help` imports this module."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _figure(title: str) -> tuple[Figure, Any]:
    fig, ax = _pyplot().subplots(figsize=SIZE, layout="constrained")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _timeline(summary: dict[str, Any]) -> list[list[Any]]:
    return [p for p in summary.get("timeline", []) if p and p[0] is not None]


def _rank_labels(summary: dict[str, Any]) -> list[str]:
    return [f"{r.get('node', '?')}/{r.get('rank')}" for r in summary.get("ranks", [])]


def _clock(seconds: list[float]) -> tuple[list[float], str]:
    """Elapsed time in minutes, or seconds for runs shorter than two minutes."""
    span = max(seconds, default=0.0)
    return ([s / 60 for s in seconds], "minutes") if span >= 120 else (seconds, "seconds")


def _limit_lines(ax: Any, target: Bound | None, minimum: Bound | None, scale: float = 1.0) -> None:
    if target is not None:
        ax.axhline(
            target.value * scale,
            color="tab:green",
            linestyle="--",
            label=f"target {target.op} {target.value * scale:g}",
        )
    if minimum is not None and (target is None or minimum.value != target.value):
        ax.axhline(
            minimum.value * scale,
            color="tab:red",
            linestyle=":",
            label=f"minimum {minimum.op} {minimum.value * scale:g}",
        )


def throughput(summary: dict[str, Any], target: Bound | None, minimum: Bound | None) -> Figure:
    fig, ax = _figure("Job-wide throughput over time")
    points = _timeline(summary)
    t0 = points[0][0] if points else 0.0
    xs, unit = _clock([p[0] - t0 for p in points])
    ax.plot(xs, [p[2] for p in points], marker=".", color="tab:blue", label="samples/s (heartbeat)")
    if target is not None and minimum is not None and points:
        low, high = sorted((minimum.value, target.value))
        ax.axhspan(low, high, color="tab:orange", alpha=0.15, label="warn band (minimum..target)")
    _limit_lines(ax, target, minimum)
    ax.set_xlabel(f"{unit} since the first heartbeat")
    ax.set_ylabel("samples/s")
    ax.legend(loc="best", fontsize="small")
    return fig


def loss(summary: dict[str, Any]) -> Figure:
    fig, ax = _figure("Training loss (mean over ranks, per heartbeat)")
    points = [p for p in _timeline(summary) if p[3] is not None]
    ax.plot([p[1] for p in points], [p[3] for p in points], marker=".", color="tab:purple")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    return fig


def step_balance(summary: dict[str, Any]) -> Figure:
    fig, ax = _figure("Per-rank step time (mean, with p95)")
    ranks = summary.get("ranks", [])
    means = [r.get("step_seconds_mean") or 0.0 for r in ranks]
    p95 = [r.get("step_seconds_p95") or 0.0 for r in ranks]
    labels = _rank_labels(summary)
    ax.bar(labels, [m * 1000 for m in means], color="tab:blue", label="mean")
    ax.scatter(labels, [p * 1000 for p in p95], color="tab:red", marker="_", s=300, label="p95", zorder=3)
    balance = summary.get("step_time", {}).get("balance_ratio")
    if balance:
        ax.set_title(f"Per-rank step time (slowest / fastest = {balance:.2f})")
    ax.set_xlabel("node/rank")
    ax.set_ylabel("ms")
    ax.legend(loc="best", fontsize="small")
    return fig


def comm_overhead(summary: dict[str, Any], target: Bound | None, minimum: Bound | None) -> Figure:
    fig, ax = _figure("Communication overhead per rank (no_sync probe)")
    ranks = summary.get("ranks", [])
    values = [(r.get("comm_overhead_ratio") or 0.0) * 100 for r in ranks]
    ax.bar(_rank_labels(summary), values, color="tab:cyan", label="overhead %")
    _limit_lines(ax, target, minimum, scale=100)
    ax.set_xlabel("node/rank")
    ax.set_ylabel("% of step time")
    ax.legend(loc="best", fontsize="small")
    return fig


def memory_pressure(summary: dict[str, Any], target: Bound | None, minimum: Bound | None) -> Figure:
    fig, ax = _figure("Peak memory pressure per rank")
    ranks = summary.get("ranks", [])
    labels = _rank_labels(summary)
    ax.bar(
        labels,
        [(r.get("memory_pressure_ratio_max") or 0.0) * 100 for r in ranks],
        color="tab:olive",
        label="host RAM",
    )
    gpu = [r.get("gpu_memory_pressure_ratio_max") for r in ranks]
    if any(g is not None for g in gpu):
        ax.scatter(
            labels, [(g or 0.0) * 100 for g in gpu], color="black", marker="D", label="GPU memory", zorder=3
        )
    _limit_lines(ax, target, minimum, scale=100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("node/rank")
    ax.set_ylabel("% in use")
    ax.legend(loc="best", fontsize="small")
    return fig


def checkpoint_timeline(summary: dict[str, Any]) -> Figure:
    """Progress over time, with the checkpoint steps and each (re)start of the worker group marked."""
    fig, ax = _figure("Progress, checkpoints and restarts")
    points = _timeline(summary)
    t0 = min(
        [p[0] for p in points]
        + [i["started_at"] for i in summary.get("incarnations", []) if i.get("started_at")],
        default=0.0,
    )
    starts = [i["started_at"] for i in summary.get("incarnations", []) if i.get("started_at")]
    clock, unit = _clock([p[0] - t0 for p in points] + [s - t0 for s in starts])
    xs, start_xs = clock[: len(points)], clock[len(points) :]
    steps = [p[1] for p in points]
    ax.plot(xs, steps, color="tab:gray", label="step")
    every = (summary.get("config") or {}).get("checkpoint", {}).get("every_steps")
    info = summary.get("checkpoints", {})
    marks: set[int] = set()
    if every and info.get("last_step"):
        marks.update(range(every, int(info["last_step"]) + 1, every))
    if info.get("last_step"):
        marks.add(int(info["last_step"]))
    if marks and len(points) >= 2:
        import numpy as np  # loaded with matplotlib anyway; kept off this module's import (see _pyplot)

        when = np.interp(sorted(marks), steps, xs)
        ax.scatter(
            when,
            sorted(marks),
            color="tab:green",
            marker="v",
            zorder=3,
            label=f"checkpoint steps ({info.get('saved', 0)} saved, {info.get('failures', 0)} failed)",
        )
    for n, x in enumerate(start_xs):
        ax.axvline(x, color="tab:red", linestyle=":", label="(re)start" if n == 0 else None)
    ax.set_xlabel(f"{unit} since start")
    ax.set_ylabel("step")
    ax.legend(loc="best", fontsize="small")
    return fig


def phase_comparison(rows: list[dict[str, Any]]) -> Figure:
    """Measured throughput per phase (latest decision records) against each phase's target."""
    fig, ax = _figure("Throughput by phase (latest gate decisions)")
    names = [f"phase {r['phase']}" for r in rows]
    measured = [r.get("throughput") or 0.0 for r in rows]
    colours = [
        "tab:green" if r.get("decision") == "GO" else "tab:red" if r.get("decision") else "lightgray"
        for r in rows
    ]
    ax.bar(names, measured, color=colours, label="measured (green GO, red NO-GO)")
    targets = [r.get("target") for r in rows]
    ax.scatter(names, [t or 0.0 for t in targets], color="black", marker="_", s=600, label="target", zorder=3)
    ax.set_ylabel("samples/s")
    ax.legend(loc="best", fontsize="small")
    return fig


def save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue(), durable=False)
    return path
