"""`tooling rehearse --phase P`: the whole roll-out step on the local sandbox cluster.

sandbox up -> deploy (provision, verify, launch) -> wait for the run to finish -> fetch its summary to
this machine -> print the measurements. The rehearsal runs a small workload for a few hundred steps: it
proves the mechanics (provisioning, rendezvous across nodes, metrics, checkpoints), not the throughput.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_text
from tooling.console import CheckFailed, ToolingError, console
from tooling.job.cluster import ClusterJob
from tooling.job.deploy import DeployRequest
from tooling.plan.phases import PhasePlan
from tooling.sandbox import cluster
from tooling.sandbox.settings import SandboxSettings
from tooling.verify.run import preflight

# Small enough that 4 processes per node train at a useful pace on a 2-core machine.
REHEARSAL_SETTINGS = [
    "workload.input_dim=128",
    "workload.hidden_dim=256",
    "workload.num_layers=3",
    "workload.num_samples=16384",
    "training.batch_size=32",
    "schedule.warmup_steps=20",
]


def rehearsal_settings(steps: int) -> list[str]:
    """A short rehearsal still exercises checkpoints (three of them) and the probes."""
    return [f"training.max_steps={steps}", f"checkpoint.every_steps={max(1, steps // 3)}"]


def ensure_sandbox(plan: PhasePlan, phase_name: str) -> Path:
    """A running sandbox big enough for the phase; starts one with the largest phase's node count."""
    needed = plan.get(phase_name).nodes
    state = cluster.load_state(SandboxSettings())
    nodes = len([h for h in (state or {}).get("hosts", {}) if h.startswith("node")]) or plan.max_nodes()
    if nodes < needed:
        raise ToolingError(
            f"the running sandbox has {nodes} node(s); phase {phase_name} needs {needed}",
            hint=f"`tooling sandbox down`, then `tooling sandbox up --nodes {plan.max_nodes()}`",
        )
    settings = SandboxSettings(nodes=nodes)
    result = cluster.up(settings)
    console.print(f"sandbox: {nodes} nodes + monitor {'already up' if result.already_up else 'started'}")
    return settings.inventory_dir


def rehearse_on_sandbox(
    plan: PhasePlan, phase_name: str, steps: int, overrides: list[str], output_dir: Path, timeout_s: float
) -> tuple[dict[str, Any], Path]:
    inventory = ensure_sandbox(plan, phase_name)
    run_id = f"rehearsal-phase{phase_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    sets = [*REHEARSAL_SETTINGS, *rehearsal_settings(steps), *overrides]
    request = DeployRequest(phase=phase_name, inventory=inventory, overrides=sets, run_id=run_id)
    summary = ClusterJob.start(request, plan, preflight).wait(timeout_s)
    local = output_dir / run_id / "summary.json"
    atomic_write_text(local, json.dumps(summary, indent=2) + "\n")
    if summary["status"] != "completed":
        raise CheckFailed(
            f"rehearsal run {run_id} ended {summary['status']}: {summary.get('reason')}",
            hint=f"summary copied to {local}",
        )
    return summary, local
