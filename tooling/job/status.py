"""What the running job is doing: every rank's status file, read from every node over SSH in parallel,
and the table `tooling status` (and `tooling stop`, once stopped) prints of it."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from tooling.console import console
from tooling.inventory import load_inventory, refuse_placeholder_hosts, ssh_targets
from tooling.job.records import Deployment
from tooling.job.slow_links import describe as describe_slow_links
from tooling.remote import SshTarget, run_everywhere

SEPARATOR = "--ddp-status--"


@dataclass(frozen=True)
class NodeReport:
    host: str
    ranks: list[dict[str, Any]]
    node_time: float | None
    error: str | None = None


# Every rank's status file; "rank0" reads rank 0's alone (the progress of a watched run).
EVERY_RANK = "rank*"


def status_command(run_dir: str, ranks: str = EVERY_RANK) -> str:
    """The shell command that prints the node's clock and the status files matching `ranks` (a glob)."""
    status_dir = shlex.quote(f"{run_dir}/status")
    return (
        f"date +%s.%N; echo {SEPARATOR}; for f in {status_dir}/{ranks}.json; do "
        f'[ -f "$f" ] && {{ cat "$f"; echo {SEPARATOR}; }}; done; true'
    )


def parse_status_output(host: str, text: str) -> NodeReport:
    chunks = [c.strip() for c in text.split(SEPARATOR)]
    node_time: float | None
    try:
        node_time = float(chunks[0])
    except (ValueError, IndexError):
        node_time = None
    ranks = []
    for chunk in chunks[1:]:
        if not chunk:
            continue
        try:
            ranks.append(json.loads(chunk))
        except ValueError:
            continue  # a status file mid-rename is simply skipped this round
    return NodeReport(host, sorted(ranks, key=lambda r: r.get("rank", 0)), node_time)


def collect(
    targets: list[SshTarget], run_dir: str, timeout_s: float = 10.0, ranks: str = EVERY_RANK
) -> list[NodeReport]:
    """Each node's status files (those matching `ranks`), all nodes in parallel."""
    results = run_everywhere(targets, status_command(run_dir, ranks), timeout_s)
    reports = []
    for target in targets:
        result = results[target.name]
        if result.error is not None or result.rc not in (0, None):
            reason = result.error or f"status command exited {result.rc}: {result.stderr.strip()[:200]}"
            reports.append(NodeReport(target.name, [], None, reason))
        else:
            reports.append(parse_status_output(target.name, result.stdout))
    return reports


def job_state(reports: list[NodeReport], world_size: int) -> str:
    """running / completed / stopped / failed / starting / partial: one word for the whole job."""
    ranks = [r for report in reports for r in report.ranks]
    states = {r.get("state") for r in ranks}
    if any(report.error for report in reports):
        return "partial"
    if "failed" in states:
        return "failed"
    if len(ranks) < world_size:
        return "starting"
    if states == {"completed"}:
        return "completed"
    if states <= {"completed", "stopped"}:
        return "stopped"
    return "running"


def _age(now: float | None, then: float | None) -> str:
    if now is None or then is None:
        return "-"
    return f"{max(0.0, now - then):.0f}s"


@dataclass(frozen=True)
class Snapshot:
    """Every rank of the recorded run as read at one moment, and the job's state then."""

    record: Deployment
    reports: list[NodeReport]
    state: str

    def as_dict(self) -> dict[str, Any]:
        """`tooling status --json`: the run, its state and every node's ranks as the ranks wrote them."""
        return {
            "run_id": self.record.run_id,
            "phase": self.record.phase,
            "inventory": self.record.inventory,
            "world_size": self.record.world_size,
            "state": self.state,
            "ranks_reported": sum(len(r.ranks) for r in self.reports),
            "nodes": [
                {
                    "host": r.host,
                    "reachable": r.error is None,
                    "error": r.error,
                    "node_time": r.node_time,
                    "ranks": r.ranks,
                }
                for r in self.reports
            ],
        }


def snapshot(record: Deployment, inventory: Path) -> Snapshot:
    """Read every rank of the recorded run now (the example inventory's addresses refused first)."""
    inventory_data = load_inventory(inventory)
    refuse_placeholder_hosts(inventory_data, record.hosts, inventory)
    reports = collect(ssh_targets(inventory_data, record.hosts), record.run_dir)
    return Snapshot(record, reports, job_state(reports, record.world_size))


def view(shown: Snapshot) -> Group:
    """The table of every rank, per node, and the line under it."""
    record, reports, state = shown.record, shown.reports, shown.state
    table = Table(title=f"run {record.run_id} (phase {record.phase}): {state}")
    columns = (
        "node", "rank", "state", "step", "samples/s", "compute s", "wait s", "vs median", "loss", "last ckpt",
        "restarts", "updated",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right" if column not in ("node", "state") else "left")
    blank = ["-"] * (len(columns) - 3)
    for report in reports:
        if report.error:
            table.add_row(report.host, "-", f"[red]unreachable: {report.error}[/red]", *blank)
            continue
        if not report.ranks:
            table.add_row(report.host, "-", "[yellow]no rank has reported[/yellow]", *blank)
        for rank in report.ranks:
            loss = rank.get("loss")
            table.add_row(
                report.host,
                str(rank.get("rank")),
                str(rank.get("state")),
                f"{rank.get('step')}/{rank.get('max_steps')}",
                f"{rank.get('samples_per_second') or 0:.1f}",
                _seconds(rank.get("compute_seconds")),
                _seconds(rank.get("collective_wait_seconds")),
                _versus_median(rank),
                "-" if loss is None else f"{loss:.4f}",
                str(rank.get("last_checkpoint_step") or "-"),
                str(rank.get("restart_count", 0)),
                _age(report.node_time, rank.get("updated_at")),
            )
    up = sum(len(r.ranks) for r in reports)
    lines = [f"{up}/{record.world_size} ranks reported; job {state}"]
    slow = [
        f"rank {r.get('rank')} ({report.host})"
        for report in reports
        for r in report.ranks
        if r.get("straggler")
    ]
    if slow:
        lines.append(
            f"[red]stragglers: {', '.join(slow)}[/red]: their own work per step exceeds the median rank's "
            "by more than the trainer's margin; the other ranks wait for them in every all-reduce"
        )
    links = describe_slow_links(
        ((rank.get("node") or report.host, rank.get("links")) for report in reports for rank in report.ranks),
        len(reports),
    )
    if links:
        lines.append(f"[red]{links}[/red]")
    return Group(table, *lines)


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _versus_median(rank: dict[str, Any]) -> str:
    """The rank's compute over the median rank's (ddp/stragglers.py), red when it is a straggler."""
    ratio = rank.get("compute_ratio_to_median")
    if ratio is None:
        return "-"
    return f"[red]{ratio:.2f}x[/red]" if rank.get("straggler") else f"{ratio:.2f}x"


def show(record: Deployment, inventory: Path) -> str:
    """Print every rank of the recorded run, per node; returns the job's state (job_state)."""
    shown = snapshot(record, inventory)
    console.print(view(shown))
    return shown.state
