"""`tooling deploy`, `tooling status`, `tooling stop`: the running job's life cycle.

`status` and `stop` act on the deployment of `-i DIR`, or without it on the latest one recorded (the one
just deployed, whichever inventory it used), and say which in one line first. Nothing acts on the example
inventory's documentation addresses (tooling.inventory.refuse_placeholder_hosts): the operator is told to
copy it or pass -i instead of waiting for SSH to say "No route to host".
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tooling import home
from tooling.cli_options import (
    PHASE_METAVAR,
    DeploymentInventoryOption,
    InventoryOption,
    JsonOption,
    SetOption,
    YesOption,
    phase_option,
)
from tooling.console import (
    EXIT_CHECK_FAILED,
    ToolingError,
    confirm,
    console,
    err_console,
    print_json,
    print_next,
)

if TYPE_CHECKING:
    from rich.console import Console

    from tooling.job import records
    from tooling.job.deploy import DeployRequest

# What the commands do (the deploy and its preview, the plan's and the trainer config's schemas, the
# inventory, the deployment records) is imported where they run: `tooling --help` imports this module and
# must stay quick.

WATCH_EVERY_S = 5.0  # `tooling status --watch` without a number


def _inventory(path: Path | None) -> Path:
    from tooling.inventory import default_inventory

    return (path or default_inventory()).resolve()


def deploy_command(
    phase: Annotated[str, phase_option("Phase to deploy.")],
    inventory: InventoryOption = None,
    config: Annotated[Path | None, typer.Option(help="Trainer config laid over the phase's config.")] = None,
    overrides: SetOption = None,
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
            metavar=PHASE_METAVAR,
            help="Continue the run recorded for --phase on this smaller phase "
            "(e.g. --phase 2c --fallback 2b), from its newest checkpoint.",
        ),
    ] = None,
    show_plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Show, per node, what the deploy would run and change (Ansible check mode with diff on "
            "the nodes it reaches); change and launch nothing, record nothing. Exit 1 when a node is "
            "unreachable.",
        ),
    ] = False,
    offline: Annotated[
        bool, typer.Option(help="With --plan: connect to no node (no Ansible check mode).")
    ] = False,
    as_json: JsonOption = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --restart: replace the run without asking.")
    ] = False,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NODE",
            help="Quarantine NODE (repeatable) and run the phase on the nodes left, continuing its recorded "
            "run from the newest checkpoint. NODE stays out of every phase until `tooling verify-node NODE` "
            "passes on it.",
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="With --exclude: why, kept with the quarantine entry.")
    ] = None,
) -> None:
    """Provision the phase's nodes, verify them, start the trainer on all of them, wait for every rank."""
    from tooling.job.cluster_watch import watch_commands
    from tooling.job.deploy import DeployRequest, deploy, fallback_request
    from tooling.plan.phases import load_phases
    from tooling.verify.run import preflight

    if (offline or as_json) and not show_plan:
        raise ToolingError(
            "--offline and --json go with --plan", hint="tooling deploy --phase 2a --plan --offline"
        )
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
    if restart and not show_plan:
        _confirm_restart(request, yes)
    if fallback is not None:
        # With --plan --json, stdout holds the JSON document alone.
        request = fallback_request(request, plan, fallback, out=err_console if show_plan else console)
    if reason is not None and not exclude:
        raise ToolingError(
            "--reason goes with --exclude",
            hint="tooling deploy --phase 2b --exclude node3 --reason 'ECC errors'",
        )
    if exclude and show_plan:
        request = replace(request, exclude=list(exclude))  # a plan quarantines nothing
    elif exclude:
        from tooling.job.exclude import excluding_request

        request = excluding_request(request, plan, list(exclude), reason)
    if show_plan:
        _show_plan(request, offline, as_json)
        return
    record = deploy(request, plan, preflight)
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
    commands = watch_commands(record)
    console.print(f"  stop it with `{commands['stop']}`", highlight=False, soft_wrap=True)
    print_next(commands["watch"])


def _confirm_restart(request: DeployRequest, yes: bool) -> None:
    """--restart replaces whatever runs on the phase's nodes: say which run that is, if one is recorded."""
    from tooling.job import records

    try:
        current = records.load(request.inventory)
        what = f"run {current.run_id} (phase {current.phase}) on {', '.join(current.hosts)}"
    except ToolingError:
        what = f"any run active on phase {request.phase}'s nodes (none is recorded for {request.inventory})"
    confirm(f"Replace {what} with a new run of phase {request.phase}? Its ranks are stopped", yes=yes)


