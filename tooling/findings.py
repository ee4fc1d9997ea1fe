"""Findings about nodes, the output of `tooling verify-node` and `tooling check`: one row type and one
renderer (rich tables and a summary line for people, one JSON document for machines).

Each command keeps its own rule for the overall verdict (verify-node: SKIP alone passes; check: SKIP
alone is SKIP) and its own name for the reason column ("reason" and "detail", the keys their JSON has
always had), both given to the renderer as a FindingsView.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from tooling.verdicts import Status, styled, tally

CLUSTER = "(cluster)"  # the host of findings about links between nodes or the job as a whole
FAILING_SHOWN = 6  # failing checks named in a summary line; the rest are counted


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    status: Status
    measured: str
    expected: str
    reason: str
    data: dict[str, Any] = field(default_factory=dict)  # the numbers behind `measured`, for machines


def counts(rows: Iterable[Finding]) -> dict[str, int]:
    return tally(row.status for row in rows)


def by_host(rows: Iterable[Finding]) -> dict[str, list[Finding]]:
    """Findings per host in first-seen order, the cluster-wide ones after every node."""
    grouped: dict[str, list[Finding]] = {}
    for row in rows:
        grouped.setdefault(row.host, []).append(row)
    if CLUSTER in grouped:
        grouped[CLUSTER] = grouped.pop(CLUSTER)
    return grouped


@dataclass(frozen=True)
class FindingsView:
    """How one command shows its findings."""

    overall: Callable[[Iterable[Finding]], Status]
    reason_key: str = "reason"  # the reason column's heading and JSON key
    host_titles: dict[str, str] = field(default_factory=dict)  # per-host table titles other than the host

    def as_dict(self, row: Finding) -> dict[str, Any]:
        return {
            "host": row.host,
            "check": row.check,
            "status": row.status,
            "measured": row.measured,
            "expected": row.expected,
            self.reason_key: row.reason,
            "data": row.data,
        }

    def _table(self, title: str, rows: Sequence[Finding], host_column: bool) -> Table:
        table = Table(title=f"{title}: {styled(self.overall(rows))}", title_justify="left", expand=False)
        table.add_column("check", no_wrap=True)
        if host_column:
            table.add_column("host", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("measured")
        table.add_column("expected")
        table.add_column(self.reason_key, overflow="fold")
        for row in rows:
            host = [row.host] if host_column else []
            table.add_row(row.check, *host, styled(row.status), row.measured, row.expected, row.reason)
        return table

    def table(self, rows: Sequence[Finding], title: str) -> Table:
        """Every finding in one table with a host column."""
        return self._table(title, rows, host_column=True)

    def host_tables(self, rows: Sequence[Finding]) -> list[Table]:
        """One table per host, titled with the host and its verdict."""
        return [
            self._table(self.host_titles.get(host, host), host_rows, host_column=False)
            for host, host_rows in by_host(rows).items()
        ]

    def summary(self, rows: Sequence[Finding]) -> str:
        """'P pass, W warn, F fail, S skip -> VERDICT (host: check, ...)'."""
        tally_ = counts(rows)
        failing = sorted({f"{r.host}: {r.check}" for r in rows if r.status == "FAIL"})
        shown = ", ".join(failing[:FAILING_SHOWN])
        if len(failing) > FAILING_SHOWN:
            shown += f" (+{len(failing) - FAILING_SHOWN} more)"
        text = (
            f"{tally_['PASS']} pass, {tally_['WARN']} warn, {tally_['FAIL']} fail, {tally_['SKIP']} skip -> "
            f"{styled(self.overall(rows))}"
        )
        return text + (f" ({shown})" if failing else "")

    def print(
        self, console: Console, tables: Iterable[Table], summary: str, notes: Iterable[str] = ()
    ) -> None:
        for table in tables:
            console.print(table)
        console.print(summary)
        for note in notes:
            console.print(f"[dim]{note}[/]")

    def document(self, rows: Sequence[Finding], **context: Any) -> dict[str, Any]:
        """The JSON document: the caller's context, then verdict, counts and every finding as "results"."""
        return {
            **context,
            "verdict": self.overall(rows),
            "counts": counts(rows),
            "results": [self.as_dict(row) for row in rows],
        }

    def to_json(self, rows: Sequence[Finding], **context: Any) -> str:
        return json.dumps(self.document(rows, **context), indent=2, default=str)
