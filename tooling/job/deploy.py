"""`tooling deploy --phase P`: validate -> provision -> pre-flight verification -> launch -> wait for ranks.

Everything that changes a node goes through Ansible (ansible-runner); the wait reads the ranks' status
files over SSH. Nothing is provisioned or launched until the phase, the inventory and the trainer config
have all been checked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from ddp.config import load_config
from tooling import home
from tooling.console import CheckFailed, ToolingError, console, err_console
from tooling.inventory import (
    group_exists,
    load_inventory,
    phase_hosts,
    refuse_placeholder_hosts,
    ssh_targets,
)
from tooling.job import production, quarantine, records, status
from tooling.plan.launch import Launch, LaunchError, ansible_groups, derive_launch
from tooling.plan.phases import PhasePlan
from tooling.runner import PROJECT_ROOT, RunResult, run_playbook

# What playbooks/launch.yml publishes with set_stats (roles/ddp_trainer/tasks/launch.yml).
LAUNCH_STATS_KEY = "ddp_launch"


@dataclass
class DeployRequest:
    phase: str
    inventory: Path
    config: Path | None = None
    overrides: list[str] = field(default_factory=list)
    provision: bool = True
    # Without provisioning, deploy first points the phase's nodes (trainer.yml) and Prometheus (targets.yml)
    # at the phase, since another phase may have been deployed there since. False skips that, for a caller
    # that configured them for this phase itself and knows nothing was deployed there since: a sweep's
    # later trials, whose own settings travel with the launch (launch.yml), need launch.yml alone.
    configure: bool = True
    verify: bool = True
    profile: str | None = None
    run_id: str | None = None
    restart: bool = False
    wait_s: float = 180.0
    runs_dir: Path = field(default_factory=home.ansible)
    fallback_from: str | None = None  # the phase whose run this deploy continues (--fallback)
    # Nodes of the phase to leave out besides the quarantined ones (tooling.job.quarantine), which every
    # deploy leaves out.
    exclude: list[str] = field(default_factory=list)


# The pre-flight verification deploy runs before launching (verify=True): it lives a layer above jobs
# (tooling.verify.run.preflight), so whoever deploys hands it in. Returns the exit code, 0 = passed.
Preflight = Callable[[DeployRequest], int]


def fallback_request(
    request: DeployRequest,
    plan: PhasePlan,
    fallback: str,
    state_dir: Path | None = None,
    out: Console = console,
) -> DeployRequest:
    """`deploy --phase P --fallback F`: continue the run recorded for phase P on the smaller phase F.

    F's nodes must all belong to P's run (phase groups nest, so node1 and its checkpoints stay), and the run
    keeps its id, so every node of F resumes from the newest checkpoint in the same run directory."""
    failed = plan.get(request.phase)
    smaller = plan.get(fallback)
    if smaller.world_size >= failed.world_size:
        raise ToolingError(
            f"--fallback {fallback}: phase {fallback} has {smaller.world_size} processes, not fewer than "
            f"phase {request.phase}'s {failed.world_size}",
            hint=f"the plan's fallback for phase {request.phase}: {failed.fallback or 'none set'}",
        )
    if request.run_id:
        raise ToolingError("--fallback continues the recorded run: leave out --run-id")
    record = records.load(request.inventory, state_dir)
    if record.phase != request.phase:
        raise ToolingError(
            f"the run recorded for {request.inventory} is phase {record.phase}'s {record.run_id!r}, "
            f"not phase {request.phase}'s",
            hint=f"use --phase {record.phase} --fallback {fallback}",
        )
    hosts = derive_phase_launch(load_inventory(request.inventory), request.inventory, plan, fallback).hosts
    strangers = [h for h in hosts if h not in record.hosts]
    if strangers:
        raise ToolingError(
            f"--fallback {fallback}: {', '.join(strangers)} did not take part in run {record.run_id!r} "
            f"(phase {request.phase} on {', '.join(record.hosts)}) and holds none of its checkpoints"
        )
    out.print(
        f"[bold]fallback[/bold]: run {record.run_id} of phase {request.phase} ({failed.world_size} "
        f"processes) continues as phase {fallback} ({smaller.world_size} processes on {', '.join(hosts)}) "
        "from its newest checkpoint"
    )
    # Same model and settings as the run being continued; what is given now comes last and wins.
    return replace(
        request,
        phase=fallback,
        run_id=record.run_id,
        restart=True,
        provision=False,
        fallback_from=request.phase,
        overrides=[*record.overrides, *request.overrides],
        config=request.config or (Path(record.config) if record.config else None),
    )


def derive_phase_launch(
    inventory: dict[str, Any],
    inventory_path: Path,
    plan: PhasePlan,
    phase_name: str,
    exclude: list[str] | None = None,
) -> Launch:
    """The phase's launch as role ddp_trainer will derive it (tooling/plan/launch.py), refused before
    anything runs when the inventory cannot make it; `exclude` leaves those nodes out."""
    # The inventory's own checks first: they name the file, and also want an address for every node and
    # the earlier phases' groups nested inside this one.
    phase_hosts(inventory, phase_name, plan.get(phase_name), inventory_path, plan=plan)
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    try:
        return derive_launch(
            plan, ansible_groups(inventory), hostvars, phase=phase_name, exclude=exclude or []
        )
    except LaunchError as exc:
        raise ToolingError(f"inventory {inventory_path}: {exc}") from None


@dataclass(frozen=True)
class Plan:
    """What a deploy will do, worked out (and checked) before anything runs."""

    phase: str
    group: str
    hosts: list[str]
    world_size: int
    run_id: str
    extravars: dict[str, Any]
    inventory: dict[str, Any]
    excluded: list[str] = field(default_factory=list)

    @property
    def limit(self) -> str:
        """The Ansible limit of the phase's plays: its group, less the excluded nodes."""
        return self.group + "".join(f":!{host}" for host in self.excluded)


