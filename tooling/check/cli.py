"""`tooling check`: the daily operations checklist, as far as software can do it.

Exit codes: 0 no check failed (WARN and SKIP allowed), 1 a check failed, 2 usage error (unknown schedule
or phase, bad settings file, missing inventory, no phase to check). Every run appends its snapshot to
<home>/checks/<UTC date>.jsonl (tooling.home), which the next days' disk trend reads.
"""

from __future__ import annotations

import datetime
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tooling import home
from tooling.cli_options import (
    InventoryOption,
    JsonOption,
    phase_option,
    with_prometheus_access,
)
from tooling.console import EXIT_CHECK_FAILED, console, err_console, print_next

if TYPE_CHECKING:
    from tooling.check.cluster import Cluster
    from tooling.check.probes import Session
    from tooling.findings import Finding
    from tooling.prometheus_api import PrometheusAccess

# The checks, their settings schema, the plan, the inventory and Prometheus' client are imported where the
# command runs (and by the snapshot it writes), not here: `tooling --help` imports this module and must
# stay quick.


def snapshot_record(
    session: Session, rows: list[Finding], schedule: str | None, checks: list[str]
) -> dict[str, Any]:
    from tooling.check.judge import VIEW

    cluster = session.cluster
    # The findings as the JSON output has them (verdict, counts, results), plus what tomorrow's trend needs.
    return VIEW.document(
        rows,
        ts=session.now,
        at=datetime.datetime.fromtimestamp(session.now, datetime.UTC).isoformat(timespec="seconds"),
        schedule=schedule or "all",
        checks=checks,
        inventory=str(cluster.inventory_path),
        phase=cluster.phase,
        run_id=cluster.run.run_id if cluster.run else None,
        prometheus=cluster.prometheus_url,
        disk={
            host: {
                "avail_bytes": usage.avail_bytes,
                "size_bytes": usage.size_bytes,
                "mount": usage.mount,
                "path": usage.path,
            }
            for host, usage in session.disk.items()
        },
    )


def _title(cluster: Cluster, schedule: str | None) -> str:
    run = f"run {cluster.run.run_id}" if cluster.run else "no run"
    return f"{schedule or 'all'} checks, phase {cluster.phase} ({', '.join(cluster.hosts)}), {run}"


@with_prometheus_access
def check_command(
    schedule: Annotated[
        str | None,
        typer.Option(
            "--schedule",
            "-s",
            help="morning, afternoon, evening or nightly (a site may add more); default: all.",
        ),
    ] = None,
    inventory: InventoryOption = None,
    phase: Annotated[str | None, phase_option("Phase to check (default: the active run's).")] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option("--prometheus", help="Prometheus base URL (default: the inventory's monitoring host)."),
    ] = None,
    settings_file: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            envvar="TOOLING_CHECK_SETTINGS",
            help="Site schedules and thresholds laid over tooling/check/schedules.yml.",
        ),
    ] = None,
    as_json: JsonOption = False,
    *,
    access: PrometheusAccess,
) -> None:
    """Run the daily operations checks: job and ranks, balance, alerts, disk, checkpoints, network, heat."""
    from tooling.check import snapshots
    from tooling.check.cluster import resolve
    from tooling.check.judge import VIEW, overall
    from tooling.check.probes import Session, run_checks
    from tooling.check.schedules import load_settings
    from tooling.inventory import default_inventory, load_inventory
    from tooling.plan.phases import load_phases

    settings = load_settings(settings_file)
    checks = settings.select(schedule)
    plan = load_phases()
    if phase is not None:
        plan.get(phase)
    path = (inventory or default_inventory()).resolve()
    cluster = resolve(load_inventory(path), path, plan, phase, home.deployments(), prometheus_url, access)
    now = time.time()
    session = Session.open(
        cluster,
        settings.thresholds,
        history=snapshots.load_recent(home.checks(), settings.thresholds.trend_window_days, now),
        now=now,
    )
    with err_console.status("checking") as spinner:
        rows = run_checks(session, checks, lambda name: spinner.update(f"checking {name}"))
    written = snapshots.append(home.checks(), snapshot_record(session, rows, schedule, checks))
    if as_json:
        text = VIEW.to_json(
            rows,
            schedule=schedule or "all",
            checks=checks,
            phase=cluster.phase,
            hosts=cluster.hosts,
            run_id=cluster.run.run_id if cluster.run else None,
            inventory=str(path),
            prometheus=cluster.prometheus_url,
            snapshot=str(written),
        )
        sys.stdout.write(text + "\n")
    else:
        VIEW.print(
            console,
            [VIEW.table(rows, _title(cluster, schedule))],
            VIEW.summary(rows),
            [f"snapshot appended to {written}"],
        )
    failed = overall(rows) == "FAIL"
    print_next(
        _what_next(failed, cluster.phase, path, running=cluster.run is not None),
        err_console if as_json else console,
    )
    if failed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _what_next(failed: bool, phase: str, inventory: Path, *, running: bool) -> str:
    """A failed check with a run going leads to the doctor (which rank, which node, why); without a run, to
    the nodes' own verification; a passing one to watching the run, or to deploying the phase."""
    given = ["--phase", phase, "--inventory", str(inventory)]
    if failed and running:
        return shlex.join(["tooling", "doctor", *given])
    if failed:
        return shlex.join(["tooling", "verify-node", *given])
    if running:
        return shlex.join(["tooling", "status", "--watch", "--inventory", str(inventory)])
    return shlex.join(["tooling", "deploy", *given])
