"""A phase's launch, derived once: its nodes in roll-out order, the torchrun rendezvous, each node's address,
the ranks' metrics ports and endpoints, and the run root.

Role ddp_trainer (tasks/phase.yml, the launcher template), the Prometheus targets (role prometheus, entry
point `targets`) and `tooling deploy` all call `derive_launch`; the roles through the `ddp_launch` filter
(plugins/filter/ddp_launch.py), so the numbers in tooling/phases.yml and the inventory are read in one place.
The plan's own defaults (rendezvous port, metrics base port...) live in tooling/plan/phases.py's models, the
run root's in roles/ddp_trainer/defaults/main.yml.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ddp import rendezvous_poll
from ddp.config_errors import ConfigError, load_yaml_mapping
from tooling.plan.phases import PROJECT_ROOT, PhasePlan

# The role's defaults file is the one place the run root's default is written; everything else reads it.
TRAINER_DEFAULTS = PROJECT_ROOT / "roles" / "ddp_trainer" / "defaults" / "main.yml"
RUN_ROOT_KEY = "ddp_trainer_run_root"
# Inventory group listing the training nodes in roll-out order (role ddp_trainer's ddp_trainer_nodes_group).
NODES_GROUP = "nodes"


class LaunchError(ValueError):
    """The plan and the inventory do not make a launch; the message names the group, hosts and setting."""


def _default_run_root(defaults_file: Path = TRAINER_DEFAULTS) -> str:
    value = load_yaml_mapping(defaults_file).get(RUN_ROOT_KEY)
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(defaults_file, [f"{RUN_ROOT_KEY}: expected an absolute path (got {value!r})"])
    return value


# `ddp_trainer_run_root` as role ddp_trainer's defaults set it.
DEFAULT_RUN_ROOT = _default_run_root()


def run_root(value: object = None) -> str:
    """A host's run root: its own `ddp_trainer_run_root` when it sets one, else the role's default."""
    return str(value) if value else DEFAULT_RUN_ROOT


def node_address(host: str, host_vars: Mapping[str, Any]) -> str:
    """The address other nodes and Prometheus reach `host` on: ddp_trainer_node_address, else ansible_host."""
    for key in ("ddp_trainer_node_address", "ansible_host"):
        value = host_vars.get(key)
        if value:
            return str(value)
    return host


def host_port(address: str, port: int) -> str:
    """`address:port`, with an IPv6 address in brackets (as torchrun's --rdzv-endpoint, Prometheus targets
    and URLs need it); an address already bracketed is kept as it is."""
    if address.startswith("["):
        return f"{address}:{port}"
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class MetricsTarget:
    node: str
    local_rank: int
    target: str  # address:port, as Prometheus scrapes it


@dataclass(frozen=True)
class Launch:
    """What a phase's launch is. `as_vars()` is the form the roles read (`_ddp_trainer_launch`)."""

    phase: str
    group: str
    hosts: list[str]  # roll-out order: the first hosts the rendezvous unless one is named
    excluded: list[str]  # nodes of the phase's group left out (quarantined): the run goes on without them
    nnodes: str  # torchrun --nnodes MIN:MAX
    nproc_per_node: int
    config: str
    rdzv_backend: str
    rdzv_host: str
    rdzv_port: int
    rdzv_endpoint: str
    rdzv_conf: str  # torchrun --rdzv-conf; the timeouts the plan leaves out keep torchrun's defaults
    join_timeout_s: int
    max_restarts: int
    monitor_interval_s: float
    disable_shared_tcp_store: bool
    addresses: dict[str, str]
    metrics_base_port: int
    metrics_ports: list[int]
    metrics_targets: list[MetricsTarget]
    run_root: str

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.nproc_per_node

    @property
    def metrics_endpoints(self) -> list[str]:
        return [f"http://{t.target}/metrics" for t in self.metrics_targets]

    def as_vars(self) -> dict[str, Any]:
        # What dataclasses.asdict gives, without its recursive deep copy (tens of milliseconds at a thousand
        # nodes): the fields hold flat lists and dicts of strings and numbers, copied one level, and the
        # targets.
        values = {}
        for item in fields(self):
            value = getattr(self, item.name)
            values[item.name] = (
                list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
            )
        values["metrics_targets"] = [dict(vars(target)) for target in self.metrics_targets]
        return {**values, "world_size": self.world_size, "metrics_endpoints": self.metrics_endpoints}


