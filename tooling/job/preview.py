"""`tooling deploy --phase P --plan`: what a deploy would do, per node, changing and launching nothing.

Nothing here derives the launch a second time. The deploy is worked out by `build_plan` (run id, settings,
extra vars), exactly as a deploy does. Each node's launch comes from role ddp_trainer itself: playbooks/
plan.yml's work (the role's phase derivation, the `ddp_launch` filter over tooling/plan/launch.py, and the
node's launcher and environment files rendered from the templates configure and launch write on the node,
with the inventory's real host and group variables), done in one pass in this process, or by the play
itself where that pass cannot be exact (tooling.job.plan_source); it connects to no node. The command line
is then what that launcher's own `--dry-run` prints, run here in a scratch directory
(tooling.job.launcher_dry_runs); the environment is the files the unit reads (EnvironmentFile); the run
and checkpoint directories are what the trainer's config (ddp.config) makes of the launcher's settings.

Unless offline, the playbooks the deploy would run before launching (`preparation_steps`) then run in
check mode with diff, and what they would change is summarised per node and role. A node Ansible cannot
reach is named with Ansible's reason; everything else is still shown. Ansible's artifacts go to a
scratch directory that is removed: a plan leaves no state and no deployment record.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console

from tooling.console import ToolingError, err_console
from tooling.job.check_changes import HostChanges, delegate_names, merge, summarise
from tooling.job.deploy import DeployRequest, Plan, build_plan, preparation_steps
from tooling.job.launcher_dry_runs import command_lines
from tooling.job.plan_source import planned, preparing
from tooling.job.run_directories import PhaseDirectories
from tooling.plan.phases import PhasePlan
from tooling.runner import run_playbook

TRAINER_MODULE = "ddp.real_ddp_trainer"


@dataclass(frozen=True)
class NodePreview:
    host: str
    order: int  # 1-based position in the roll-out order; torchrun's c10d rendezvous assigns node ranks
    rendezvous_host: bool
    connection: dict[str, Any]  # how Ansible reaches the node: address, port, user, become
    address: str  # where the other nodes and Prometheus reach it (ddp_trainer_node_address)
    command: list[str]
    command_line: str  # as the launcher's --dry-run printed it
    environment: dict[str, str]
    run_dir: str
    checkpoint_dir: str
    metrics_endpoints: list[str]
    prometheus_targets: list[str]
    ansible: dict[str, Any]


@dataclass(frozen=True)
class DeployPreview:
    phase: str
    group: str
    run_id: str
    inventory: str
    offline: bool
    verification: str
    steps: list[dict[str, str]]  # the playbooks run before the launch
    nnodes: str
    nproc_per_node: int
    world_size: int
    rendezvous: dict[str, Any]
    config: str
    config_overrides: dict[str, Any]
    nodes: list[NodePreview]
    prometheus_targets: list[str]
    excluded: list[str] = field(default_factory=list)  # the phase's nodes left out (quarantined)
    other_hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. the monitoring host

    def as_dict(self) -> dict[str, Any]:
        """What dataclasses.asdict gives, without copying (its deep copy took a third of a second at a
        thousand nodes): the result is only read, to be shown."""
        shown = {item.name: getattr(self, item.name) for item in fields(self)}
        shown["nodes"] = [
            {item.name: getattr(node, item.name) for item in fields(node)} for node in self.nodes
        ]
        return shown

    @property
    def unreachable(self) -> list[str]:
        return [n.host for n in self.nodes if n.ansible.get("status") == "unreachable"]


def env_file_values(text: str) -> dict[str, str]:
    """KEY=value lines as the unit's EnvironmentFile and the launcher read them (taken literally)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            values[key.strip()] = value
    return values


def trainer_arguments(command: list[str]) -> tuple[str, list[str]]:
    """The trainer's --config and its --set items, from a torchrun command line."""
    try:
        args = command[command.index(TRAINER_MODULE) + 1 :]
    except ValueError:
        raise ToolingError(f"the launch command runs no -m {TRAINER_MODULE}: {shlex.join(command)}") from None
    config, sets = "", []
    items = iter(args)
    for flag in items:
        if flag == "--config":
            config = next(items, "")
        elif flag == "--set":
            sets.append(next(items, ""))
    return config, sets


def _connection(host_vars: Mapping[str, Any], host: str) -> dict[str, Any]:
    become = str(host_vars.get("ansible_become", False)).strip().lower() in ("1", "true", "yes", "on")
    return {
        "address": str(host_vars.get("ansible_host") or host),
        "port": int(host_vars.get("ansible_port") or 22),
        "user": host_vars.get("ansible_user"),  # None: ssh's own default
        "become": become,
        "become_user": (host_vars.get("ansible_become_user") or "root") if become else None,
    }


