"""`tooling`: the operator's command line."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tooling.check.cli import check_command
from tooling.console import cli_edge, console
from tooling.gates.cli import gate, phases
from tooling.job_cli import deploy_command, status_command, stop_command
from tooling.local_run import run_local
from tooling.phases import PHASES_FILE_ENV, load_phases
from tooling.rehearse import rehearsal_settings, rehearse_on_sandbox
from tooling.report.cli import report
from tooling.sandbox.cli import sandbox_app
from tooling.soak.cli import soak_command
from tooling.sweep.cli import sweep_command
from tooling.verify.cli import verify_node

app = typer.Typer(
    name="tooling",
    help="Provision, verify, deploy and judge a DDP training job, phase by phase.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _site_options(
    phases_file: Annotated[
        Path | None,
        typer.Option(
            "--phases",
            exists=True,
            dir_okay=False,
            resolve_path=True,
            metavar="FILE",
            help=f"A site's own complete phases file instead of tooling/phases.yml (sets {PHASES_FILE_ENV}).",
        ),
    ] = None,
) -> None:
    # Through the environment rather than a parameter: every command's load_phases() and every child
    # (ansible-runner, local torchrun runs) then sees the same plan, with nothing threaded through.
    if phases_file is not None:
        os.environ[PHASES_FILE_ENV] = str(phases_file)


app.add_typer(sandbox_app, name="sandbox")
app.command("verify-node")(cli_edge(verify_node))
app.command("deploy")(cli_edge(deploy_command))
app.command("status")(cli_edge(status_command))
app.command("stop")(cli_edge(stop_command))
app.command("gate")(gate)
app.command("phases")(phases)
app.command("report")(report)
app.command("soak")(cli_edge(soak_command))
app.command("check")(check_command)
app.command("sweep")(cli_edge(sweep_command))

PhaseOption = Annotated[str, typer.Option("--phase", "-p", help="Phase: 1, 2a, 2b or 2c.")]


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"run {summary['run']}: {summary['status']}", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    throughput = summary["throughput"]
    grad = summary["grad_sync"]
    rows = [
        ("world size", f"{summary['world_size']} ({summary['nodes']} node(s) x {summary['nproc_per_node']})"),
        ("steps", str(summary["steps"])),
        (
            "throughput, samples/s (mean over heartbeats)",
            _fmt(throughput["global_samples_per_second_mean"], ".1f"),
        ),
        ("throughput sigma, samples/s", _fmt(throughput["global_samples_per_second_stddev"], ".1f")),
        ("communication overhead", _fmt(summary["comm_overhead_ratio"], ".1%")),
        ("CPU utilisation (per rank)", _fmt(summary["cpu_utilisation_ratio"], ".1%")),
        ("memory pressure (max)", _fmt(summary["memory_pressure_ratio_max"], ".1%")),
        (
            "loss first -> last",
            f"{_fmt(summary['loss']['first'], '.4f')} -> {_fmt(summary['loss']['last'], '.4f')}",
        ),
        ("non-finite losses", str(summary["nonfinite_loss_count"])),
        ("gradient-sync accuracy", f"{_fmt(grad['accuracy_ratio'], '.2%')} of {grad['checks']} checks"),
        (
            "checkpoints saved / failed",
            f"{summary['checkpoints']['saved']} / {summary['checkpoints']['failures']}",
        ),
        ("restarts", str(summary["restarts"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@app.command()
@cli_edge
def rehearse(
    phase: PhaseOption = "1",
    steps: Annotated[int, typer.Option(help="Training steps of the rehearsal run.")] = 300,
    local: Annotated[
        bool, typer.Option(help="Run the phase's processes on this machine, no sandbox.")
    ] = False,
    output_dir: Annotated[Path, typer.Option(help="Where run summaries are written.")] = Path("runs"),
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Trainer setting KEY.PATH=VALUE.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run to finish.")] = 1800,
) -> None:
    """Rehearse a phase end to end on the local sandbox cluster (or --local) and print its measurements."""
    plan = load_phases()
    plan.get(phase)
    if local:
        run_name = f"rehearsal-phase{phase}-{time.strftime('%Y%m%d-%H%M%S')}"
        sets = [
            *rehearsal_settings(steps),
            "metrics.bind_address=127.0.0.1",
            *(overrides or []),
        ]
        summary = run_local(plan, phase, output_dir.resolve(), run_name, sets)
        path = output_dir / run_name / "summary.json"
    else:
        summary, path = rehearse_on_sandbox(
            plan, phase, steps, list(overrides or []), output_dir.resolve(), timeout
        )
    print_summary(summary)
    console.print(f"summary: {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
