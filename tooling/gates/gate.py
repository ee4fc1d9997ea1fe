"""Judge one run for one phase: gather the evidence, apply the criteria, build the decision record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tooling.gates import prometheus
from tooling.gates.evidence import RunInfo, from_summary, run_info
from tooling.gates.judge import Decision, Row, decide, judge, tally
from tooling.gates.records import SCHEMA
from tooling.gates.scaling import Baseline, Scaling, compute
from tooling.gates.site import Criterion
from tooling.plan.criteria import KINDS
from tooling.plan.measurements import Measurement, missing
from tooling.plan.phases import PhasePlan
from tooling.prometheus_api import PrometheusAccess, PrometheusAccessError, PrometheusClient, PrometheusError


@dataclass
class Sources:
    summary: str | None = None
    prometheus_url: str | None = None
    prometheus_error: str | None = None
    prometheus_step_s: float | None = None
    prometheus_figures: list[str] = field(default_factory=list)
    criteria_file: str | None = None
    given: dict[str, float] = field(default_factory=dict)

    def describe(self) -> list[str]:
        lines = [f"run summary: {self.summary}"] if self.summary else []
        if self.prometheus_url and self.prometheus_error:
            lines.append(
                f"Prometheus {self.prometheus_url}: unavailable ({self.prometheus_error}); used the summary"
            )
        elif self.prometheus_url:
            lines.append(
                f"Prometheus {self.prometheus_url}: range queries at {self.prometheus_step_s:g}s steps"
            )
        if self.given:
            lines.append(
                "given on the command line: " + ", ".join(f"{k}={v:g}" for k, v in self.given.items())
            )
        if self.criteria_file:
            lines.append(f"site criteria: {self.criteria_file}")
        return lines


@dataclass
class GateResult:
    phase: str
    decision: Decision
    rows: list[Row]
    run: RunInfo
    sources: Sources
    scaling: Scaling | None
    measurements: dict[str, Measurement]
    decided_at: float = field(default_factory=time.time)

    def record(self, plan: PhasePlan) -> dict[str, Any]:
        phase = plan.get(self.phase)
        return {
            "schema": SCHEMA,
            "phase": self.phase,
            "group": phase.group,
            "nodes": phase.nodes,
            "nproc_per_node": phase.nproc_per_node,
            "decision": self.decision,
            "decided_at": self.decided_at,
            "decided_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.decided_at)),
            "tally": tally(self.rows),
            "run": self.run.as_dict(),
            "window": {"start": self.run.start, "end": self.run.end},
            "sources": {**vars(self.sources)},
            "criteria": [row.as_dict() for row in self.rows],
            "waivers": {r.name: r.criterion.waived for r in self.rows if r.criterion.waived},
            "measurements": {name: m.as_dict() for name, m in self.measurements.items()},
            "scaling": self.scaling.as_dict() if self.scaling else None,
        }


def gather(
    summary: dict[str, Any],
    summary_path: Path | None,
    expected_ranks: int,
    prometheus_url: str | None,
    step_s: float | None = None,
    *,
    access: PrometheusAccess | None = None,
) -> tuple[RunInfo, dict[str, Measurement], Sources]:
    """Summary figures, replaced by Prometheus's wherever Prometheus has them.

    A Prometheus that cannot answer leaves the summary's figures (noted in the sources); one that turns
    `access` away (PrometheusAccessError) stops the judgement, as the operator asked for its figures.
    """
    info = run_info(summary, summary_path)
    measured = from_summary(summary, expected_ranks)
    sources = Sources(summary=str(summary_path) if summary_path else None, prometheus_url=prometheus_url)
    if prometheus_url:
        if info.start is None or info.end is None:
            sources.prometheus_error = "the run summary has no time window to query"
        else:
            client = PrometheusClient(prometheus_url, access=access or PrometheusAccess())
            try:
                from_prom, used_step = prometheus.measure(
                    client, info.start, info.end, expected_ranks, step_s
                )
            except PrometheusAccessError:
                raise
            except PrometheusError as exc:
                sources.prometheus_error = str(exc)
            else:
                sources.prometheus_step_s = used_step
                for name, m in from_prom.items():
                    if m.value is not None:
                        sources.prometheus_figures.append(name)
                    if m.value is not None or measured.get(name) is None or measured[name].value is None:
                        measured[name] = m
    return info, measured, sources


def evaluate(
    plan: PhasePlan,
    phase_name: str,
    criteria: dict[str, Criterion],
    info: RunInfo,
    measured: dict[str, Measurement],
    sources: Sources,
    baseline: Baseline | None,
    given: dict[str, float] | None = None,
) -> GateResult:
    phase = plan.get(phase_name)
    for name, value in (given or {}).items():
        measured[name] = Measurement(value, "given", "given with --measured")
        sources.given[name] = value
    scaling = None
    if phase.previous is not None:
        throughput = measured.get("throughput")
        scaling = compute(
            throughput.value if throughput else None,
            info.world_size,
            info.sync_step_seconds,
            info.nosync_step_seconds,
            baseline,
        )
        measured.setdefault("scaling_efficiency", scaling.efficiency)
        measured.setdefault("efficiency_degradation", scaling.degradation)
    rows = []
    for name, criterion in criteria.items():
        m = measured.get(name) or missing("-", f"nothing measures {KINDS[name].label}")
        suspect = bool(scaling and scaling.suspect and name == "scaling_efficiency")
        rows.append(judge(criterion, m, info.device, suspect))
    return GateResult(phase_name, decide(rows), rows, info, sources, scaling, measured)
