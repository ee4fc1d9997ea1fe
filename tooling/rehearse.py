"""`tooling rehearse --phase P`: the whole roll-out step on the local sandbox cluster.

sandbox up -> deploy (provision, verify, launch) -> watch the run (a step bar fed by rank 0's status file
over SSH, tooling.job.cluster_watch) -> fetch its summary to this machine -> print the measurements. Ctrl-C
stops the watching, not the run: the commands that watch it, stop it and re-attach the bar are printed.

The rehearsal runs a small workload for a few hundred steps: it proves the mechanics (provisioning,
rendezvous across nodes, metrics, checkpoints), not the throughput.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_text
from tooling.console import EXIT_INTERRUPTED, CheckFailed, ToolingError, console
from tooling.job import records
from tooling.job.cluster_watch import Detached, watch_cluster, watch_commands
from tooling.job.deploy import DeployRequest, deploy
from tooling.plan.phases import PhasePlan
from tooling.sandbox import cluster
from tooling.sandbox.settings import CPUS_ENV, SandboxSettings, overcommit_warning
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


def _announce(local_dir: Path) -> None:
    """Where the run's summary will be, on one line whatever the terminal's width (a path to copy)."""
    console.print(
        f"run directory: {local_dir} (its summary comes here from the nodes)", highlight=False, soft_wrap=True
    )


def rehearsal_settings(steps: int) -> list[str]:
    """A short rehearsal still exercises checkpoints (three of them) and the probes."""
    return [f"training.max_steps={steps}", f"checkpoint.every_steps={max(1, steps // 3)}"]


def ensure_sandbox(plan: PhasePlan, phase_name: str) -> Path:
    """A running sandbox big enough for the phase; starts one with the largest phase's node count (each
    node limited to DDP_SANDBOX_CPUS_PER_NODE CPUs when that is set)."""
    needed = plan.get(phase_name).nodes
    state = cluster.load_state(SandboxSettings())
    nodes = len([h for h in (state or {}).get("hosts", {}) if h.startswith("node")]) or plan.max_nodes()
    if nodes < needed:
        raise ToolingError(
            f"the running sandbox has {nodes} node(s); phase {phase_name} needs {needed}",
            hint=f"`tooling sandbox down`, then `tooling sandbox up --nodes {plan.max_nodes()}`",
        )
    settings = SandboxSettings(nodes=nodes)
    if state is not None and not os.environ.get(CPUS_ENV, "").strip():
        # A sandbox that is up keeps the capacity it was made with, as it keeps its node count; set
        # DDP_SANDBOX_CPUS_PER_NODE to insist on one (`up` refuses a sandbox made with another).
        settings = dataclasses.replace(settings, cpus_per_node=state.get("cpus_per_node"))
    result = cluster.up(settings)
    capacity = "" if settings.cpus_per_node is None else f" of {settings.cpus_per_node:g} CPU each"
    console.print(
        f"sandbox: {nodes} nodes{capacity} + monitor {'already up' if result.already_up else 'started'}"
    )
    warning = overcommit_warning(settings.cpus_per_node, nodes)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")
    return settings.inventory_dir


def rehearse_on_sandbox(
    plan: PhasePlan,
    phase_name: str,
    steps: int,
    overrides: list[str],
    output_dir: Path,
    run_id: str,
    *,
    show_bar: bool,
    timeout_s: float,
) -> tuple[dict[str, Any], Path]:
    """Deploy the rehearsal on the sandbox and watch it to its end: its summary and the local copy's path.
    Detached (tooling.job.cluster_watch) on Ctrl-C once the run is launched: it trains on."""
    # First, before the sandbox and the deploy take their minutes: where the run's summary will be.
    _announce(output_dir / run_id)
    inventory = ensure_sandbox(plan, phase_name)
    sets = [*REHEARSAL_SETTINGS, *rehearsal_settings(steps), *overrides]
    request = DeployRequest(phase=phase_name, inventory=inventory, overrides=sets, run_id=run_id)
    try:
        record = deploy(request, plan, preflight)
    except KeyboardInterrupt:
        launched = _launched(inventory, run_id)
        if launched is None:  # nothing runs yet: an ordinary Ctrl-C
            raise
        raise Detached(launched) from None
    _show_where(record)
    summary = watch_cluster(record, steps, show_bar, timeout_s)
    return summary, _keep(summary, output_dir, run_id)


def reattach(
    phase_name: str, run_id: str, output_dir: Path, *, show_bar: bool, timeout_s: float
) -> tuple[dict[str, Any], Path]:
    """`--resume RUN` of a cluster rehearsal: the bar again on a run still going (its summary at once for
    one that has ended), then the same end as a rehearsal watched from the start."""
    chosen = records.of_run(run_id)
    record = chosen.deployment
    if record.phase != phase_name:
        raise ToolingError(
            f"run {run_id} is a run of phase {record.phase}, not {phase_name}",
            hint=f"tooling rehearse --phase {record.phase} --resume {run_id}",
        )
    _announce(output_dir / run_id)
    _show_where(record)
    summary = watch_cluster(record, None, show_bar, timeout_s)
    return summary, _keep(summary, output_dir, run_id)


def _show_where(record: records.Deployment) -> None:
    # Paths to copy: one line each, never wrapped at the terminal's width.
    console.print(
        f"on the nodes: {record.run_dir} ({', '.join(record.hosts)})", highlight=False, soft_wrap=True
    )


def _launched(inventory: Path, run_id: str) -> records.Deployment | None:
    """The deployment of `run_id` if deploy got as far as launching it (it is recorded then)."""
    try:
        record = records.load(inventory)
    except ToolingError:
        return None
    return record if record.run_id == run_id else None


def _keep(summary: dict[str, Any], output_dir: Path, run_id: str) -> Path:
    """The summary copied to this machine (for the gate); CheckFailed when the run did not complete."""
    local = output_dir / run_id / "summary.json"
    atomic_write_text(local, json.dumps(summary, indent=2) + "\n")
    if summary["status"] != "completed":
        raise CheckFailed(
            f"rehearsal run {run_id} ended {summary['status']}: {summary.get('reason')}",
            hint=f"summary copied to {local}",
        )
    return local


def report_detached(left: Detached, phase: str, runs_dir: Path, *, as_json: bool) -> None:
    """Where the run goes on and the exact commands that watch it, stop it and re-attach the bar (exit 130
    follows, as for any Ctrl-C)."""
    record = left.record
    resume = shlex.join(
        ["tooling", "rehearse", "--phase", phase, "--runs-dir", str(runs_dir), "--resume", record.run_id]
    )
    commands = {**watch_commands(record), "resume": resume}
    if as_json:
        document = {
            "run_id": record.run_id,
            "run_dir": record.run_dir,
            "hosts": record.hosts,
            "exit_status": EXIT_INTERRUPTED,
            **commands,
        }
        print(json.dumps(document, indent=2))
        return
    console.print(
        f"[yellow]detached[/]: run {record.run_id} goes on training on {', '.join(record.hosts)} "
        f"(run directory there: {record.run_dir})",
        highlight=False,
        soft_wrap=True,
    )
    for what, command in (("watch it", "watch"), ("stop it", "stop"), ("re-attach", "resume")):
        console.print(f"{what}: {commands[command]}", highlight=False, soft_wrap=True)
