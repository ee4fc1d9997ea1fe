"""Assemble the phase report and the weekly briefing: figures, tables, then Markdown + HTML from templates."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from ddp.atomic import atomic_write_text
from tooling.gates.markdown import table_rows
from tooling.plan.bounds import Bound
from tooling.plan.phases import PhasePlan
from tooling.report import plots
from tooling.report.data import phase_rows, priorities, when

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class Written:
    markdown: Path
    html: Path
    figures: list[Path]


def _bounds(record: dict[str, Any], name: str) -> tuple[Bound | None, Bound | None]:
    row = next((r for r in record["criteria"] if r["criterion"] == name), None)
    if row is None:
        return None, None
    return Bound(row["target"]["op"], row["target"]["value"]), Bound(
        row["minimum"]["op"], row["minimum"]["value"]
    )


def phase_figures(summary: dict[str, Any], record: dict[str, Any]) -> list[tuple[str, str, Figure]]:
    """(title, file name, figure) for each section of the phase report."""
    return [
        ("Throughput over time", "throughput.png", plots.throughput(summary, *_bounds(record, "throughput"))),
        ("Loss", "loss.png", plots.loss(summary)),
        ("Per-rank step-time balance", "step_balance.png", plots.step_balance(summary)),
        (
            "Communication overhead",
            "comm_overhead.png",
            plots.comm_overhead(summary, *_bounds(record, "comm_overhead")),
        ),
        (
            "Memory pressure",
            "memory_pressure.png",
            plots.memory_pressure(summary, *_bounds(record, "memory_pressure")),
        ),
        ("Checkpoint timeline", "checkpoints.png", plots.checkpoint_timeline(summary)),
    ]


def build_phase_report(
    plan: PhasePlan,
    summary: dict[str, Any],
    record: dict[str, Any],
    decisions: Path,
    out: Path,
    source_lines: list[str],
) -> Written:
    """`record` is a gate decision record: the one of record for this run, or one evaluated for the report."""
    phase = plan.get(record["phase"])
    figures = [(title, plots.save(fig, out / name)) for title, name, fig in phase_figures(summary, record)]
    rows = phase_rows(plan, decisions)
    comparison = plots.save(plots.phase_comparison(rows), out / "phase_comparison.png")
    figures.append(("Comparison with the phases (latest decisions)", comparison))
    context = {
        "phase": record["phase"],
        "size": f"{phase.nodes} x {phase.nproc_per_node}",
        "group": phase.group,
        "run": record["run"],
        "summary": summary,
        "window": f"{when(record['window']['start'])} -> {when(record['window']['end'])}",
        "generated": when(time.time()),
        "decision": record["decision"],
        "gate_rows": table_rows(record),
        "sources": source_lines,
        "figures": [{"title": t, "file": p.name} for t, p in figures],
        "phases": rows,
    }
    markdown = out / "report.md"
    html = out / "report.html"
    atomic_write_text(markdown, _ENV.get_template("report.md.j2").render(**context))
    atomic_write_text(html, _ENV.get_template("report.html.j2").render(**context))
    return Written(markdown, html, [p for _, p in figures])


def headline(rows: list[dict[str, Any]]) -> str:
    done = [r["phase"] for r in rows if r["decision"] == "GO"]
    upcoming = next((r for r in rows if r["decision"] != "GO"), None)
    if upcoming is None:
        return "every phase has passed its gate."
    if not done:
        gone = "no phase has passed its gate yet; "
    elif len(done) == 1:
        gone = f"phase {done[0]} passed its gate; "
    else:
        gone = f"phases {', '.join(done)} passed their gates; "
    state = "blocked (NO-GO)" if upcoming["decision"] == "NO-GO" else "not yet gated"
    return gone + f"phase {upcoming['phase']} ({upcoming['size']}) is next and {state}."


def build_weekly(plan: PhasePlan, decisions: Path, out: Path) -> Written:
    rows = phase_rows(plan, decisions)
    comparison = plots.save(plots.phase_comparison(rows), out / "phase_comparison.png")
    context = {
        "generated": when(time.time()),
        "headline": headline(rows),
        "phases": rows,
        "comparison": comparison.name,
        "priorities": priorities(rows),
    }
    markdown = out / "weekly.md"
    html = out / "weekly.html"
    atomic_write_text(markdown, _ENV.get_template("weekly.md.j2").render(**context))
    atomic_write_text(html, _ENV.get_template("weekly.html.j2").render(**context))
    return Written(markdown, html, [comparison])
