"""`tooling doctor`: is the job hung, and if so which rank, on which node, and why; one tar.gz to attach."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tooling import home
from tooling.cli_options import DeploymentInventoryOption, JsonOption, OptionalPhaseOption
from tooling.console import EXIT_CHECK_FAILED, ToolingError, console, err_console, print_next

if TYPE_CHECKING:
    from tooling.job.records import Deployment

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
    deployment: tuple[Deployment, Path] | None = None
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
        deployment = (record, chosen.inventory)
        world_size = record.world_size
    findings = diagnose(nodes, Settings(k=k, now=now, world_size=world_size))
    report: dict[str, Any] = {"healthy": not findings, "findings": [f.as_dict() for f in findings]}
    path = bundle.write(home.doctor(), nodes, report)
    report["bundle"] = str(path)
    if as_json:
        console.print_json(data=report)
    else:
        _show(report)
    what = _what_next(report, deployment)
    if what is not None:
        print_next(what, out)
    if findings:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _what_next(report: dict[str, Any], deployment: tuple[Deployment, Path] | None) -> str | None:
    """Quarantine the nodes at fault (the run goes on without them from its newest checkpoint) when some but
    not all of the phase's nodes are named; otherwise the closest next look."""
    findings = report["findings"]
    if deployment is None:
        if not findings:
            return None
        return f"tar -tzf {shlex.quote(report['bundle'])} (each rank's stack, status and journal lines)"
    record, inventory = deployment
    given = ["--inventory", str(inventory)]
    if not findings:
        return shlex.join(["tooling", "status", "--watch", *given])
    at_fault = [f for f in findings if f["at_fault"] and f["host"] in record.hosts]
    named = list(dict.fromkeys(f["host"] for f in at_fault))
    if named and len(named) < len(record.hosts):
        kinds = ", ".join(dict.fromkeys(f["kind"] for f in at_fault))
        excluded = [arg for host in named for arg in ("--exclude", host)]
        reason = ["--reason", f"doctor: {kinds}"]
        return shlex.join(["tooling", "deploy", "--phase", record.phase, *given, *excluded, *reason])
    looked_at = named or [f["host"] for f in findings if f["host"] in record.hosts]
    if looked_at:
        return shlex.join(["tooling", "logs", *given, "--node", looked_at[0]])
    again = shlex.join(["tooling", "doctor", "--phase", record.phase, *given])
    return f"fix what the findings name (outside the phase's nodes), then again: {again}"


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
