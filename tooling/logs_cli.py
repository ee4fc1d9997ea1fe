"""`tooling logs`: the running (or latest) deployment's training output, per node and rank.

It acts on the deployment `status` and `stop` act on (-i's, else the latest recorded) and reads each rank's
ECS JSON log from the nodes over SSH (tooling.job.logs).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from tooling.cli_options import DeploymentInventoryOption
from tooling.console import EXIT_CHECK_FAILED, ToolingError, console, err_console
from tooling.job_cli import chosen_deployment

if TYPE_CHECKING:
    from tooling.job.logs import NodeLogs
    from tooling.job.records import Deployment

FOLLOW_EVERY_S = 1.0  # how often -f asks the nodes for new lines


def _check_choice(record: Deployment, rank: int | None, node: str | None) -> None:
    """An unknown rank or node is a usage error that names what there is."""
    if rank is not None and not 0 <= rank < record.world_size:
        raise ToolingError(
            f"run {record.run_id} has no rank {rank}: its ranks are 0..{record.world_size - 1}",
            hint=f"tooling logs --rank {record.world_size - 1}",
        )
    if node is not None and node not in record.hosts:
        raise ToolingError(
            f"run {record.run_id} has no node {node}: its nodes are {', '.join(record.hosts)}",
            hint=f"tooling logs --node {record.hosts[0]}",
        )


def _print(found: list[NodeLogs], said: dict[str, str | None]) -> None:
    """The lines, and each node whose reachability changed since `said` (a dead node is named once)."""
    from tooling.job.logs import prefixed

    for line in prefixed(found):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for node in found:
        if node.error != said.get(node.host):
            if node.error:
                err_console.print(f"{node.host}: unreachable: {node.error}", style="red", markup=False)
            elif node.host in said:
                err_console.print(f"{node.host}: reachable again", style="green")
        said[node.host] = node.error


def logs_command(
    inventory: DeploymentInventoryOption = None,
    rank: Annotated[int | None, typer.Option("--rank", help="Only this global rank.")] = None,
    node: Annotated[str | None, typer.Option("--node", help="Only this node (inventory name).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="How many of each rank's last lines to show first.")
    ] = 20,
) -> None:
    """Show the job's training output (each rank's log), per node and rank. Exit 1 when a node cannot be
    read (the others are still shown)."""
    from tooling.inventory import load_inventory, refuse_placeholder_hosts, ssh_targets
    from tooling.job import logs

    chosen = chosen_deployment(inventory)
    record = chosen.deployment
    _check_choice(record, rank, node)
    hosts = [node] if node is not None else record.hosts
    inventory_data = load_inventory(chosen.inventory)
    refuse_placeholder_hosts(inventory_data, hosts, chosen.inventory)
    targets = ssh_targets(inventory_data, hosts)
    cursors: dict[str, logs.Cursor] | None = {} if follow else None
    said: dict[str, str | None] = {}
    found = logs.collect(targets, record.run_dir, rank, lines, cursors)
    _print(found, said)
    read = [n.host for n in found if not n.error]
    if rank is not None and read and not any(r.rank == rank for n in found for r in n.ranks):
        down = [n.host for n in found if n.error]
        where = f"; it may be on {', '.join(down)}, which could not be read" if down else ""
        err_console.print(f"rank {rank} has no log on {', '.join(read)}{where}")
    if follow:
        try:
            while True:
                time.sleep(FOLLOW_EVERY_S)
                _print(logs.collect(targets, record.run_dir, rank, lines, cursors), said)
        except KeyboardInterrupt:
            return
    if any(n.error for n in found):
        raise typer.Exit(EXIT_CHECK_FAILED)
