"""`tooling sandbox up|down|status|image`: a local podman cluster that Ansible reaches like real nodes."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tooling.cli_examples import epilog
from tooling.cli_options import YesOption
from tooling.console import EXIT_CHECK_FAILED, cli_edge, confirm, console, print_next
from tooling.sandbox.settings import DEFAULT_NODES, SandboxSettings, overcommit_warning

if TYPE_CHECKING:
    from tooling.sandbox import cluster

# The cluster, its image and the plan's schema are imported by the commands that use them: `tooling --help`
# imports this module and must stay quick.

sandbox_app = typer.Typer(
    name="sandbox",
    help="A local cluster of podman containers (systemd + sshd, fixed addresses) reached over SSH.",
    no_args_is_help=True,
    add_completion=False,
)

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", envvar="DDP_SANDBOX_STATE_DIR", help="Key, known_hosts, state.")
]
InventoryDir = Annotated[
    Path | None, typer.Option("--inventory", envvar="DDP_SANDBOX_INVENTORY", help="Where hosts.yml goes.")
]
Prefix = Annotated[
    str | None,
    typer.Option("--prefix", envvar="DDP_SANDBOX_PREFIX", help="Container and network name prefix."),
]
Mirror = Annotated[
    str | None,
    typer.Option(
        "--mirror", envvar="DDP_SANDBOX_MIRROR", help="Debian mirror URL (default: the host's apt config)."
    ),
]


def _settings(
    *,
    nodes: int | None = None,
    monitor: bool = True,
    subnet: str | None = None,
    prefix: str | None = None,
    state_dir: Path | None = None,
    inventory: Path | None = None,
    cpus_per_node: float | None = None,
) -> SandboxSettings:
    changes: dict[str, object] = {"monitor": monitor}
    if nodes is not None:
        changes["nodes"] = nodes
    if cpus_per_node is not None:
        changes["cpus_per_node"] = cpus_per_node
    if subnet:
        changes["subnet"] = subnet
    if prefix:
        changes["prefix"] = prefix
    if state_dir:
        changes["state_dir"] = state_dir.expanduser().resolve()
    if inventory:
        changes["inventory_dir"] = inventory.expanduser().resolve()
    return dataclasses.replace(SandboxSettings(), **changes)  # type: ignore[arg-type]


def _table(rows: list[cluster.HostStatus]) -> Table:
    table = Table(title="sandbox", show_lines=False)
    for column in ("host", "container", "state", "address", "ssh"):
        table.add_column(column)
    for row in rows:
        state = row.state if row.state == "running" else f"[red]{row.state}[/red]"
        ssh = "[green]answers[/green]" if row.ssh_problem is None else f"[red]{row.ssh_problem}[/red]"
        table.add_row(row.host, row.container, state, row.address, ssh)
    return table


@sandbox_app.command(epilog=epilog("sandbox up"))
@cli_edge
def up(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=89, help="Training nodes.")] = DEFAULT_NODES,
    monitor: Annotated[
        bool, typer.Option("--monitor/--no-monitor", help="Also start the monitoring host.")
    ] = True,
    subnet: Annotated[
        str | None,
        typer.Option("--subnet", envvar="DDP_SANDBOX_SUBNET", help="Private network, e.g. 10.213.31.0/24."),
    ] = None,
    cpus_per_node: Annotated[
        float | None,
        typer.Option(
            "--cpus-per-node",
            envvar="DDP_SANDBOX_CPUS_PER_NODE",
            help="CPU capacity of each training node (podman --cpus, e.g. 0.5); default: no limit, the "
            "nodes share this machine's CPUs.",
        ),
    ] = None,
    mirror: Mirror = None,
    prefix: Prefix = None,
    state_dir: StateDir = None,
    inventory: InventoryDir = None,
    keep_on_failure: Annotated[
        bool, typer.Option("--keep-on-failure", help="Leave containers of a failed `up` for debugging.")
    ] = False,
) -> None:
    """Start the nodes (building the image if missing) and write the inventory."""
    from tooling.plan.phases import load_phases
    from tooling.sandbox import cluster
    from tooling.sandbox.inventory import omitted_groups

    settings = _settings(
        nodes=nodes,
        monitor=monitor,
        subnet=subnet,
        prefix=prefix,
        state_dir=state_dir,
        inventory=inventory,
        cpus_per_node=cpus_per_node,
    )
    result = cluster.up(settings, mirror=mirror, keep_on_failure=keep_on_failure)
    console.print(_table(result.hosts))
    if settings.cpus_per_node is not None:
        console.print(f"each training node is limited to {settings.cpus_per_node:g} CPU (podman --cpus)")
    warning = overcommit_warning(settings.cpus_per_node, settings.nodes)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")
    if result.already_up:
        console.print(f"sandbox {settings.prefix!r} is already up; nothing to do")
    else:
        console.print(f"sandbox {settings.prefix!r} up in {result.seconds:.0f} s")
    console.print(f"inventory: {result.inventory}")
    plan = load_phases()
    missing = omitted_groups(plan, settings.node_names)
    if missing:
        console.print(f"[yellow]{nodes} nodes hold no {', '.join(missing)} (phases need more nodes)[/yellow]")
    first = plan.ordered()[0][0]
    default = SandboxSettings()
    if (settings.prefix, settings.inventory_dir) == (default.prefix, default.inventory_dir):
        print_next(f"tooling rehearse --phase {first}")
    else:  # `rehearse` uses the default sandbox; this one is reached through its inventory
        print_next(shlex.join(["tooling", "deploy", "--phase", first, "--inventory", str(result.inventory)]))


@sandbox_app.command(epilog=epilog("sandbox status"))
@cli_edge
def status(prefix: Prefix = None, state_dir: StateDir = None, inventory: InventoryDir = None) -> None:
    """Each host's container state, address, and whether SSH answers (exit 1 if any does not)."""
    from tooling.sandbox import cluster

    settings = _settings(prefix=prefix, state_dir=state_dir, inventory=inventory)
    rows = cluster.status(settings)
    if not rows:
        console.print(f"no sandbox {settings.prefix!r} is up (start one with `tooling sandbox up`)")
        raise typer.Exit(EXIT_CHECK_FAILED)
    console.print(_table(rows))
    broken = [row for row in rows if not row.ok]
    if broken:
        for row in broken:
            console.print(f"[red]{row.host} ({row.address}) does not answer: {row.ssh_problem}[/red]")
        raise typer.Exit(EXIT_CHECK_FAILED)


