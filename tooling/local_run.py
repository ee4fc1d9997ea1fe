"""Run a phase's trainer on this machine: every process of the phase as local torchrun workers.

Used for development and as the rehearsal where no sandbox cluster can run (no podman). The phase's
real multi-node launch goes through Ansible (playbooks/launch.yml).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ddp.config import load_config
from tooling.console import CheckFailed, console
from tooling.phases import PhasePlan
from tooling.sweep import production


def standalone_torchrun(
    config: Path, nproc: int, max_restarts: int, monitor_interval_s: float | None = None
) -> list[str]:
    """torchrun of the trainer on this machine alone (`--standalone`), without its `--set` overrides."""
    monitor = [f"--monitor-interval={monitor_interval_s}"] if monitor_interval_s is not None else []
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={max_restarts}",
        *monitor,
        "-m",
        "ddp.real_ddp_trainer",
        "--config",
        str(config),
    ]


def local_command(
    plan: PhasePlan, phase_name: str, output_dir: Path, run_name: str, overrides: list[str]
) -> list[str]:
    phase = plan.get(phase_name)
    config = production.config_path(phase_name, phase.config)  # the locked production config, if any
    sets = [f"run.output_dir={output_dir}", f"run.name={run_name}", *overrides]
    load_config(config, sets)  # refuse to launch anything from an invalid config
    return [
        *standalone_torchrun(config, phase.world_size, plan.rendezvous.max_restarts),
        *(arg for item in sets for arg in ("--set", item)),
    ]


def run_local(
    plan: PhasePlan, phase_name: str, output_dir: Path, run_name: str, overrides: list[str]
) -> dict[str, Any]:
    command = local_command(plan, phase_name, output_dir, run_name, overrides)
    env = dict(os.environ)
    if plan.rendezvous.disable_shared_tcp_store:
        env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    console.print(f"[bold]phase {phase_name}[/bold]: {plan.get(phase_name).world_size} local processes")
    if (locked := production.current(phase_name, plan.get(phase_name).config)) is not None:
        console.print(f"production config: {locked.describe()}")
    proc = subprocess.run(command, env=env, check=False)
    summary_path = output_dir / run_name / "summary.json"
    if proc.returncode != 0:
        raise CheckFailed(
            f"the phase {phase_name} run failed (torchrun exit {proc.returncode})",
            hint=f"see the per-rank logs in {output_dir / run_name / 'logs'}",
        )
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    return summary
