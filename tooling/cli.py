"""`tooling`: the operator's command line."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from tooling import home
from tooling.check.cli import check_command
from tooling.cli_examples import epilog
from tooling.cli_options import (
    HomeOption,
    JsonOption,
    RunsDirOption,
    SetOption,
    VaultIdOption,
    VaultPasswordFileOption,
    phase_option,
    show_flags_as_flags,
    show_plan_phases,
)
from tooling.console import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CheckFailed,
    console,
    display_error,
    err_console,
    error_edge,
    people_output_on_stderr,
    print_next,
)
from tooling.doctor_cli import doctor_command
from tooling.forecast.cli import forecast_command
from tooling.gates.cli import gate, phases
from tooling.job_cli import deploy_command, status_command, stop_command
from tooling.logs_cli import logs_command
from tooling.plan.phase_file import PHASES_FILE_ENV
from tooling.report.cli import report
from tooling.sandbox.cli import sandbox_app
from tooling.selfcheck.cli import self_check_command
from tooling.soak.cli import soak_command
from tooling.sweep.cli import sweep_command
from tooling.vault import vault_environment
from tooling.verify.cli import verify_node


class _EdgeGroup(TyperGroup):
    """The one error edge: every command (and every sub-app's) runs inside it, so a ToolingError or a
    ConfigError anywhere ends as a red panel and exit 2 (or 1 for CheckFailed), never a traceback. Here
    rather than around main(): click's test runner and `python -m tooling.cli` both enter through it."""

    def invoke(self, ctx: Any) -> Any:  # the click Context of the click that typer vendors
        with error_edge():
            return super().invoke(ctx)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        show_flags_as_flags(self)  # before any help screen, the root's included
        return super().main(*args, **kwargs)


app = typer.Typer(
    name="tooling",
    cls=_EdgeGroup,
    help="Provision, verify, deploy and judge a DDP training job, phase by phase.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    """`--version`: the installed distribution's version, found through the package rather than a name
    written here, so pyproject.toml stays the one place the distribution is named."""
    if not value:
        return
    import importlib.metadata  # here: only --version reads it, and it costs every --help a tenth of a second

    package = (__package__ or "").partition(".")[0]  # "tooling", also under `python -m tooling.cli`
    names = importlib.metadata.packages_distributions().get(package)
    if not names:
        display_error(
            f"no installed distribution provides the `{package}` package, so it has no version",
            hint="install the project (`pip install -e .` from the source tree)",
        )
        raise typer.Exit(EXIT_USAGE)
    console.print(f"{names[0]} {importlib.metadata.version(names[0])}", highlight=False)
    raise typer.Exit()


@app.callback()
def _site_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_show_version,
            help="Print the installed version and exit.",
        ),
    ] = False,
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
    state_root: HomeOption = None,
    vault_ids: VaultIdOption = None,
    vault_password_file: VaultPasswordFileOption = None,
) -> None:
    # Through the environment rather than a parameter: every command's load_phases() and home.root() and
    # every child (ansible-runner, local torchrun runs) then see the same plan and state root, with
    # nothing threaded through; the vault sources likewise reach every Ansible run and tooling's own
    # inventory reading (the sources only, never a password).
    if phases_file is not None:
        os.environ[PHASES_FILE_ENV] = str(phases_file)
    if state_root is not None:
        os.environ[home.HOME_ENV] = str(state_root)
    os.environ.update(vault_environment(vault_ids or [], vault_password_file))
    show_plan_phases(ctx.command)
    _hint_legacy_state()


def _hint_legacy_state() -> None:
    """State from before the state root is pointed out once, never moved behind the operator's back."""
    legacy = home.legacy_dirs()
    if not legacy:
        return
    where = ", ".join(str(p) for p in legacy)
    err_console.print(
        f"[yellow]note:[/] {where} holds state from before the state root; commands now use "
        f"{home.root()}. Move what you still need there (e.g. `mv runs/decisions {home.root()}/`) or "
        f"point {home.HOME_ENV} at it. This note is shown once."
    )
    home.note_legacy(legacy)


app.add_typer(sandbox_app, name="sandbox")
app.command("verify-node", epilog=epilog("verify-node"))(verify_node)
app.command("deploy", epilog=epilog("deploy"))(deploy_command)
app.command("status", epilog=epilog("status"))(status_command)
app.command("stop", epilog=epilog("stop"))(stop_command)
app.command("doctor", epilog=epilog("doctor"))(doctor_command)
app.command("logs", epilog=epilog("logs"))(logs_command)
app.command("gate", epilog=epilog("gate"))(gate)
app.command("phases", epilog=epilog("phases"))(phases)
app.command("forecast", epilog=epilog("forecast"))(forecast_command)
app.command("report", epilog=epilog("report"))(report)
app.command("soak", epilog=epilog("soak"))(soak_command)
app.command("check", epilog=epilog("check"))(check_command)
app.command("sweep", epilog=epilog("sweep"))(sweep_command)
app.command("self-check", epilog=epilog("self-check"))(self_check_command)


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


@app.command(epilog=epilog("rehearse"))
def rehearse(
    phase: Annotated[str, phase_option("Phase to rehearse.")] = "1",
    steps: Annotated[int, typer.Option(min=1, help="Training steps of the rehearsal run (1 or more).")] = 300,
    local: Annotated[
        bool, typer.Option(help="Run the phase's processes on this machine, no sandbox.")
    ] = False,
    runs_dir: RunsDirOption = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="With --local: continue this run (a name under --runs-dir) from its last checkpoint. "
            "Without: watch this sandbox run again (it trains on after Ctrl-C) until it ends.",
        ),
    ] = None,
    overrides: SetOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run to finish.")] = 1800,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="With --local: show torchrun's and the ranks' output.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rehearse a phase end to end on the local sandbox cluster (or --local) and print its measurements."""
    # Imported here, as in every command: the plan's schema, the job and sandbox layers are the command's
    # work, and `tooling --help` must not pay for them.
    from tooling.job.cluster_watch import Detached
    from tooling.job.local_watch import Interrupted
    from tooling.plan.phases import load_phases
    from tooling.rehearse import reattach, rehearse_on_sandbox, report_detached
    from tooling.rehearse_local import rehearse_locally, report_interrupted

    plan = load_phases()
    plan.get(phase)
    runs = (runs_dir or home.runs()).resolve()
    if run is not None and local and not (runs / run).is_dir():
        display_error(f"no run {run} in {runs}", hint="name a run directory printed by an earlier rehearsal")
        raise typer.Exit(EXIT_USAGE)
    sets = list(overrides or [])
    run_name = run or f"rehearsal-phase{phase}-{time.strftime('%Y%m%d-%H%M%S')}"
    # The bar only on a terminal, and never beside a JSON document.
    show_bar = console.is_terminal and not as_json
    try:
        if local:
            summary = rehearse_locally(
                plan, phase, steps, runs, run_name, sets, verbose=verbose, as_json=as_json, timeout_s=timeout
            )
            path = runs / run_name / "summary.json"
        else:
            with people_output_on_stderr(as_json):
                if run is not None:
                    summary, path = reattach(phase, run, runs, show_bar=show_bar, timeout_s=timeout)
                else:
                    summary, path = rehearse_on_sandbox(
                        plan, phase, steps, sets, runs, run_name, show_bar=show_bar, timeout_s=timeout
                    )
    except Interrupted as stop:
        report_interrupted(stop, phase, steps, runs, sets, as_json=as_json)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Detached as left:
        report_detached(left, phase, runs, as_json=as_json)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except CheckFailed as failed:
        if as_json:  # the document still comes, the error panel beside it on stderr
            print(json.dumps({"run_dir": str(runs / run_name), "summary": None,
                              "exit_status": failed.exit_code, "error": str(failed)}, indent=2))  # fmt: skip
        raise
    next_command = f"tooling gate --phase {phase} --run {path.parent}"
    if as_json:
        document = {"run_dir": str(path.parent), "summary": summary, "exit_status": 0, "next": next_command}
        print(json.dumps(document, indent=2))
        return
    print_summary(summary)
    console.print(f"summary: {path}", highlight=False)
    print_next(next_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