def build_plan(request: DeployRequest, plan: PhasePlan, out: Console = console) -> Plan:
    """The deploy worked out and checked; what it notes on the way (the locked config) goes to `out`."""
    phase = plan.get(request.phase)
    inventory = load_inventory(request.inventory)
    # Quarantined nodes of other phases' groups are not this phase's to leave out (derive_launch refuses
    # strangers): only the group's own are passed on.
    members = set(ansible_groups(inventory).get(phase.group) or [])
    quarantined = set(quarantine.names(request.inventory)) | set(request.exclude)
    excluded = sorted(quarantined & members)
    launch = derive_phase_launch(inventory, request.inventory, plan, request.phase, excluded)
    # The config that will run on the nodes: the phase's, its locked production settings (`tooling sweep
    # --lock`), the --config file laid over them, then --set.
    locked = production.current(request.phase, phase.config)
    if locked is not None:
        out.print(f"production config: {locked.describe()}")
    config_overlay = production.overlay(locked, request.config)
    load_config(locked.path if locked else PROJECT_ROOT / phase.config, request.overrides, request.config)
    run_id = request.run_id or f"{phase.group}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    extravars: dict[str, Any] = {
        "ddp_trainer_phase": request.phase,
        "ddp_trainer_run_id": run_id,
        "ddp_trainer_restart": request.restart,
        "ddp_trainer_launch_overrides": list(request.overrides),
        # Each node's own wait for its ranks in launch.yml: --wait, not the role's default.
        "ddp_trainer_launch_wait_s": math.ceil(request.wait_s),
    }
    if launch.excluded:
        extravars["ddp_trainer_exclude"] = list(launch.excluded)
    if config_overlay:
        extravars["ddp_trainer_config_overrides"] = config_overlay
    return Plan(
        request.phase,
        phase.group,
        launch.hosts,
        launch.world_size,
        run_id,
        extravars,
        inventory,
        launch.excluded,
    )


def task_failure_line(host: str, task: str, message: str) -> str:
    """One failed task of one host, as failure_detail says it."""
    return f"{host}: task {task!r}: {message}"


