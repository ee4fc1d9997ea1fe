"""The decision record as Markdown (the same facts as the JSON, for people and pull requests)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jinja2

from tooling.gates.display import fmt_bound, fmt_value, verdict_text

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=False,  # Markdown, not HTML
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


def table_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in record["criteria"]:
        name = row["criterion"]
        rows.append(
            {
                **row,
                "target_text": fmt_bound(name, row["target"]),
                "minimum_text": fmt_bound(name, row["minimum"]),
                "measured_text": fmt_value(name, row["measured"]),
                "verdict_text": verdict_text(row),
            }
        )
    return rows


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "unknown"


def render(record: dict[str, Any], source_lines: list[str]) -> str:
    rows = table_rows(record)
    scaling = record.get("scaling") or {}
    window = record["window"]
    return _ENV.get_template("decision.md.j2").render(
        r=record,
        rows=rows,
        sources=source_lines,
        window=f"{_when(window['start'])} -> {_when(window['end'])}",
        efficiency=fmt_value("scaling_efficiency", scaling.get("efficiency")),
        ceiling=fmt_value("scaling_efficiency", scaling.get("ceiling")),
        blocking=[row for row in rows if row["blocks"]],
    )