def ansible_state(host: str, changes: dict[str, HostChanges] | None, problems: list[str]) -> dict[str, Any]:
    """One host's part of the check run: offline (`changes` None), unreachable, not checked (`problems`
    say why), incomplete (check mode stopped at a task) or checked, with its changes per role."""
    if changes is None:
        return {"status": "offline", "reason": "--offline: no node was connected to"}
    found = changes.get(host)
    if found is None:
        reason = "; ".join(problems) or "the check-mode run reported nothing for this host"
        return {"status": "not checked", "reason": reason}
    if found.unreachable:
        return {"status": "unreachable", "reason": found.unreachable}
    status = "incomplete" if found.failures else "checked"
    return {"status": status, **found.as_dict()}


def _check(
    request: DeployRequest, deploy_plan: Plan, runs_dir: Path, progress: Console | None
) -> tuple[dict[str, HostChanges], list[str]]:
    """What the deploy's playbooks would change, run in check mode with diff; and why a playbook ran on no
    host at all (then every node says so, and the launch is still shown)."""
    changes: dict[str, HostChanges] = {}
    problems: list[str] = []
    names = delegate_names((deploy_plan.inventory.get("_meta") or {}).get("hostvars") or {})
    for step in preparation_steps(request, deploy_plan):
        result = run_playbook(
            step.playbook,
            inventory=request.inventory,
            runs_dir=runs_dir,
            limit=step.limit,
            extravars=deploy_plan.extravars,
            check=True,
            diff=True,
            label=f"check-{step.label}",
            console=progress,
            progress=progress is not None,
        )
        if not any((event.get("event_data") or {}).get("host") for event in result.events):
            problems.append(f"{step.playbook} --check did not run: {result.explanation}")
        merge(changes, summarise(result.events, names))
    return changes, problems


def preview(
    request: DeployRequest,
    plan: PhasePlan,
    *,
    verification: Callable[[dict[str, Any]], str],
    offline: bool = False,
    progress: Console | None = err_console,
) -> DeployPreview:
    """The deploy of `request`, worked out per node. `verification` names the pre-flight check the deploy
    runs for the loaded inventory (it lives a layer above jobs: tooling.verify)."""
    prepared = preparing()  # while build_plan lists the inventory
    deploy_plan = build_plan(request, plan, out=err_console)
    with tempfile.TemporaryDirectory(prefix="tooling-plan-") as scratch:
        work = Path(scratch)
        published = planned(request, deploy_plan, work / "ansible", progress, err_console, prepared)
        launch, files = published["launch"], published["nodes"]
        changes, problems = (
            (None, []) if offline else _check(request, deploy_plan, work / "ansible", progress)
        )
        hostvars = (deploy_plan.inventory.get("_meta") or {}).get("hostvars") or {}
        nodes = []
        directories = PhaseDirectories(launch)
        commands = command_lines(files, launch["addresses"], launch["hosts"], work / "launchers")
        # Each node's ranks, in one pass over the targets (a scan per node grows with the square of nodes).
        ranks_of: dict[str, list[tuple[str, str]]] = {host: [] for host in launch["hosts"]}
        for target, url in zip(launch["metrics_targets"], launch["metrics_endpoints"], strict=True):
            ranks_of[target["node"]].append((target["target"], url))
        for order, host in enumerate(launch["hosts"], start=1):
            command, line = commands[host]
            _, sets = trainer_arguments(command)
            run_dir, checkpoint_dir = directories(files[host].get("config_overrides") or {}, sets, work)
            ranks = ranks_of[host]
            nodes.append(
                NodePreview(
                    host=host,
                    order=order,
                    rendezvous_host=host == launch["rdzv_host"],
                    connection=_connection(hostvars.get(host) or {}, host),
                    address=launch["addresses"][host],
                    command=command,
                    command_line=line,
                    environment={
                        key: value
                        for name in files[host]["environment_files"]
                        for key, value in env_file_values(files[host]["files"][name]).items()
                    },
                    run_dir=run_dir,
                    checkpoint_dir=checkpoint_dir,
                    metrics_endpoints=[url for _, url in ranks],
                    prometheus_targets=[target for target, _ in ranks],
                    ansible=ansible_state(host, changes, problems),
                )
            )
    others = {h: ansible_state(h, changes, problems) for h in changes or {} if h not in launch["hosts"]}
    return DeployPreview(
        phase=deploy_plan.phase,
        group=deploy_plan.group,
        run_id=str(published["run_id"]),
        inventory=str(request.inventory),
        offline=offline,
        verification=verification(deploy_plan.inventory),
        steps=[{"playbook": s.playbook, "limit": s.limit} for s in preparation_steps(request, deploy_plan)],
        excluded=[str(h) for h in launch["excluded"]],
        nnodes=str(launch["nnodes"]),
        nproc_per_node=int(launch["nproc_per_node"]),
        world_size=int(launch["world_size"]),
        rendezvous={
            "backend": launch["rdzv_backend"],
            "endpoint": launch["rdzv_endpoint"],
            "host": launch["rdzv_host"],
            "conf": launch["rdzv_conf"],
        },
        config=str(launch["config"]),
        config_overrides=dict(deploy_plan.extravars.get("ddp_trainer_config_overrides") or {}),
        nodes=nodes,
        prometheus_targets=[t["target"] for t in launch["metrics_targets"]],
        other_hosts=others,
    )
