"""`tooling gate` (judge a run for a phase, keep the decision) and `tooling phases` (the critical path).

Exit codes of `gate`: 0 GO, 1 NO-GO, 2 usage or input error (unknown phase, bad criteria file, no run, a
run of another size than the phase's, an incomplete run without --allow-incomplete; see
tooling/gates/eligibility.py). Only a GO or NO-GO is recorded, and never with --no-record.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from tooling import home
from tooling.cli_options import (
    CriteriaOption,
    DecisionsOption,
    JsonOption,
    RunsDirOption,
    SoakDirOption,
    phase_option,
    with_prometheus_access,
)
from tooling.console import EXIT_CHECK_FAILED, ToolingError, console, err_console, print_next
from tooling.gates.eligibility import COMPLETE_RULE, check_shape, completeness, require_complete
from tooling.gates.evidence import find_latest_run, load_summary, resolve_summary_path, run_info
from tooling.gates.records import latest_record

if TYPE_CHECKING:
    from tooling.gates.gate import GateResult
    from tooling.gates.scaling import Baseline
    from tooling.plan.phases import PhasePlan
    from tooling.prometheus_api import PrometheusAccess

# The criteria and the plan (pydantic), the judging, the Markdown record (jinja2), Prometheus' client and
# the soak evidence are imported by the functions that use them: `tooling --help` imports this module
# and must stay quick.


def locate_run(run: Path | None, runs_dir: Path | None, phase: str) -> Path:
    """The run to judge: --run, else the newest of the phase's runs under runs_dir (default <home>/runs)."""
    if run is not None:
        return resolve_summary_path(run)
    runs_dir = runs_dir or home.runs()
    found = find_latest_run(runs_dir, phase)
    if found is None:
        raise ToolingError(
            f"no run of phase {phase} under {runs_dir} (looked for */summary.json named phase{phase}...)",
            hint="pass --run RUN_DIR_OR_SUMMARY, e.g. the directory `tooling rehearse` printed",
        )
    return found


def parse_given(items: list[str] | None) -> dict[str, float]:
    from tooling.plan.criteria import KINDS

    given: dict[str, float] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or name not in KINDS:
            raise ToolingError(
                f"--measured {item!r}: expected NAME=VALUE with NAME one of: {', '.join(KINDS)}"
            )
        try:
            text = raw.strip()
            given[name] = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ToolingError(
                f"--measured {item!r}: expected a number (or a percentage like 99.95%)"
            ) from None
    return given


def baseline_for(plan: PhasePlan, phase: str, decisions: Path, baseline_run: Path | None) -> Baseline | None:
    from tooling.gates.scaling import Baseline, baseline_from_record

    previous = plan.get(phase).previous
    if previous is None:
        return None
    if baseline_run is not None:
        path = resolve_summary_path(baseline_run)
        summary = load_summary(path)
        info = run_info(summary, path)
        return Baseline(
            phase=previous,
            throughput=summary["throughput"].get("global_samples_per_second_mean"),
            world_size=info.world_size,
            sync_step_seconds=info.sync_step_seconds,
            nosync_step_seconds=info.nosync_step_seconds,
            efficiency=None,
            source=f"summary {path}",
        )
    record = latest_record(decisions, previous)
    return baseline_from_record(previous, record) if record else None


def gate_table(result: GateResult) -> Table:
    from tooling.gates.display import (
        DECISION_STYLE,
        VERDICT_STYLE,
        fmt_bound,
        fmt_value,
        label_with_unit,
        verdict_text,
    )

    style = DECISION_STYLE[result.decision]
    table = Table(
        title=f"phase {result.phase} gate, run {result.run.run_id}: [{style}]{result.decision}[/]",
        title_justify="left",
    )
    table.add_column("criterion", ratio=2)
    table.add_column("target (minimum)", ratio=2)
    table.add_column("measured", justify="right", ratio=1)
    table.add_column("verdict", ratio=1)
    table.add_column("source: note", ratio=4, overflow="fold")
    for row in result.rows:
        name = row.name
        table.add_row(
            label_with_unit(name),
            f"{fmt_bound(name, row.criterion.target, unit=False)} "
            f"({fmt_bound(name, row.criterion.minimum, unit=False)})",
            fmt_value(name, row.measurement.value, unit=False),
            f"[{VERDICT_STYLE[row.verdict]}]{verdict_text(row.as_dict())}[/]",
            f"{row.measurement.source}: {row.note}" if row.note else row.measurement.source,
        )
    return table


