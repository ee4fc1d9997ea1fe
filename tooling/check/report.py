"""Showing a check run: one rich table (check / host / status / measured / expected / detail) and a summary
line for people, one JSON document for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tooling.check.judge import Row, counts, overall
from tooling.verdicts import styled


def table(rows: Sequence[Row], title: str) -> Table:
    verdict = overall(rows)
    out = Table(title=f"{title}: {styled(verdict)}", title_justify="left")
    out.add_column("check", no_wrap=True)
    out.add_column("host", no_wrap=True)
    out.add_column("status", no_wrap=True)
    out.add_column("measured")
    out.add_column("expected")
    out.add_column("detail", overflow="fold")
    for row in rows:
        out.add_row(
            row.check,
            row.host,
            styled(row.status),
            row.measured,
            row.expected,
            row.detail,
        )
    return out


def summary_line(rows: Sequence[Row]) -> str:
    tally = counts(rows)
    verdict = overall(rows)
    failing = sorted({f"{r.check} on {r.host}" for r in rows if r.status == "FAIL"})
    shown = ", ".join(failing[:6]) + (f" (+{len(failing) - 6} more)" if len(failing) > 6 else "")
    text = (
        f"{tally['PASS']} pass, {tally['WARN']} warn, {tally['FAIL']} fail, {tally['SKIP']} skip -> "
        f"{styled(verdict)}"
    )
    return text + (f": {shown}" if failing else "")


def print_report(console: Console, rows: Sequence[Row], title: str, notes: Sequence[str] = ()) -> None:
    console.print(table(rows, title))
    console.print(summary_line(rows))
    for note in notes:
        console.print(f"[dim]{note}[/]")


def document(rows: Sequence[Row], **context: Any) -> dict[str, Any]:
    return {
        **context,
        "verdict": overall(rows),
        "counts": counts(rows),
        "results": [row.as_dict() for row in rows],
    }


def to_json(rows: Sequence[Row], **context: Any) -> str:
    return json.dumps(document(rows, **context), indent=2, default=str)
