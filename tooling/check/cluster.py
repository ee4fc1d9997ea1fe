"""What a check run looks at: the phase's nodes (how to SSH to them, the address the other nodes use), the
active run of that phase (from the deployment record), the rendezvous endpoint, Prometheus' URL and how to
get in (PrometheusAccess).

Values come from the inventory's host variables the way the roles read them; a value that is still a
Jinja template in the inventory (group_vars) cannot be evaluated here, so the next source is used.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tooling.console import ToolingError
from tooling.inventory import (
    group_exists,
    group_hosts,
    phase_hosts,
    refuse_placeholder_hosts,
    ssh_targets,
)
from tooling.inventory_values import is_template
from tooling.job import records
from tooling.plan.launch import DEFAULT_RUN_ROOT, host_port
from tooling.plan.phases import PhasePlan
from tooling.prometheus_api import PrometheusAccess
from tooling.remote import SshTarget

DEFAULT_VENV = "/opt/ddp/venv"  # pytorch_venv_path's default in roles/pytorch
DEFAULT_PROMETHEUS_PORT = 9090  # prometheus_port's default in roles/prometheus
MONITORING_GROUP = "monitoring"


@dataclass(frozen=True)
class Node:
    name: str
    ssh: SshTarget
    address: str  # where the other nodes reach it
    ssh_port: int  # its sshd as the other nodes see it
    python: str  # the trainer venv's interpreter


@dataclass(frozen=True)
class Rendezvous:
    host: str
    address: str
    port: int


@dataclass(frozen=True)
class Cluster:
    inventory_path: Path
    phase: str
    nproc_per_node: int
    nodes: list[Node]
    run: records.Deployment | None
    run_note: str  # why there is no run to look at, when there is none
    run_root: str
    rendezvous: Rendezvous
    prometheus_url: str | None
    prometheus_source: str
    prometheus_access: PrometheusAccess = field(default_factory=PrometheusAccess)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * len(self.nodes)

    @property
    def hosts(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    @property
    def disk_path(self) -> str:
        """The directory whose filesystem holds the checkpoints (the run's, else the run root)."""
        return self.run.run_dir if self.run else self.run_root


def plain(value: Any) -> str | None:
    """An inventory value usable as is: set, and not a template only Ansible can render."""
    if value is None:
        return None
    text = str(value).strip()
    return None if not text or is_template(text) else text


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def node_address(name: str, hostvars: dict[str, Any]) -> tuple[str, int]:
    """The address and sshd port other nodes use: ddp_trainer_node_address as the roles do, else
    ansible_host unless it is a loopback port forward (then the sandbox's own network address)."""
    explicit = plain(hostvars.get("ddp_trainer_node_address"))
    if explicit:
        return explicit, 22
    ansible_host = plain(hostvars.get("ansible_host"))
    if ansible_host and not _is_loopback(ansible_host):
        return ansible_host, int(hostvars.get("ansible_port", 22))
    fallback = plain(hostvars.get("sandbox_address"))
    if fallback:
        return fallback, 22
    return ansible_host or name, int(hostvars.get("ansible_port", 22))


def node_python(hostvars: dict[str, Any]) -> str:
    venv = plain(hostvars.get("ddp_trainer_venv_path")) or plain(hostvars.get("pytorch_venv_path"))
    return f"{(venv or DEFAULT_VENV).rstrip('/')}/bin/python"


def prometheus_url(inventory: dict[str, Any]) -> tuple[str | None, str]:
    """Prometheus on the inventory's monitoring host, as roles/prometheus configures it (https when the
    host has prometheus_tls_cert_file)."""
    if not group_exists(inventory, MONITORING_GROUP):
        return None, f"the inventory has no {MONITORING_GROUP!r} group and --prometheus was not given"
    host = group_hosts(inventory, MONITORING_GROUP)[0]
    hostvars = ((inventory.get("_meta") or {}).get("hostvars") or {}).get(host) or {}
    address = plain(hostvars.get("prometheus_listen_address")) or node_address(host, hostvars)[0]
    port = int(plain(hostvars.get("prometheus_port")) or DEFAULT_PROMETHEUS_PORT)
    scheme = "https" if plain(hostvars.get("prometheus_tls_cert_file")) else "http"
    return f"{scheme}://{host_port(address, port)}", f"monitoring host {host}"


def active_run(
    inventory_path: Path, phase: str | None, state_dir: Path
) -> tuple[records.Deployment | None, str]:
    try:
        record = records.load(inventory_path, state_dir)
    except ToolingError as exc:
        return None, str(exc)
    if phase is not None and record.phase != phase:
        return None, f"the active run {record.run_id} belongs to phase {record.phase}, not {phase}"
    return record, ""


def resolve(
    inventory: dict[str, Any],
    inventory_path: Path,
    plan: PhasePlan,
    phase: str | None,
    state_dir: Path,
    prometheus: str | None = None,
    prometheus_access: PrometheusAccess | None = None,
) -> Cluster:
    run, note = active_run(inventory_path, phase, state_dir)
    chosen = phase or (run.phase if run else None)
    if chosen is None:
        raise ToolingError(
            f"no phase to check: {note}",
            hint="pass --phase P (1, 2a, 2b or 2c)",
        )
    plan_phase = plan.get(chosen)
    hosts = phase_hosts(inventory, chosen, plan_phase, inventory_path)
    refuse_placeholder_hosts(inventory, hosts, inventory_path)
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    nodes = []
    for target in ssh_targets(inventory, hosts):
        host_vars = hostvars.get(target.name) or {}
        address, port = node_address(target.name, host_vars)
        nodes.append(Node(target.name, target, address, port, node_python(host_vars)))
    first_vars = hostvars.get(hosts[0]) or {}
    rdzv_host = plain(first_vars.get("ddp_trainer_rendezvous_host")) or hosts[0]
    if rdzv_host not in hosts:
        rdzv_host = hosts[0]
    rdzv_address = next(n.address for n in nodes if n.name == rdzv_host)
    url, source = (prometheus, "--prometheus") if prometheus else prometheus_url(inventory)
    return Cluster(
        inventory_path=inventory_path,
        phase=chosen,
        nproc_per_node=plan_phase.nproc_per_node,
        nodes=nodes,
        run=run,
        run_note=note,
        run_root=run.run_root if run else plain(first_vars.get("ddp_trainer_run_root")) or DEFAULT_RUN_ROOT,
        rendezvous=Rendezvous(rdzv_host, rdzv_address, plan.rendezvous.port),
        prometheus_url=url.rstrip("/") if url else None,
        prometheus_source=source,
        prometheus_access=prometheus_access or PrometheusAccess(),
    )