def ansible_groups(inventory: Mapping[str, Any]) -> dict[str, list[str]]:
    """Ansible's `groups` variable from `ansible-inventory --list` output: every group's hosts, its own
    first, then its children's level by level (Ansible's order for nested groups), each host once."""
    groups: dict[str, list[str]] = {}
    for name, entry in inventory.items():
        if name == "_meta" or not isinstance(entry, Mapping):
            continue
        # A dict keeps the hosts' order and each once, in one pass (a list's `in` grows with the square).
        hosts: dict[str, None] = {}
        level, seen_groups = [name], {name}
        while level:
            following: list[str] = []
            for group in level:
                body = inventory.get(group) or {}
                hosts.update(dict.fromkeys(body.get("hosts") or []))
                following += [c for c in body.get("children") or [] if c not in seen_groups]
                seen_groups.update(following)
            level = following
        groups[name] = list(hosts)
    return groups


def _phase_name(plan: PhasePlan, phase: str, groups: Mapping[str, Sequence[str]], play: Sequence[str]) -> str:
    known = ", ".join(plan.phases)
    if phase:
        if phase not in plan.phases:
            raise LaunchError(f"phase {phase!r} is not in the plan; expected one of: {known}")
        return phase
    for name, spec in plan.phases.items():
        if sorted(groups.get(spec.group) or []) == sorted(play):
            return name
    layout = "; ".join(
        f"{name}: {spec.group}={'+'.join(sorted(groups.get(spec.group) or []))}"
        for name, spec in plan.phases.items()
    )
    raise LaunchError(
        f"Cannot tell which phase to deploy: the play's hosts {', '.join(sorted(play))} are not exactly the "
        f"hosts of any phase group ({layout}). Limit the play to one phase group (-l phase2a) or pass "
        "-e ddp_trainer_phase=2a."
    )


