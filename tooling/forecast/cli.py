"""`tooling forecast --phase P`: what phase P will measure, predicted before it is deployed.

Exit codes: 0 the gate would pass on the predicted figures, 1 it would not (NO-GO on the central values),
2 a measurement the model needs is missing (no run, no bus bandwidth, runs of one shape only); the
message names it and the command that measures it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tooling import home
from tooling.cli_options import (
    CriteriaOption,
    JsonOption,
    RunsDirOption,
    VerifyArtifactsOption,
    phase_option,
    with_prometheus_access,
)
from tooling.console import EXIT_CHECK_FAILED, ToolingError, console, print_document

if TYPE_CHECKING:
    from tooling.forecast.predict import Forecast
    from tooling.gates.judge import Row
    from tooling.plan.phases import PhasePlan
    from tooling.prometheus_api import PrometheusAccess

# The model (numpy, scipy), the plan and the gate's judging are imported by the command when it runs:
# `tooling --help` imports this module and must stay quick.

GBS = 1e9  # the probe's GB/s


def default_runs(plan: PhasePlan, phase: str, runs_dir: Path) -> list[Path]:
    """The newest run of every phase before `phase` in the roll-out (those that have one)."""
    from tooling.gates.evidence import find_latest_run

    found = []
    for name, _ in plan.ordered():
        if name == phase:
            break
        latest = find_latest_run(runs_dir, name)
        if latest is not None:
            found.append(latest)
    return found


def bandwidth(busbw_gbs: float | None, verify_dir: Path) -> tuple[float, str]:
    """B in bytes/s and where it came from: --busbw, else the newest verify-node Gloo probe across nodes."""
    from tooling.verify.recorded import latest_busbw

    if busbw_gbs is not None:
        return busbw_gbs * GBS, f"--busbw {busbw_gbs:g} GB/s"
    recorded = latest_busbw(verify_dir)
    if recorded is None:
        raise ToolingError(
            f"no all-reduce bus bandwidth measured: no verify-node run under {verify_dir} has a Gloo "
            "probe result across two or more nodes",
            hint="run `tooling verify-node --phase 2a` (its network checks run the probe across the nodes), "
            "or pass --busbw GB/s measured another way (nccl-tests' busbw)",
        )
    probe = recorded.probe
    return probe.busbw_gbs * GBS, (
        f"verify-node Gloo probe {probe.busbw_gbs:g} GB/s busbw across {', '.join(recorded.nodes)} "
        f"({probe.size_bytes / 2**20:g} MiB; {recorded.source})"
    )


def _verdict(row: Row) -> str:
    from tooling.gates.display import VERDICT_STYLE

    return f"[{VERDICT_STYLE[row.verdict]}]{row.verdict}[/]"


def forecast_table(result: Forecast) -> Table:
    from tooling.gates.display import fmt_bound, fmt_percent, fmt_value, label_with_unit

    table = Table(
        title=f"phase {result.phase} forecast ({result.nodes} node(s) x "
        f"{result.world_size // result.nodes} = {result.world_size} processes)",
        title_justify="left",
    )
    for column in ("figure", "predicted", "band", "gate target (minimum)", "verdict (at band edge)"):
        table.add_column(column)
    rows = {row.name: row for row in result.rows}
    edges = {row.name: row for row in result.edge_rows}
    # Figures the gate does not judge, and how they read.
    plain: dict[str, tuple[str, Callable[[float], str]]] = {
        "step_seconds": ("step time (s)", lambda v: f"{v:.4g}"),
        "efficiency_vs_first": ("scaling efficiency vs. the first phase", fmt_percent),
    }
    for name, b in result.figures.items():
        if name in plain:
            label, show = plain[name]
            table.add_row(label, show(b.value), f"{show(b.low)} .. {show(b.high)}", "", "")
            continue
        shown = [
            label_with_unit(name),
            fmt_value(name, b.value, unit=False),
            f"{fmt_value(name, b.low, unit=False)} .. {fmt_value(name, b.high, unit=False)}",
        ]
        row, edge = rows.get(name), edges.get(name)
        if row is None or edge is None:  # a figure this phase's gate has no criterion for
            table.add_row(*shown, "not gated in this phase", "")
            continue
        target, minimum = (
            fmt_bound(name, bound, unit=False) for bound in (row.criterion.target, row.criterion.minimum)
        )
        table.add_row(*shown, f"{target} ({minimum})", f"{_verdict(row)} ({_verdict(edge)})")
    return table


def model_lines(result: Forecast) -> list[str]:
    m = result.model
    alpha = m.alpha_seconds
    lines = [
        f"compute per step C = {m.compute_seconds * 1e3:.3f} ms; overlap = {m.overlap:.1%} of the all-reduce "
        f"hidden; per-hop latency alpha = {'- (all hidden)' if alpha is None else f'{alpha * 1e6:.1f} us'}, "
        f"exposed per hop {m.latency_exposed * 1e6:.1f} us; "
        f"time outside the split kappa = {m.other_ratio:.3f}",
        f"gradient bytes S = {m.network.gradient_bytes:,.0f}; bus bandwidth B = "
        f"{m.network.busbw_bytes_per_s / GBS:.4g} GB/s ({result.bandwidth_source})",
    ]
    for run in result.runs:
        p = run.point
        lines.append(
            f"fitted on {run.path} (phase {run.phase or '?'}, {p.nodes} x {p.world_size // p.nodes}): "
            f"{run.throughput:,.1f} samples/s, compute {p.compute_seconds * 1e3:.3f} ms, "
            f"wait {p.wait_seconds * 1e3:.3f} ms ({run.split_from}), spread {p.spread:.1%}"
        )
    return lines


def compare_lines(comparison: dict[str, object]) -> list[str]:
    lines = [f"against {comparison['run']}:"]
    figures = comparison["figures"]
    assert isinstance(figures, dict)
    for name, f in figures.items():
        error = f["error_ratio"]
        lines.append(
            f"  {name}: predicted {f['predicted']:.4g}, measured {f['measured']:.4g}, error "
            f"{'-' if error is None else f'{error:+.1%}'}{'' if f['inside_band'] else ' (outside the band)'}"
        )
    return lines


@with_prometheus_access
def forecast_command(
    phase: Annotated[str, phase_option("Phase to forecast.")],
    runs: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            help="Run directory or summary.json to fit on; repeat (default: the newest run of each "
            "earlier phase).",
        ),
    ] = None,
    busbw: Annotated[
        float | None,
        typer.Option(
            "--busbw",
            min=1e-9,
            metavar="GB/S",
            help="All-reduce bus bandwidth between nodes (default: the newest verify-node Gloo probe).",
        ),
    ] = None,
    compare_run: Annotated[
        Path | None,
        typer.Option("--compare", help="A measured run of the phase: print the forecast's error against it."),
    ] = None,
    criteria_file: CriteriaOption = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            help="Prometheus base URL: the runs' throughput and overhead from its range queries over each "
            "run's window instead of the summaries'.",
        ),
    ] = None,
    runs_dir: RunsDirOption = None,
    verify_dir: VerifyArtifactsOption = None,
    as_json: JsonOption = False,
    *,
    access: PrometheusAccess,
) -> None:
    """Predict a phase's throughput, scaling efficiency and communication overhead from the smaller phases'
    runs and the measured all-reduce bandwidth, with a band, and whether its gate would pass on them.

    Exit 0: the gate would pass on the predicted figures; 1: it would not; 2: a measurement is missing.
    """
    from tooling.forecast.evidence import load_runs, measured_run
    from tooling.forecast.predict import compare, forecast
    from tooling.gates.evidence import load_summary, resolve_summary_path
    from tooling.gates.site import effective_criteria, load_site
    from tooling.plan.phases import load_phases
    from tooling.plan.step_model import ModelError

    plan = load_phases()
    target = plan.get(phase)
    paths = runs or default_runs(plan, phase, runs_dir or home.runs())
    if not paths:
        raise ToolingError(
            f"no measured run of a phase before {phase} under {runs_dir or home.runs()}",
            hint="rehearse or deploy the earlier phases first (e.g. `tooling rehearse --phase 1`), "
            "or pass --from RUN for each",
        )
    measured = load_runs(paths, plan, prometheus_url, access)
    busbw_bytes, source = bandwidth(busbw, verify_dir or home.verify())
    site = load_site(criteria_file, plan) if criteria_file else None
    criteria = effective_criteria(phase, target, site, criteria_file)
    try:
        result = forecast(plan, phase, measured, busbw_bytes, source, criteria)
    except ModelError as exc:
        raise ToolingError(
            f"the runs cannot determine the step-time model: {exc}",
            hint="fit on runs of two sizes, one of them on two nodes or more (e.g. --from RUN1 --from RUN2A)",
        ) from None
    comparison = None
    if compare_run is not None:
        path = resolve_summary_path(compare_run)
        comparison = compare(result, measured_run(load_summary(path), path, plan, prometheus_url, access))
    if as_json:
        print_document({**result.as_dict(), "compare": comparison})
    else:
        console.print(forecast_table(result))
        for line in model_lines(result):
            console.print(f"  {line}", style="dim", highlight=False)
        for line in compare_lines(comparison) if comparison else []:
            console.print(line, highlight=False)
        console.print(
            f"phase {phase}'s gate on these figures: {result.decision} "
            f"(at the band's worse edge: {result.edge_decision}); health and uptime need the run itself",
            highlight=False,
        )
    if result.decision != "GO":
        raise typer.Exit(EXIT_CHECK_FAILED)