@with_prometheus_access
def gate(
    phase: Annotated[str, phase_option("Phase to judge.")],
    run: Annotated[
        Path | None, typer.Option("--run", help="Run directory or its summary.json (default: newest run)")
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            help="Prometheus base URL; its range queries over the run replace summary figures.",
        ),
    ] = None,
    criteria_file: CriteriaOption = None,
    baseline_run: Annotated[
        Path | None,
        typer.Option(
            "--baseline", help="Previous phase's run for scaling (default: its latest decision record)."
        ),
    ] = None,
    measured: Annotated[
        list[str] | None,
        typer.Option("--measured", help="NAME=VALUE measured elsewhere, e.g. uptime=99.95% from a soak."),
    ] = None,
    soak: Annotated[
        str | None,
        typer.Option("--soak", help="Soak id or soak.json for uptime (default: the phase's latest soak)."),
    ] = None,
    soak_dir: SoakDirOption = None,
    decisions: DecisionsOption = None,
    runs_dir: RunsDirOption = None,
    prometheus_step: Annotated[
        float | None,
        typer.Option("--prometheus-step", help="Range-query step in seconds (default: 2 scrapes)."),
    ] = None,
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="Judge and record a run that did not run to its end (the record says so). "
            f"The rule: {COMPLETE_RULE}.",
        ),
    ] = False,
    no_record: Annotated[
        bool, typer.Option("--no-record", help="Judge and print, but write no decision record.")
    ] = False,
    as_json: JsonOption = False,
    *,
    access: PrometheusAccess,
) -> None:
    """Judge a run against its phase's criteria: GO (exit 0) or NO-GO (exit 1), and keep the decision.

    A run whose nodes or world size are not the phase's is refused (exit 2, naming the phase it matches).
    An incomplete run is judged and shown but not recorded (exit 2) unless --allow-incomplete.
    """
    from tooling.gates.display import DECISION_STYLE
    from tooling.gates.gate import evaluate, gather
    from tooling.gates.markdown import render
    from tooling.gates.records import write_record
    from tooling.gates.site import effective_criteria, load_site
    from tooling.plan.criteria import KINDS
    from tooling.plan.phases import load_phases
    from tooling.soak.evidence import soak_evidence

    decisions = decisions or home.decisions()
    plan = load_phases()
    phase_def = plan.get(phase)
    site = load_site(criteria_file, plan) if criteria_file else None
    criteria = effective_criteria(phase, phase_def, site, criteria_file)
    given = parse_given(measured)
    summary_path = locate_run(run, runs_dir, phase)
    summary = load_summary(summary_path)
    check_shape(plan, phase, run_info(summary, summary_path))
    ended = completeness(summary)
    info, figures, sources = gather(
        summary, summary_path, phase_def.world_size, prometheus_url, prometheus_step, access=access
    )
    sources.criteria_file = str(criteria_file) if criteria_file else None
    # A soak watched the job for hours: its figures replace a shorter window's, unless it has none.
    from_soak, soak_line = soak_evidence(phase, phase_def.world_size, soak, soak_dir or home.soak())
    for name, m in from_soak.items():
        if m.value is not None or name not in figures or figures[name].value is None:
            figures[name] = m
    if sources.prometheus_error:
        err_console.print(
            f"[yellow]warning:[/] Prometheus {prometheus_url} unavailable: {sources.prometheus_error}; "
            "judging from the run summary alone"
        )
    baseline = baseline_for(plan, phase, decisions, baseline_run)
    result = evaluate(plan, phase, criteria, info, figures, sources, baseline, given)
    record = {**result.record(plan), "completeness": ended.as_dict()}
    source_lines = [f"run: {ended.why}", *sources.describe(), *([soak_line] if soak_line else [])]
    refused = not ended.complete and not allow_incomplete
    files: list[str] = []
    if not (refused or no_record):
        files = [str(p) for p in write_record(decisions, record, render(record, source_lines))]
    if as_json:
        sys.stdout.write(json.dumps({**record, "record_files": files}, indent=2) + "\n")
    else:
        console.print(gate_table(result))
        for line in source_lines:
            console.print(f"  {line}", style="dim")
        blocking = [KINDS[r.name].label for r in result.rows if r.blocks]
        style = DECISION_STYLE[result.decision]
        reason = f" (blocked by: {', '.join(blocking)})" if blocking else ""
        console.print(f"phase {phase}: [{style}]{result.decision}[/]{reason}")
        console.print(f"decision record: {files[0]} (+ .md)" if files else "decision record: none written")
    if not allow_incomplete:
        require_complete(ended, phase, info.run_id)
    if result.decision != "GO":
        raise typer.Exit(EXIT_CHECK_FAILED)


