"""`tooling sweep`: find a phase's production configuration.

    tooling sweep --phase 1 --grid batch_size=16,32 --grid lr=0.01,0.1 [--local]   a trial each
    tooling sweep ... --json                                                         results as JSON
    tooling sweep --resume ID                                                        finish the rest
    tooling sweep --lock --phase 1 [--id ID] [--trial N] [--yes]                     lock best or N

Exit codes: 0 done (or locked), 1 no trial qualified or the cluster could not run one, 2 usage or input error
(nothing launched, nothing written).
"""

from __future__ import annotations

from typing import Annotated

import typer

from tooling import home
from tooling.cli_options import InventoryOption, JsonOption, SweepsDirOption, phase_option
from tooling.console import ToolingError, people_output_on_stderr
from tooling.sweep import DEFAULT_STEPS


def _forbid(context: str, given: dict[str, bool]) -> None:
    extra = [name for name, present in given.items() if present]
    if extra:
        raise ToolingError(f"{context} takes no {', '.join(extra)}")


def sweep_command(
    phase: Annotated[str | None, phase_option("Phase to sweep (with --lock: to lock).")] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="NAME=V1,V2,...",
            help="A setting and its values; repeat for more. Names: batch_size, grad_accum, lr, "
            "bucket_cap_mb, or any dotted trainer config key.",
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help=f"Training steps of each trial (default {DEFAULT_STEPS}).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Trainer setting KEY.PATH=VALUE for every trial.")
    ] = None,
    inventory: InventoryOption = None,
    local: Annotated[bool, typer.Option("--local", help="Run the trials on this machine.")] = False,
    sweep_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="The sweep's id (default: phase<P>-<UTC time>); with --lock, the sweep to lock from "
            "(default: the phase's latest).",
        ),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(metavar="ID", help="Finish an interrupted sweep: only missing trials run.")
    ] = None,
    lock_: Annotated[
        bool, typer.Option("--lock", help="Write the sweep's best trial as the phase's production config.")
    ] = False,
    trial: Annotated[
        int | None, typer.Option(min=1, help="With --lock: lock this trial, not the best.")
    ] = None,
    loss_margin: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Relative drop of the loss, first to last, a trial needs to be ranked "
            "(default 0: any drop).",
        ),
    ] = None,
    trial_timeout: Annotated[float, typer.Option(help="Seconds one trial may take.")] = 1800.0,
    restart: Annotated[
        bool, typer.Option(help="Let the first trial replace a run already active on the phase's nodes.")
    ] = False,
    sweeps_dir: SweepsDirOption = None,
    # The results (every trial, the ranking, the best); progress goes to stderr.
    as_json: JsonOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --lock: lock without asking.")] = False,
) -> None:
    """Run a short trial of every combination of a grid of trainer settings on a phase, rank them by
    throughput among those whose loss behaves, and (--lock) make the best the phase's production config."""
    # The sweep itself (trials, jobs, the trainer config's schema, its report) is imported when it runs:
    # `tooling --help` imports this module and must stay quick.
    from tooling.plan.phases import load_phases
    from tooling.sweep.run import lock_sweep, start_sweep

    sweeps_dir = sweeps_dir or home.sweeps()
    phases = load_phases()
    if lock_:
        _forbid(
            "--lock",
            {
                "--grid": bool(grid),
                "--resume": resume is not None,
                "--set": bool(overrides),
                "--steps": steps is not None,
                "--local": local,
                "--inventory": inventory is not None,
                "--loss-margin (it is the sweep's)": loss_margin is not None,
                "--json (it goes with a sweep)": as_json,
            },
        )
        lock_sweep(phases=phases, phase=phase, sweep_id=sweep_id, trial=trial, sweeps_dir=sweeps_dir, yes=yes)
        return
    _forbid(
        "a sweep",
        {"--trial (it goes with --lock)": trial is not None, "--yes (it goes with --lock)": yes},
    )
    if resume is not None and sweep_id is not None:
        raise ToolingError("--resume ID names the sweep already: leave --id out")
    with people_output_on_stderr(as_json):
        start_sweep(
            phases=phases,
            phase=phase,
            grid=list(grid or []),
            steps=steps,
            sets=overrides,
            local=local,
            inventory=inventory,
            sweep_id=sweep_id,
            resume=resume,
            loss_margin=loss_margin,
            timeout_s=trial_timeout,
            restart=restart,
            sweeps_dir=sweeps_dir,
            as_json=as_json,
        )