def derive_launch(
    plan: PhasePlan,
    groups: Mapping[str, Sequence[str]],
    hostvars: Mapping[str, Mapping[str, Any]],
    *,
    phase: str = "",
    play_hosts: Sequence[str] | None = None,
    nodes_group: str = NODES_GROUP,
    rendezvous_host: str = "",
    exclude: Sequence[str] = (),
) -> Launch:
    """The launch of `phase` (or, when empty, of the phase whose group is exactly `play_hosts`).

    `groups` is Ansible's `groups` variable (or `ansible_groups(inventory)`), `hostvars` its `hostvars`.
    The phase's nodes come in the order of `nodes_group`, then any others of its group; with `play_hosts`
    every one of them must be in the play. `exclude` names nodes of the group to leave out (quarantined):
    the launch is then that of the nodes left, with the world size they give (torchrun's --nnodes MIN:MAX
    at most their number), and an excluded rendezvous host hands the rendezvous to the first node left.
    """
    if not phase and play_hosts is None:
        raise LaunchError("no phase given and no play hosts to derive it from")
    name = _phase_name(plan, phase, groups, play_hosts or [])
    spec = plan.get(name)
    if spec.group not in groups:
        raise LaunchError(f"the inventory has no group {spec.group!r} for phase {name}")
    members = list(groups[spec.group])
    # Sets for every membership test below: at a thousand nodes a list's `in` grows with the square.
    member_set = set(members)
    ordered = [h for h in groups.get(nodes_group) or [] if h in member_set]
    ordered_set = set(ordered)
    hosts = ordered + [h for h in members if h not in ordered_set]
    if len(hosts) != spec.nodes:
        raise LaunchError(
            f"phase {name} needs {spec.nodes} node(s) in group {spec.group!r} (nodes: in the plan); the "
            f"inventory has {len(hosts)}: {', '.join(hosts) or 'none'}"
        )
    host_set, exclude_set = set(hosts), set(exclude)
    strangers = [h for h in exclude if h not in host_set]
    if strangers:
        raise LaunchError(
            f"cannot exclude {', '.join(strangers)}: not a node of phase {name} ({', '.join(hosts)})"
        )
    if rendezvous_host and rendezvous_host not in host_set:
        raise LaunchError(
            f"ddp_trainer_rendezvous_host {rendezvous_host!r} is not a node of phase {name} "
            f"({', '.join(hosts)})"
        )
    excluded = [h for h in hosts if h in exclude_set]
    hosts = [h for h in hosts if h not in exclude_set]
    if not hosts:
        raise LaunchError(
            f"phase {name}: every node is excluded ({', '.join(excluded)}); nothing is left to run on"
        )
    in_play = set(play_hosts or [])
    missing = [h for h in hosts if play_hosts is not None and h not in in_play]
    if missing:
        raise LaunchError(
            f"phase {name}: every node of group {spec.group!r} must be in the play; missing: "
            f"{', '.join(missing)} (check -l; a node left out on purpose goes in ddp_trainer_exclude)"
        )
    rdzv_host = rendezvous_host if rendezvous_host in hosts else hosts[0]
    addresses = {h: node_address(h, hostvars.get(h) or {}) for h in hosts}
    rdzv = plan.rendezvous
    endpoint = host_port(addresses[rdzv_host], rdzv.port)
    if len(hosts) > 1 and _is_loopback(addresses[rdzv_host]):
        raise LaunchError(
            f"phase {name}: the rendezvous address {endpoint} (of {rdzv_host}) is a loopback address the "
            "other nodes cannot reach; ansible_host is probably a port forward. Set ddp_trainer_node_address "
            "per host to its address on the cluster network."
        )
    conf = [f"join_timeout={rdzv.join_timeout_s}"]
    conf += [] if rdzv.last_call_timeout_s is None else [f"last_call_timeout={rdzv.last_call_timeout_s}"]
    conf += [] if rdzv.read_timeout_s is None else [f"read_timeout={rdzv.read_timeout_s}"]
    if rdzv.backend == rendezvous_poll.BACKEND:
        # A node waiting in a round reads it as often as a healthy agent reads the store (torch: 1 s).
        poll = min(rdzv.monitor_interval_s, rendezvous_poll.TORCH_SYNC_WAIT_S)
        conf.append(f"{rendezvous_poll.POLL_KEY}={poll:g}")
    base = plan.metrics.base_port
    ports = [base + i for i in range(spec.nproc_per_node)]
    return Launch(
        phase=name,
        group=spec.group,
        hosts=hosts,
        excluded=excluded,
        nnodes=f"{min(spec.min_nodes, len(hosts))}:{len(hosts)}",
        nproc_per_node=spec.nproc_per_node,
        config=spec.config,
        rdzv_backend=rdzv.backend,
        rdzv_host=rdzv_host,
        rdzv_port=rdzv.port,
        rdzv_endpoint=endpoint,
        rdzv_conf=",".join(conf),
        join_timeout_s=rdzv.join_timeout_s,
        max_restarts=rdzv.max_restarts,
        monitor_interval_s=rdzv.monitor_interval_s,
        disable_shared_tcp_store=rdzv.disable_shared_tcp_store,
        addresses=addresses,
        metrics_base_port=base,
        metrics_ports=ports,
        metrics_targets=[
            MetricsTarget(h, i, host_port(addresses[h], port)) for h in hosts for i, port in enumerate(ports)
        ],
        run_root=run_root((hostvars.get(hosts[0]) or {}).get(RUN_ROOT_KEY)),
    )