def failure_detail(result: RunResult) -> str:
    """What stopped a playbook, a line per unreachable host and failed task (the first 20)."""
    lines = [f"{host}: unreachable: {reason}" for host, reason in result.unreachable.items()]
    lines += [task_failure_line(f.host, f.task, f.message) for f in result.hard_failures()]
    return "\n".join(lines[:20]) or result.explanation


def _raise_for(result: RunResult, what: str, before_launch: bool = True) -> None:
    if result.ok:
        return
    if before_launch:
        what += " (nothing was launched)"
    detail = failure_detail(result)
    raise CheckFailed(
        f"{what} failed:\n{detail}", hint=f"ansible's output is in {result.artifact_dir}/stdout"
    )


def _playbook(
    request: DeployRequest, deploy_plan: Plan, playbook: str, label: str, limit: str | None = None
) -> RunResult:
    console.print(f"[bold]{label}[/bold]: {playbook} on {limit or ', '.join(deploy_plan.hosts)}")
    return run_playbook(
        playbook,
        inventory=request.inventory,
        runs_dir=request.runs_dir,
        limit=limit or deploy_plan.limit,
        extravars=deploy_plan.extravars,
        label=label,
        console=err_console,
    )


def wait_for_ranks(
    record: records.Deployment, inventory: dict[str, Any], timeout_s: float, started: float | None = None
) -> list[status.NodeReport]:
    """Read the ranks' status files until every rank of the run reported, up to `timeout_s` after `started`
    (time.monotonic(); default now); at least once, however little of that time is left."""
    targets = ssh_targets(inventory, record.hosts)
    deadline = (time.monotonic() if started is None else started) + timeout_s
    with err_console.status(f"waiting for {record.world_size} ranks to report") as spinner:
        while True:
            reports = status.collect(targets, record.run_dir)
            ranks = sum(len(r.ranks) for r in reports)
            spinner.update(f"{ranks}/{record.world_size} ranks reported")
            state = status.job_state(reports, record.world_size)
            if state == "failed":
                raise CheckFailed(f"run {record.run_id} failed while starting", hint="see `tooling status`")
            if ranks >= record.world_size and state in ("running", "completed", "stopped"):
                return reports
            if time.monotonic() >= deadline:
                break
            time.sleep(2)
    missing = [r.host for r in reports if r.error or not r.ranks]
    raise CheckFailed(
        f"only {sum(len(r.ranks) for r in reports)} of {record.world_size} ranks reported within "
        f"{timeout_s:.0f} s" + (f"; silent nodes: {', '.join(missing)}" if missing else ""),
        hint="see `tooling status` and the unit's journal (journalctl -u ddp-trainer) on those nodes",
    )


