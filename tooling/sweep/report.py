"""A sweep's outcome for people (a rich table, sweep.md) and for tools (sweep.json)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jinja2
from rich.table import Table
from rich.text import Text

from tooling.sweep.grid import describe
from tooling.sweep.ranking import Ranking
from tooling.sweep.records import SCHEMA, SweepPlan, TrialRecord

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=False,  # Markdown, not HTML
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _loss(record: TrialRecord) -> str:
    return f"{_fmt(record.loss_first, '.4g')} -> {_fmt(record.loss_last, '.4g')}"


def row(plan: SweepPlan, record: TrialRecord, why: str | None = None) -> dict[str, Any]:
    return {
        "trial": record.trial,
        "setting": describe(record.combination, plan.axes),
        "throughput": _fmt(record.throughput, ".1f"),
        "sigma": _fmt(record.throughput_sigma, ".1f"),
        "comm": _fmt(record.comm_overhead, ".1%"),
        "loss": _loss(record),
        "nonfinite": "-" if record.nonfinite is None else str(record.nonfinite),
        "why": why or "",
    }


def measured_over_text(plan: SweepPlan) -> str:
    if plan.measured_over is None:
        return "the phase's config"
    return f"the locked production config {plan.measured_over['config']}"


def result(plan: SweepPlan, records: list[TrialRecord], ranking: Ranking) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "id": plan.id,
        "phase": plan.phase,
        "plan": plan.to_json(),
        "finished_at": time.time(),
        "best": ranking.best.trial if ranking.best else None,
        "ranking": {
            "ranked": [r.trial for r in ranking.ranked],
            "excluded": [{"trial": r.trial, "why": why} for r, why in ranking.excluded],
            "failed": [{"trial": r.trial, "why": why} for r, why in ranking.failed],
        },
        "trials": [r.to_json() for r in records],
    }


def markdown(plan: SweepPlan, ranking: Ranking) -> str:
    where = "on this machine" if plan.mode == "local" else f"on the phase's nodes ({plan.inventory})"
    unranked = [row(plan, r, why) for r, why in (*ranking.excluded, *ranking.failed)]
    return _ENV.get_template("sweep.md.j2").render(
        p=plan,
        total=len(plan.combinations),
        where=where,
        measured_over=measured_over_text(plan),
        ranked=[row(plan, r) for r in ranking.ranked],
        unranked=sorted(unranked, key=lambda r: r["trial"]),
    )


def table(plan: SweepPlan, ranking: Ranking) -> Table:
    out = Table(title=f"sweep {plan.id}: phase {plan.phase}, {len(plan.combinations)} trials")
    for column in ("rank", "trial", "setting", "samples/s", "sigma", "comm overhead", "loss", "note"):
        out.add_column(column, justify="left" if column in ("setting", "note") else "right")
    for i, record in enumerate(ranking.ranked, 1):
        r = row(plan, record)
        style = "green" if i == 1 else None
        out.add_row(
            str(i),
            str(r["trial"]),
            r["setting"],
            r["throughput"],
            r["sigma"],
            r["comm"],
            r["loss"],
            "",
            style=style,
        )
    for record, why in sorted((*ranking.excluded, *ranking.failed), key=lambda item: item[0].trial):
        r = row(plan, record, why)
        out.add_row(
            "-",
            str(r["trial"]),
            r["setting"],
            r["throughput"],
            r["sigma"],
            r["comm"],
            r["loss"],
            Text(why, style="red"),
        )
    return out