def critical_path(plan: PhasePlan, decisions: Path) -> list[dict[str, Any]]:
    """Each phase in roll-out order with its latest decision, and which one is next."""
    rows: list[dict[str, Any]] = []
    next_found = False
    for name, phase in plan.ordered():
        record = latest_record(decisions, name)
        decision = record["decision"] if record else None
        is_next = not next_found and decision != "GO"
        next_found = next_found or is_next
        rows.append(
            {
                "phase": name,
                "group": phase.group,
                "nodes": phase.nodes,
                "nproc_per_node": phase.nproc_per_node,
                "world_size": phase.world_size,
                "decision": decision,
                # False only for a run recorded with --allow-incomplete (older records did not say).
                "complete": (record.get("completeness") or {}).get("complete", True) if record else None,
                "decided_at": record["decided_at"] if record else None,
                "record": record.get("_path") if record else None,
                "next": is_next,
            }
        )
    return rows


def phases(decisions: DecisionsOption = None, as_json: JsonOption = False) -> None:
    """Show the critical path: each phase, its size, its latest gate decision and which phase is next."""
    from tooling.gates.display import DECISION_STYLE
    from tooling.job import quarantine
    from tooling.plan.phases import load_phases

    rows = critical_path(load_phases(), decisions or home.decisions())
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="roll-out, phase by phase", title_justify="left")
    for column in ("phase", "group", "nodes x processes", "latest gate", "decided", ""):
        table.add_column(column)
    for row in rows:
        decision = row["decision"]
        shown = f"[{DECISION_STYLE[decision]}]{decision}[/]" if decision else "[dim]not run[/]"
        if row["complete"] is False:
            shown += " [yellow](incomplete run)[/]"
        when = (
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(row["decided_at"])) if row["decided_at"] else "-"
        )
        table.add_row(
            row["phase"],
            row["group"],
            f"{row['nodes']} x {row['nproc_per_node']} = {row['world_size']}",
            shown,
            when,
            "[bold cyan]<- next[/]" if row["next"] else "",
        )
    console.print(table)
    for inventory, nodes in quarantine.every().items():
        listed = "; ".join(q.describe() for q in nodes)
        console.print(
            f"[yellow]quarantined[/yellow] (inventory {inventory}, left out of every phase): {listed}"
        )
    upcoming = next((r for r in rows if r["next"]), None)
    if upcoming is None:
        console.print("every phase has a GO: the roll-out is complete")
    elif upcoming["decision"] == "NO-GO":
        print_next(f"phase {upcoming['phase']} (its last gate said NO-GO; see {upcoming['record']})")
    else:
        print_next(f"phase {upcoming['phase']}: deploy it, then `tooling gate --phase {upcoming['phase']}`")
