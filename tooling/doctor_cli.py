"""`tooling doctor`: is the job hung, and if so which rank, on which node, and why; one tar.gz to attach."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tooling import home
from tooling.cli_options import DeploymentInventoryOption, JsonOption, OptionalPhaseOption
from tooling.console import EXIT_CHECK_FAILED, ToolingError, console, err_console

SINCE = "-15min"  # the journal lines worth reading: the run's last minutes


def doctor_command(
    phase: OptionalPhaseOption = None,
    inventory: DeploymentInventoryOption = None,
    local: Annotated[bool, typer.Option("--local", help="A run on this machine (with --run).")] = False,
    run: Annotated[
        Path | None, typer.Option("--run", help="With --local: the run directory (status/, logs/).")
    ] = None,
    k: Annotated[
        float,
        typer.Option("--k", min=1.0, help="A hang: no step moved for K x the median step time."),
    ] = 5.0,
    now: Annotated[
        bool, typer.Option("--now", help="Diagnose at once, without waiting for the stall.")
    ] = False,
    rendezvous: Annotated[
        str | None,
        typer.Option(help="HOST:PORT to check (default: the deployment's rendezvous endpoint)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Name the ranks behind or missing, their node, the collective they wait in and the likely cause."""
    from tooling.doctor import bundle, collect
    from tooling.doctor.diagnosis import Settings, diagnose

    out = err_console if as_json else console
    if local:
        if run is None or phase is not None or inventory is not None:
            raise ToolingError(
                "--local takes --run RUN_DIR and no --phase/-i", hint="tooling doctor --local --run RUN"
            )
        if not (run / "status").is_dir():
            raise ToolingError(
                f"{run}: no status/ directory: not a run directory", hint="pass the run's directory"
            )
        nodes = [collect.local(run, SINCE, rendezvous)]
        world_size = next((r.get("world_size") for r in nodes[0].ranks), None)
    else:
        if phase is None or run is not None:
            raise ToolingError("give --phase P (or --local --run RUN_DIR)", hint="tooling doctor --phase 2a")
        from tooling.job import records

        chosen = records.choose(inventory)
        if chosen.deployment.phase != phase:
            raise ToolingError(
                f"the deployment of {chosen.inventory} is phase {chosen.deployment.phase}, not {phase}",
                hint=f"tooling doctor --phase {chosen.deployment.phase}",
            )
        out.print(chosen.describe())
        record = chosen.deployment
        if rendezvous is not None:
            record.rendezvous_endpoint = rendezvous
        nodes = collect.cluster(record, chosen.inventory, SINCE)
        world_size = record.world_size
    findings = diagnose(nodes, Settings(k=k, now=now, world_size=world_size))
    report: dict[str, Any] = {"healthy": not findings, "findings": [f.as_dict() for f in findings]}
    path = bundle.write(home.doctor(), nodes, report)
    report["bundle"] = str(path)
    if as_json:
        console.print_json(data=report)
    else:
        _show(report)
    if findings:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _show(report: dict[str, Any]) -> None:
    from rich.table import Table

    if report["healthy"]:
        console.print("[green]healthy[/green]: no rank stopped, missing, behind or straggling")
    else:
        table = Table(title="doctor: findings", title_justify="left")
        for column in ("kind", "rank", "host", "evidence"):
            table.add_column(column, overflow="fold")
        for f in report["findings"]:
            table.add_row(f["kind"], "-" if f["rank"] is None else str(f["rank"]), f["host"], f["evidence"])
        console.print(table)
    console.print(f"bundle: {report['bundle']}")
