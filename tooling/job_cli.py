"""`tooling deploy`, `tooling status`, `tooling stop`: the running job's life cycle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tooling import deployment, jobstatus
from tooling.console import EXIT_CHECK_FAILED, CheckFailed, console, err_console
from tooling.deploy import DeployRequest, deploy, fallback_request
from tooling.inventory import default_inventory, load_inventory, ssh_targets
from tooling.phases import load_phases
from tooling.runner import PROJECT_ROOT, run_playbook

InventoryOption = Annotated[
    Path | None, typer.Option("--inventory", "-i", help="Inventory directory (default: ansible.cfg's).")
]


def _inventory(path: Path | None) -> Path:
    return (path or default_inventory()).resolve()


def deploy_command(
    phase: Annotated[str, typer.Option("--phase", "-p", help="Phase to deploy: 1, 2a, 2b or 2c.")],
    inventory: InventoryOption = None,
    config: Annotated[Path | None, typer.Option(help="Trainer config laid over the phase's config.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Trainer setting KEY.PATH=VALUE.")
    ] = None,
    skip_provision: Annotated[bool, typer.Option(help="Re-launch without running site.yml.")] = False,
    skip_verify: Annotated[bool, typer.Option(help="Launch without the pre-flight verification.")] = False,
    profile: Annotated[
        str | None, typer.Option(help="Verification profile (production, sandbox, FILE).")
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: <phase group>-<UTC time>).")] = None,
    restart: Annotated[bool, typer.Option(help="Replace a run that is already active.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for every rank to report.")] = 180.0,
    fallback: Annotated[
        str | None,
        typer.Option(
            help="Continue the run recorded for --phase on this smaller phase "
            "(e.g. --phase 2c --fallback 2b), from its newest checkpoint."
        ),
    ] = None,
) -> None:
    """Provision the phase's nodes, verify them, start the trainer on all of them, wait for every rank."""
    request = DeployRequest(
        phase=phase,
        inventory=_inventory(inventory),
        config=config,
        overrides=list(overrides or []),
        provision=not skip_provision,
        verify=not skip_verify,
        profile=profile,
        run_id=run_id,
        restart=restart,
        wait_s=wait,
    )
    plan = load_phases()
    if fallback is not None:
        request = fallback_request(request, plan, fallback)
    record = deploy(request, plan)
    console.print(
        f"[green]run {record.run_id} is up[/green]: phase {record.phase}, {record.world_size} ranks "
        f"on {', '.join(record.hosts)}"
    )
    console.print(
        f"  run directory on each node: {record.run_dir} (logs/, status/, checkpoints/, summary.json)"
    )
    console.print(
        "  metrics: "
        + ", ".join(record.metrics_endpoints[:4])
        + (f" ... ({len(record.metrics_endpoints)} endpoints)" if len(record.metrics_endpoints) > 4 else "")
    )
    console.print("  follow it with `tooling status`; stop it with `tooling stop`")


def _age(now: float | None, then: float | None) -> str:
    if now is None or then is None:
        return "-"
    return f"{max(0.0, now - then):.0f}s"


def show_status(record: deployment.Deployment, inventory: Path) -> str:
    inv = load_inventory(inventory)
    reports = jobstatus.collect(ssh_targets(inv, record.hosts), record.run_dir)
    state = jobstatus.job_state(reports, record.world_size)
    table = Table(title=f"run {record.run_id} (phase {record.phase}): {state}")
    for column in ("node", "rank", "state", "step", "samples/s", "loss", "last ckpt", "restarts", "updated"):
        table.add_column(column, justify="right" if column not in ("node", "state") else "left")
    for report in reports:
        if report.error:
            table.add_row(report.host, "-", f"[red]unreachable: {report.error}[/red]", *["-"] * 6)
            continue
        if not report.ranks:
            table.add_row(report.host, "-", "[yellow]no rank has reported[/yellow]", *["-"] * 6)
        for rank in report.ranks:
            loss = rank.get("loss")
            table.add_row(
                report.host,
                str(rank.get("rank")),
                str(rank.get("state")),
                f"{rank.get('step')}/{rank.get('max_steps')}",
                f"{rank.get('samples_per_second') or 0:.1f}",
                "-" if loss is None else f"{loss:.4f}",
                str(rank.get("last_checkpoint_step") or "-"),
                str(rank.get("restart_count", 0)),
                _age(report.node_time, rank.get("updated_at")),
            )
    console.print(table)
    up = sum(len(r.ranks) for r in reports)
    console.print(f"{up}/{record.world_size} ranks reported; job {state}")
    return state


def status_command(inventory: InventoryOption = None) -> None:
    """Show the running job: every rank's state, step, throughput, loss and last checkpoint, per node."""
    path = _inventory(inventory)
    state = show_status(deployment.load(path), path)
    if state in ("failed", "partial"):
        raise typer.Exit(EXIT_CHECK_FAILED)


def stop_command(
    inventory: InventoryOption = None,
    timeout: Annotated[int, typer.Option(help="Seconds to wait for the final checkpoint.")] = 300,
) -> None:
    """Stop the job cleanly: every rank stops at the same step after a final checkpoint."""
    path = _inventory(inventory)
    record = deployment.load(path)
    started = time.monotonic()
    result = run_playbook(
        "playbooks/stop.yml",
        inventory=path,
        runs_dir=PROJECT_ROOT / "runs" / "ansible",
        limit=record.group,
        extravars={
            "ddp_trainer_phase": record.phase,
            "ddp_trainer_run_id": record.run_id,
            "ddp_trainer_stop_timeout_s": timeout,
        },
        label=f"stop-{record.group}",
        console=err_console,
    )
    if not result.ok:
        raise CheckFailed(
            f"stopping run {record.run_id} failed: {result.explanation}",
            hint=f"ansible's output is in {result.artifact_dir}/stdout",
        )
    state = show_status(record, path)
    console.print(
        f"run {record.run_id} {state} in {time.monotonic() - started:.0f} s; "
        f"its last checkpoint and summary.json are in {record.run_dir} on each node"
    )
