"""`tooling rehearse --local`: the phase's processes on this machine, watched (step bar, Ctrl-C that says
how to resume). Resuming is the same command with `--resume RUN`: the trainer resumes from the newest
checkpoint in the run's directory (checkpoint.resume is on by default)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from tooling.console import EXIT_INTERRUPTED, console, err_console
from tooling.job.local_watch import Interrupted, WatchOptions, start_watched, stdout_is_terminal, watch
from tooling.job.torchrun import local_launch
from tooling.plan.phases import PhasePlan
from tooling.rehearse import rehearsal_settings


def resume_command(phase: str, steps: int, runs_dir: Path, run_name: str, overrides: list[str]) -> str:
    """The exact command line that continues `run_name` from its last checkpoint."""
    args = ["tooling", "rehearse", "--phase", phase, "--local", "--steps", str(steps)]
    args += ["--runs-dir", str(runs_dir), "--resume", run_name]
    for item in overrides:
        args += ["--set", item]
    return shlex.join(args)


def rehearse_locally(
    plan: PhasePlan,
    phase: str,
    steps: int,
    runs_dir: Path,
    run_name: str,
    overrides: list[str],
    *,
    verbose: bool,
    as_json: bool,
    timeout_s: float,
) -> dict[str, Any]:
    """The run's summary; Interrupted (from local_watch) on Ctrl-C, CheckFailed when it fails."""
    sets = [*rehearsal_settings(steps), "metrics.bind_address=127.0.0.1", *overrides]
    launch = local_launch(plan, phase, runs_dir, run_name, sets)
    run_dir = runs_dir / run_name
    # First, before torch's minute of start-up: where to look while it runs. Beside the JSON document,
    # never in it.
    (err_console if as_json else console).print(f"run directory: {run_dir}", highlight=False)
    job = start_watched(launch, run_dir, plan.get(phase).world_size)
    out = sys.stderr if as_json else sys.stdout
    options = WatchOptions(show_bar=stdout_is_terminal() and not as_json, verbose=verbose, out=out)
    return watch(job, steps, options, timeout_s)


def report_interrupted(
    stop: Interrupted, phase: str, steps: int, runs_dir: Path, overrides: list[str], *, as_json: bool
) -> None:
    """Where the partial run is and the command that continues it (exit 130 follows, as for any Ctrl-C)."""
    resume = resume_command(phase, steps, runs_dir, stop.run_dir.name, overrides)
    if as_json:
        document = {
            "run_dir": str(stop.run_dir),
            "last_checkpoint_step": stop.last_checkpoint_step,
            "exit_status": EXIT_INTERRUPTED,
            "resume": resume,
        }
        print(json.dumps(document, indent=2))
        return
    step = "none yet" if stop.last_checkpoint_step is None else f"step {stop.last_checkpoint_step}"
    console.print(f"partial run: {stop.run_dir} (last checkpoint: {step})", highlight=False, soft_wrap=True)
    console.print(f"resume with: {resume}", highlight=False, soft_wrap=True)
