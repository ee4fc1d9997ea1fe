"""Show verification results: a rich table per node plus a summary line, or one JSON document."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tooling.verdicts import styled
from tooling.verify.judge import CLUSTER, CheckResult, counts, overall


def _by_host(rows: Iterable[CheckResult]) -> dict[str, list[CheckResult]]:
    grouped: dict[str, list[CheckResult]] = {}
    for row in rows:
        grouped.setdefault(row.host, []).append(row)
    # The cluster-wide rows come last, after every node.
    if CLUSTER in grouped:
        grouped[CLUSTER] = grouped.pop(CLUSTER)
    return grouped


def host_table(host: str, rows: Sequence[CheckResult]) -> Table:
    verdict = overall(rows)
    title = "network across the nodes" if host == CLUSTER else host
    table = Table(title=f"{title}: {styled(verdict)}", title_justify="left", expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("measured")
    table.add_column("expected")
    table.add_column("reason", overflow="fold")
    for row in rows:
        table.add_row(row.check, styled(row.status), row.measured, row.expected, row.reason)
    return table


def summary_line(rows: Sequence[CheckResult], scope: str, profile: str) -> str:
    tally = counts(rows)
    verdict = overall(rows)
    nodes = sorted({r.host for r in rows if r.host != CLUSTER})
    failing = sorted({f"{r.host}: {r.check}" for r in rows if r.status == "FAIL"})
    shown = ", ".join(failing[:6]) + (f" (+{len(failing) - 6} more)" if len(failing) > 6 else "")
    text = (
        f"{scope}: {len(nodes)} node(s), profile {profile}: "
        f"{tally['PASS']} pass, {tally['WARN']} warn, {tally['FAIL']} fail, {tally['SKIP']} skip -> "
        f"{styled(verdict)}"
    )
    return text + (f" ({shown})" if failing else "")


def print_report(console: Console, rows: Sequence[CheckResult], scope: str, profile: str) -> None:
    for host, host_rows in _by_host(rows).items():
        console.print(host_table(host, host_rows))
    console.print(summary_line(rows, scope, profile))


def to_json(rows: Sequence[CheckResult], **context: Any) -> str:
    document = {
        **context,
        "verdict": overall(rows),
        "counts": counts(rows),
        "results": [row.as_dict() for row in rows],
    }
    return json.dumps(document, indent=2, default=str)