def _verification(request: DeployRequest, inventory: dict[str, Any]) -> str:
    """Which pre-flight verification the deploy would run before launching (tooling verify-node)."""
    from tooling.verify.run import is_sandbox_inventory, pick_profile

    if not request.verify:
        return "no pre-flight verification (--skip-verify)"
    name, _ = pick_profile(request.profile, is_sandbox_inventory(inventory, request.inventory))
    return (
        f"pre-flight verification, profile {name} (tooling verify-node --phase {request.phase} --level quick)"
    )


def _show_plan(request: DeployRequest, offline: bool, as_json: bool) -> None:
    from tooling.job.preview import preview
    from tooling.job.preview_view import print_preview
    from tooling.plan.phases import load_phases

    shown = preview(
        request,
        load_phases(),
        verification=lambda inventory: _verification(request, inventory),
        offline=offline,
        progress=None if as_json else err_console,
    )
    if as_json:
        print_json(shown.as_dict())
    else:
        print_preview(console, shown)
    if shown.unreachable:
        # Everything is shown; the deploy itself would stop at these nodes.
        raise typer.Exit(EXIT_CHECK_FAILED)


def chosen_deployment(inventory: Path | None, out: Console = console) -> records.Chosen:
    """The deployment a command acts on (-i's, else the latest), announced in one line (on `out`)."""
    from tooling.job import records

    chosen = records.choose(inventory)
    out.print(chosen.describe())
    return chosen


def status_command(
    inventory: DeploymentInventoryOption = None,
    watch: Annotated[
        bool,
        typer.Option("--watch", help=f"Re-draw every SECONDS (default {WATCH_EVERY_S:g}) until Ctrl-C."),
    ] = False,
    # `--watch [SECONDS]`: typer's options take a value always or never, so the optional number is an
    # argument of its own, taken only with --watch.
    every: Annotated[
        float | None,
        typer.Argument(
            metavar="SECONDS", min=0.5, show_default=False, help="With --watch: seconds between draws."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the running job: every rank's state, step, throughput, loss and last checkpoint, per node."""
    from tooling.job import quarantine, status

    if as_json and watch:
        raise ToolingError("--json prints one document: leave --watch out", hint="tooling status --json")
    if every is not None and not watch:
        raise ToolingError(
            f"{every:g} seconds: that goes with --watch", hint=f"tooling status --watch {every:g}"
        )
    # With --json, stdout holds the document alone; what was chosen goes to stderr.
    out = err_console if as_json else console
    # First, so that "no deployment recorded" comes with where it was looked for.
    out.print(f"state root: {home.root()}", style="dim")
    chosen = chosen_deployment(inventory, out)
    if watch:
        from tooling.job.status_watch import watch_status

        watch_status(chosen, WATCH_EVERY_S if every is None else every)
        return
    shown = status.snapshot(chosen.deployment, chosen.inventory)
    quarantined = quarantine.load(chosen.inventory)
    if as_json:
        console.print_json(data={**shown.as_dict(), "quarantined": [asdict(q) for q in quarantined]})
    else:
        console.print(status.view(shown))
        for entry in quarantined:
            console.print(f"[yellow]quarantined[/yellow]: {entry.describe()}")
    if shown.state in ("failed", "partial"):
        raise typer.Exit(EXIT_CHECK_FAILED)


def stop_command(
    inventory: DeploymentInventoryOption = None,
    timeout: Annotated[int, typer.Option(help="Seconds to wait for the final checkpoint.")] = 300,
    yes: YesOption = False,
) -> None:
    """Stop the job cleanly: every rank stops at the same step after a final checkpoint."""
    from tooling.inventory import load_inventory, refuse_placeholder_hosts
    from tooling.job import cluster

    chosen = chosen_deployment(inventory)
    d = chosen.deployment
    # Before asking: a question about the example inventory's nodes would only be refused after the answer.
    refuse_placeholder_hosts(load_inventory(chosen.inventory), d.hosts, chosen.inventory)
    confirm(
        f"Stop run {d.run_id} (phase {d.phase}, {d.world_size} ranks) on {', '.join(d.hosts)}? Every rank "
        "stops after a final checkpoint",
        yes=yes,
    )
    cluster.stop(chosen.inventory, timeout)
