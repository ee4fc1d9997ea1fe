"""Phase P forecast from the smaller phases' runs: throughput, scaling efficiency and communication overhead,
each with a band, and the verdicts P's gate would give them.

Figures (the gate's definitions, tooling/gates/scaling.py and ddp/comm_probe.py):
    throughput        X(P) = samples per rank and step * n / T(n, N)      (T: tooling/plan/step_model.py)
    comm overhead     exposed wait / (compute + exposed wait) = wait(n, N) / (C + wait(n, N))
    efficiency        X(P) / (X(Q) * n / n_Q), against the plan's first phase and against P's previous one
    degradation       (E(previous) - E(P)) / E(previous)
A phase that was measured (one of the runs has its shape) enters with its measured throughput; the others
with the model's.

The band: every measured time of every run is drawn from a normal around its value with the run's relative
spread (the standard deviation of its throughput windows over their mean, as the summary records it), the
model is refitted on each draw (step_model.refits), and each figure is recomputed; the band is the
16th-84th percentile of those figures. Measured throughputs are drawn the same way. It is as wide as the
runs' windows vary, so it bounds one window's rate more than a long run's mean. The bus bandwidth is taken
as exact: the probe reports no spread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tooling.console import ToolingError
from tooling.forecast.evidence import MeasuredRun
from tooling.gates.judge import Row, decide, judge
from tooling.gates.site import Criterion
from tooling.plan.measurements import Measurement
from tooling.plan.phases import PhasePlan
from tooling.plan.step_model import DRAWS, SEED, Band, Network, StepModel, band, fit, refits

SOURCE = "forecast"
# The gate criteria a forecast can speak to; the others (health, uptime) need the run itself.
FORECAST_CRITERIA = ("throughput", "scaling_efficiency", "efficiency_degradation", "comm_overhead")


@dataclass(frozen=True)
class Forecast:
    phase: str
    nodes: int
    world_size: int
    model: StepModel
    figures: dict[str, Band]
    rows: list[Row]  # the gate's verdicts on the central values
    edge_rows: list[Row]  # ... and on each band's worse edge
    runs: list[MeasuredRun]
    bandwidth_source: str

    @property
    def decision(self) -> str:
        return decide(self.rows)

    @property
    def edge_decision(self) -> str:
        return decide(self.edge_rows)

    def as_dict(self) -> dict[str, Any]:
        edges = {row.name: row.verdict for row in self.edge_rows}
        return {
            "phase": self.phase,
            "nodes": self.nodes,
            "world_size": self.world_size,
            "model": {**self.model.as_dict(), "bandwidth_source": self.bandwidth_source},
            "runs": [r.as_dict() for r in self.runs],
            "predicted": {name: b.as_dict() for name, b in self.figures.items()},
            "gate": {
                "criteria": [{**row.as_dict(), "verdict_at_band_edge": edges[row.name]} for row in self.rows],
                "decision": self.decision,
                "decision_at_band_edge": self.edge_decision,
                "not_forecast": "health, stability and uptime criteria need the run itself",
            },
        }


def _figures(
    plan: PhasePlan,
    phase: str,
    model: StepModel,
    runs: list[MeasuredRun],
    rates: list[float],
) -> dict[str, float]:
    """Every figure of the module docstring for `phase`, from one model and the runs' measured `rates`."""
    per_rank = runs[0].samples_per_rank_step
    observed = {r.phase: x for r, x in zip(runs, rates, strict=True) if r.phase is not None}

    def rate(name: str) -> float:
        p = plan.get(name)
        if name in observed:
            return observed[name]
        return per_rank * p.world_size / model.step_seconds(p.world_size, p.nodes)

    def efficiency(name: str, against: str) -> float:
        return rate(name) / (rate(against) * plan.get(name).world_size / plan.get(against).world_size)

    target = plan.get(phase)
    first = plan.ordered()[0][0]
    out = {
        "throughput": rate(phase),
        "step_seconds": model.step_seconds(target.world_size, target.nodes),
        "comm_overhead": model.comm_share(target.world_size, target.nodes),
        "efficiency_vs_first": efficiency(phase, first),
    }
    previous = target.previous
    if previous is not None:
        out["scaling_efficiency"] = efficiency(phase, previous)
        before = plan.get(previous).previous
        if before is not None:
            e_prev = efficiency(previous, before)
            out["efficiency_degradation"] = (e_prev - out["scaling_efficiency"]) / e_prev
    return out


def _worse_edge(criterion: Criterion, b: Band) -> float:
    # The edge that a criterion is likelier to miss: the low edge where higher is better.
    return b.low if criterion.target.op in (">=", ">") else b.high


def forecast(
    plan: PhasePlan,
    phase: str,
    runs: list[MeasuredRun],
    busbw_bytes_per_s: float,
    bandwidth_source: str,
    criteria: dict[str, Criterion],
) -> Forecast:
    """Fit on `runs` and predict `phase`; step_model.ModelError when the runs cannot determine the model."""
    import numpy as np

    net = Network(runs[0].gradient_bytes, busbw_bytes_per_s)
    points = [r.point for r in runs]
    model = fit(points, net)
    central = _figures(plan, phase, model, runs, [r.throughput for r in runs])
    # The measured throughputs drawn as the runs' times are (module docstring).
    z = np.random.default_rng(SEED + 1).standard_normal((DRAWS, len(runs)))
    drawn = [
        _figures(
            plan,
            phase,
            m,
            runs,
            [r.throughput * max(0.05, 1 + r.point.spread * z[k, i]) for i, r in enumerate(runs)],
        )
        for k, m in enumerate(refits(points, net))
    ]
    figures = {name: band(value, [d[name] for d in drawn]) for name, value in central.items()}
    rows, edge_rows = [], []
    for name in FORECAST_CRITERIA:
        if name not in criteria or name not in figures:
            continue
        b = figures[name]
        note = f"band {b.low:.4g} .. {b.high:.4g}"
        rows.append(judge(criteria[name], Measurement(b.value, SOURCE, note), None))
        edge = _worse_edge(criteria[name], b)
        edge_rows.append(judge(criteria[name], Measurement(edge, SOURCE, "the band's worse edge"), None))
    target = plan.get(phase)
    return Forecast(
        phase, target.nodes, target.world_size, model, figures, rows, edge_rows, runs, bandwidth_source
    )


def compare(result: Forecast, measured: MeasuredRun) -> dict[str, Any]:
    """A run of the forecast phase against the forecast: the error on each figure both have, and whether
    the measured value fell inside the band (communication overhead as the model counts it: the run's
    wait over its compute plus wait). A run of another shape than the phase's is refused."""
    p = measured.point
    if (p.nodes, p.world_size) != (result.nodes, result.world_size):
        raise ToolingError(
            f"{measured.path}: a run of {p.nodes} node(s) x {p.world_size // p.nodes}, phase {result.phase} "
            f"is {result.nodes} x {result.world_size // result.nodes}",
            hint=f"compare with a run of phase {result.phase}",
        )
    values = {
        "throughput": measured.throughput,
        "comm_overhead": measured.point.wait_seconds
        / (measured.point.wait_seconds + measured.point.compute_seconds),
        "step_seconds": measured.point.step_seconds,
    }
    out: dict[str, Any] = {"run": str(measured.path), "figures": {}}
    for name, value in values.items():
        b = result.figures[name]
        out["figures"][name] = {
            "predicted": b.value,
            "measured": value,
            "error_ratio": (b.value - value) / value if value else None,
            "inside_band": b.low <= value <= b.high,
        }
    return out
