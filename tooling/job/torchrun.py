"""The one torchrun command and environment for the trainer on this machine (`torchrun --standalone`).

Local runs, `soak --local`, the sweep's local trials and bench/recovery.py all launch through it. The
phase's real multi-node launch is Ansible's (roles/ddp_trainer/templates/ddp-launch.j2).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ddp.config import load_config
from ddp.control import AGENT_MONITOR_ENV
from tooling.job import production
from tooling.plan.phases import PhasePlan

# torch 2.13: a restarted worker group fails with "Gloo connectFullMesh failed" unless the rendezvous
# store is not shared (pytorch #135712); tooling/phases.yml's rendezvous.disable_shared_tcp_store.
SHARED_STORE_ENV = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"


@dataclass(frozen=True)
class TorchrunLaunch:
    """A launch worked out and checked: the command line and the environment to run it in."""

    command: list[str]
    env: dict[str, str]


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


def torchrun_env(
    disable_shared_tcp_store: bool,
    base: Mapping[str, str] | None = None,
    monitor_interval_s: float | None = None,
) -> dict[str, str]:
    """The launcher's environment: `base` (default: this process's) with the plan's rendezvous switch, and
    the agent's monitor interval when the launch sets one (the ranks' wait for their agent follows it)."""
    env = dict(os.environ if base is None else base)
    if disable_shared_tcp_store:
        env[SHARED_STORE_ENV] = "1"
    if monitor_interval_s is not None:
        env[AGENT_MONITOR_ENV] = str(monitor_interval_s)
    return env


def local_launch(
    plan: PhasePlan,
    phase_name: str,
    output_dir: Path,
    run_name: str,
    overrides: list[str],
    nproc: int | None = None,
) -> TorchrunLaunch:
    """The phase's run on this machine: its locked production config (if any) with the run's settings,
    every process of the phase unless `nproc` asks for another count; refused when the config is invalid."""
    phase = plan.get(phase_name)
    config = production.config_path(phase_name, phase.config)
    sets = [f"run.output_dir={output_dir}", f"run.name={run_name}", *overrides]
    load_config(config, sets)  # refuse to launch anything from an invalid config
    command = [
        *standalone_torchrun(config, nproc or phase.world_size, plan.rendezvous.max_restarts),
        *(arg for item in sets for arg in ("--set", item)),
    ]
    return TorchrunLaunch(command, torchrun_env(plan.rendezvous.disable_shared_tcp_store))
