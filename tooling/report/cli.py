"""`tooling report`: a phase's performance report, or with --weekly the executive briefing.

Exit codes: 0 written, 2 usage or input error (unknown phase, no run, bad criteria file).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tooling import home
from tooling.cli_options import (
    CriteriaOption,
    DecisionsOption,
    JsonOption,
    RunsDirOption,
    phase_option,
    with_prometheus_access,
)
from tooling.console import ToolingError, console, err_console, people_output_on_stderr, print_document
from tooling.gates.cli import baseline_for, locate_run
from tooling.gates.evidence import load_summary
from tooling.gates.records import latest_record

if TYPE_CHECKING:
    from tooling.plan.phases import PhasePlan
    from tooling.prometheus_api import PrometheusAccess

# The judging, the plan's schema, Prometheus' client and the report's templates and plots are imported
# where they run: `tooling --help` imports this module and must stay quick.


def gate_record(
    plan: PhasePlan,
    phase: str,
    summary: dict[str, Any],
    summary_path: Path,
    decisions: Path,
    criteria_file: Path | None,
    prometheus_url: str | None,
    access: PrometheusAccess | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The gate table to show: the decision of record when this run was gated, else a fresh evaluation."""
    from tooling.gates.gate import evaluate, gather
    from tooling.gates.site import effective_criteria, load_site

    record = latest_record(decisions, phase)
    gated = (record or {}).get("sources", {}).get("summary")
    same_run = gated is not None and Path(gated).resolve() == summary_path.resolve()
    if record is not None and same_run and criteria_file is None and prometheus_url is None:
        return record, [f"gate table: the decision of record, {record['_path']}"]
    phase_def = plan.get(phase)
    site = load_site(criteria_file, plan) if criteria_file else None
    criteria = effective_criteria(phase, phase_def, site, criteria_file)
    info, figures, sources = gather(
        summary, summary_path, phase_def.world_size, prometheus_url, access=access
    )
    if sources.prometheus_error:
        err_console.print(f"[yellow]warning:[/] {sources.prometheus_error}; using the run summary alone")
    baseline = baseline_for(plan, phase, decisions, None)
    result = evaluate(plan, phase, criteria, info, figures, sources, baseline)
    lines = [
        *sources.describe(),
        "gate table: evaluated for this report only; `tooling gate` records decisions",
    ]
    return result.record(plan), lines


@with_prometheus_access
def report(
    phase: Annotated[str | None, phase_option("Phase to report on.")] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Run directory or its summary.json (default: newest run)")
    ] = None,
    weekly: Annotated[
        bool, typer.Option("--weekly", help="Write the executive briefing from the decision records.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report directory (default: <home>/reports/<name>-<time>).")
    ] = None,
    prometheus_url: Annotated[
        str | None, typer.Option("--prometheus", help="Prometheus base URL for the gate table.")
    ] = None,
    criteria_file: CriteriaOption = None,
    decisions: DecisionsOption = None,
    runs_dir: RunsDirOption = None,
    as_json: JsonOption = False,
    *,
    access: PrometheusAccess,
) -> None:
    """Write a performance report (Markdown + HTML + PNG plots) for a phase's run, or the weekly briefing."""
    from tooling.plan.phases import load_phases

    decisions = decisions or home.decisions()
    plan = load_phases()
    with people_output_on_stderr(as_json):
        document = _write(
            plan, phase, run, weekly, out, prometheus_url, criteria_file, decisions, runs_dir, access
        )
    if as_json:
        print_document(document)


def _write(
    plan: PhasePlan,
    phase: str | None,
    run: Path | None,
    weekly: bool,
    out: Path | None,
    prometheus_url: str | None,
    criteria_file: Path | None,
    decisions: Path,
    runs_dir: Path | None,
    access: PrometheusAccess,
) -> dict[str, Any]:
    """Write the report and print where; returns what --json prints: the paths written and the verdicts."""
    from tooling.report.build import build_phase_report, build_weekly

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if weekly:
        if phase is not None or run is not None:
            raise ToolingError("--weekly covers every phase: leave out --phase and --run")
        written = build_weekly(plan, decisions, out or home.reports() / f"weekly-{stamp}")
        latest = {name: latest_record(decisions, name) for name in plan.phases}
        verdicts: dict[str, Any] = {
            "decisions": {name: (r or {}).get("decision") for name, r in latest.items()}
        }
    else:
        if phase is None:
            raise ToolingError("which phase? pass --phase P (or --weekly for the briefing)")
        summary_path = locate_run(run, runs_dir, phase)
        summary = load_summary(summary_path)
        record, lines = gate_record(
            plan, phase, summary, summary_path, decisions, criteria_file, prometheus_url, access
        )
        target = out or home.reports() / f"phase{phase}-{stamp}"
        written = build_phase_report(plan, summary, record, decisions, target, lines)
        verdicts = {
            "phase": phase,
            "run_summary": str(summary_path),
            "decision": record.get("decision"),
            "tally": record.get("tally"),
            "criteria": record.get("criteria", []),
            "gate_table_from": lines,
        }
    console.print(f"report: {written.markdown}")
    console.print(f"        {written.html}")
    console.print(f"        {len(written.figures)} figure(s) in {written.markdown.parent}")
    return {
        "report": "weekly" if weekly else "phase",
        "markdown": str(written.markdown),
        "html": str(written.html),
        "figures": [str(path) for path in written.figures],
        **verdicts,
    }