@sandbox_app.command(epilog=epilog("sandbox down"))
@cli_edge
def down(
    purge: Annotated[
        bool, typer.Option("--purge", help="Also remove the node image and cached rootfs.")
    ] = False,
    prefix: Prefix = None,
    state_dir: StateDir = None,
    inventory: InventoryDir = None,
    yes: YesOption = False,
) -> None:
    """Remove the containers, network, inventory and generated keys (the image stays unless --purge)."""
    from tooling.sandbox import cluster

    settings = _settings(prefix=prefix, state_dir=state_dir, inventory=inventory)
    image = " and the node image" if purge else ""
    confirm(
        f"Remove sandbox {settings.prefix!r}: its containers, network, inventory {settings.inventory_dir} "
        f"and keys in {settings.state_dir}{image}?",
        yes=yes,
    )
    done = cluster.down(settings, purge=purge)
    for line in done or [f"nothing to remove: no sandbox {settings.prefix!r}"]:
        console.print(line)


@sandbox_app.command(epilog=epilog("sandbox image"))
@cli_edge
def image(
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build from scratch even if it exists.")] = False,
    mirror: Mirror = None,
) -> None:
    """Build only the node image (localhost/ddp-node:bookworm)."""
    from tooling.sandbox.image import ensure_image

    result = ensure_image(rebuild=rebuild, mirror=mirror)
    if result.action == "present":
        console.print(f"{result.image} is present (use --rebuild to build it again)")
    else:
        source = f" from {result.mirrors.main}" if result.mirrors else ""
        console.print(f"{result.image} {result.action}{source} in {result.seconds:.0f} s")
