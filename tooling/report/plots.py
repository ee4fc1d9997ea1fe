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
from tooling.gates.display import fmt_bound, fmt_percent
from tooling.plan.bounds import Bound
from tooling.report.clock import TIME_LABEL, heartbeats, restarts

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIZE = (8.0, 3.6)
# A value's colour is its own criterion's verdict; anything else (NO DATA, SKIP, not gated) is unmeasured.
STATUS_COLOUR = {"PASS": "tab:green", "WARN": "tab:orange", "FAIL": "tab:red"}
UNMEASURED_COLOUR = "lightgray"


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


def _rank_labels(summary: dict[str, Any]) -> list[str]:
    return [f"{r.get('node', '?')}/{r.get('rank')}" for r in summary.get("ranks", [])]


def _time_axis(ax: Any) -> None:
    """Every time axis: seconds, 0 at the run's start."""
    ax.set_xlabel(TIME_LABEL)
    ax.set_xlim(left=0.0)


def _percent_axis(ax: Any) -> None:
    """Bars in percent points (the series as plotted), ticks in the report's one percent format."""
    from matplotlib.ticker import FuncFormatter  # with pyplot, on the first figure (see _pyplot)

    ax.yaxis.set_major_formatter(FuncFormatter(lambda points, _: fmt_percent(points / 100)))


def _limit_lines(ax: Any, name: str, target: Bound | None, minimum: Bound | None, scale: float = 1.0) -> None:
    """The criterion's bounds as the gate table writes them (`name` picks the unit and percent format)."""
    if target is not None:
        ax.axhline(
            target.value * scale,
            color="tab:green",
            linestyle="--",
            label=f"target {fmt_bound(name, target)}",
        )
    if minimum is not None and (target is None or minimum.value != target.value):
        ax.axhline(
            minimum.value * scale,
            color="tab:red",
            linestyle=":",
            label=f"minimum {fmt_bound(name, minimum)}",
        )


def throughput(summary: dict[str, Any], target: Bound | None, minimum: Bound | None) -> Figure:
    fig, ax = _figure("Job-wide throughput over time")
    beats = heartbeats(summary)
    ax.plot(
        [s for s, _ in beats],
        [p[2] for _, p in beats],
        marker=".",
        color="tab:blue",
        label="samples/s (heartbeat)",
    )
    if target is not None and minimum is not None and beats:
        low, high = sorted((minimum.value, target.value))
        ax.axhspan(low, high, color="tab:orange", alpha=0.15, label="warn band (minimum..target)")
    _limit_lines(ax, "throughput", target, minimum)
    _time_axis(ax)
    ax.set_ylabel("samples/s")
    ax.legend(loc="best", fontsize="small")
    return fig


def loss(summary: dict[str, Any]) -> Figure:
    fig, ax = _figure("Training loss (mean over ranks, per heartbeat)")
    beats = [(s, p) for s, p in heartbeats(summary) if p[3] is not None]
    ax.plot([s for s, _ in beats], [p[3] for _, p in beats], marker=".", color="tab:purple")
    _time_axis(ax)
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
    ax.bar(_rank_labels(summary), values, color="tab:cyan", label="overhead")
    _limit_lines(ax, "comm_overhead", target, minimum, scale=100)
    _percent_axis(ax)
    ax.set_xlabel("node/rank")
    ax.set_ylabel("share of step time")
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
    _limit_lines(ax, "memory_pressure", target, minimum, scale=100)
    ax.set_ylim(0, 100)
    _percent_axis(ax)
    ax.set_xlabel("node/rank")
    ax.set_ylabel("in use")
    ax.legend(loc="best", fontsize="small")
    return fig


def checkpoint_timeline(summary: dict[str, Any]) -> Figure:
    """Progress over time, with the checkpoint steps and each restart of the worker group marked (the
    initial start is the axis' 0, not a restart)."""
    fig, ax = _figure("Progress and checkpoints (no restart)")
    beats = heartbeats(summary)
    xs = [s for s, _ in beats]
    steps = [p[1] for _, p in beats]
    ax.plot(xs, steps, color="tab:gray", label="step")
    every = (summary.get("config") or {}).get("checkpoint", {}).get("every_steps")
    info = summary.get("checkpoints", {})
    marks: set[int] = set()
    if every and info.get("last_step"):
        marks.update(range(every, int(info["last_step"]) + 1, every))
    if info.get("last_step"):
        marks.add(int(info["last_step"]))
    if marks and len(beats) >= 2:
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
    restarted = restarts(summary)
    unplaced = restarted.total - len(restarted.seconds)
    if restarted.total:
        ax.set_title(
            f"Progress, checkpoints and {restarted.total} restart(s)"
            + (f", {unplaced} without a recorded time" if unplaced else "")
        )
    for n, x in enumerate(restarted.seconds):
        ax.axvline(x, color="tab:red", linestyle=":", label="restart" if n == 0 else None)
    _time_axis(ax)
    ax.set_ylabel("step")
    ax.legend(loc="best", fontsize="small")
    return fig


def phase_comparison(rows: list[dict[str, Any]]) -> Figure:
    """Measured throughput per phase (latest decision records) against each phase's target, each bar in
    the colour of its throughput verdict: a NO-GO decided by another criterion leaves a passing bar green."""
    fig, ax = _figure("Throughput by phase (latest gate decisions)")
    names = [f"phase {r['phase']}" for r in rows]
    measured = [r.get("throughput") or 0.0 for r in rows]
    verdicts = [(r.get("verdicts") or {}).get("throughput") for r in rows]
    ax.bar(names, measured, color=[status_colour(v) for v in verdicts])
    targets = [r.get("target") for r in rows]
    target = ax.scatter(
        names, [t or 0.0 for t in targets], color="black", marker="_", s=600, label="target", zorder=3
    )
    from matplotlib.patches import Patch  # with pyplot, on the first figure (see _pyplot)

    shown = [v for v in STATUS_COLOUR if v in verdicts]
    keys = [Patch(color=STATUS_COLOUR[v], label=f"throughput {v}") for v in shown]
    if any(v not in STATUS_COLOUR for v in verdicts):
        keys.append(Patch(color=UNMEASURED_COLOUR, label="throughput not measured"))
    ax.legend(handles=[*keys, target], loc="best", fontsize="small")
    ax.set_ylabel("samples/s")
    return fig


def status_colour(verdict: str | None) -> str:
    return STATUS_COLOUR.get(verdict or "", UNMEASURED_COLOUR)


def save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue(), durable=False)
    return path