def launched_record(request: DeployRequest, result: RunResult) -> records.Deployment:
    """The record of the run launch.yml published (set_stats `ddp_launch`): its hosts, run directory and
    endpoints as the role derived them, never worked out again here."""
    published = result.published(LAUNCH_STATS_KEY)
    try:
        return records.Deployment(
            phase=str(published["phase"]),
            group=str(published["group"]),
            run_id=str(published["run_id"]),
            inventory=str(request.inventory.resolve()),
            hosts=[str(host) for host in published["hosts"]],
            run_root=str(published["run_root"]),
            world_size=int(published["world_size"]),
            rendezvous_endpoint=str(published["rendezvous_endpoint"]),
            metrics_endpoints=[str(url) for url in published["metrics_endpoints"]],
            fallback_from=request.fallback_from,
            overrides=list(request.overrides),
            config=str(request.config.resolve()) if request.config else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckFailed(
            f"playbooks/launch.yml finished without publishing the run it started (set_stats "
            f"{LAUNCH_STATS_KEY}: {type(exc).__name__} {exc}; got {published or 'nothing'})",
            hint=f"ansible's output is in {result.artifact_dir}/stdout; `tooling status` cannot find the run",
        ) from None


@dataclass(frozen=True)
class Step:
    """One playbook deploy runs before the launch, and what a failure of it is called."""

    playbook: str
    label: str
    limit: str
    what: str


def preparation_steps(request: DeployRequest, deploy_plan: Plan) -> list[Step]:
    """The playbooks deploy runs before verifying and launching (and `deploy --plan` checks), in order:
    provisioning (which configures too), else configuring unless the request says it is done already."""
    group, limit = deploy_plan.group, deploy_plan.limit
    monitored = group_exists(deploy_plan.inventory, "monitoring")
    if request.provision:
        # The monitoring host comes along so the phase is watched from its first step (idempotent).
        # Ansible applies a pattern's exclusions (:!node) last, whatever their place.
        limit += ":monitoring" if monitored else ""
        return [Step("site.yml", f"provision-{group}", limit, "provisioning")]
    if not request.configure:
        return []
    # A re-launch still points each node's launcher at this phase: provisioning another phase since
    # (phase 1 after 2a, say) rewrote node1's rendezvous and node count.
    steps = [Step("playbooks/trainer.yml", f"configure-{group}", limit, "configuring the trainer")]
    if monitored:
        # ... and Prometheus, which still scrapes the phase provisioned last.
        steps.append(
            Step("playbooks/targets.yml", f"targets-{group}", limit, "pointing Prometheus at the phase")
        )
    return steps


def _halt_excluded(request: DeployRequest, deploy_plan: Plan) -> None:
    """Say which nodes the phase runs without, and stop the trainer on them
    (playbooks/quarantine.yml): an agent left alive there would knock at the rendezvous of the run that
    goes on and could take a place in it. A node that cannot be reached is named, not fatal: a dead
    node's agent cannot rejoin either."""
    noted = {q.node: q for q in quarantine.load(request.inventory)}
    for host in deploy_plan.excluded:
        why = noted[host].describe() if host in noted else host
        console.print(
            f"[yellow]left out[/yellow]: {why}; phase {deploy_plan.phase} runs on "
            + ", ".join(deploy_plan.hosts)
        )
    result = _playbook(
        request, deploy_plan, "playbooks/quarantine.yml", "quarantine", ",".join(deploy_plan.excluded)
    )
    for host, reason in result.unreachable.items():
        console.print(f"[yellow]{host}: its trainer could not be halted (unreachable: {reason})[/yellow]")
    for failure in result.hard_failures():
        console.print(f"[yellow]{failure.host}: its trainer could not be halted: {failure.message}[/yellow]")


def deploy(request: DeployRequest, plan: PhasePlan, preflight: Preflight | None = None) -> records.Deployment:
    deploy_plan = build_plan(request, plan)
    # Before the first playbook: the example inventory's hosts would only answer "No route to host".
    refuse_placeholder_hosts(deploy_plan.inventory, deploy_plan.hosts, request.inventory)
    if deploy_plan.excluded:
        _halt_excluded(request, deploy_plan)
        # The pre-flight verification looks at the nodes that will run, not at the quarantined ones.
        request = replace(request, exclude=deploy_plan.excluded)
    for step in preparation_steps(request, deploy_plan):
        _raise_for(_playbook(request, deploy_plan, step.playbook, step.label, step.limit), step.what)
    if request.verify:
        if preflight is None:
            raise ToolingError(
                f"deploy of phase {request.phase}: verify is set but no pre-flight verification was given",
                hint="pass tooling.verify.run.preflight, or set verify=False to launch without it",
            )
        if preflight(request) != 0:
            raise CheckFailed(
                "pre-flight verification failed: nothing was launched",
                hint="fix the FAIL rows above, or pass --skip-verify to launch anyway",
            )
    launch_started = time.monotonic()
    launched = _playbook(request, deploy_plan, "playbooks/launch.yml", f"launch-{deploy_plan.group}")
    _raise_for(launched, "launch", before_launch=False)
    record = launched_record(request, launched)
    records.save(record)
    console.print(
        f"[bold]launched[/bold]: run {record.run_id} on {', '.join(record.hosts)}, "
        f"rendezvous {record.rendezvous_endpoint}"
    )
    # One --wait for the whole start: launch.yml's per-node wait took its part of it already.
    wait_for_ranks(record, deploy_plan.inventory, request.wait_s, started=launch_started)
    return record
