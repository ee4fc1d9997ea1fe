"""What a phase node's firewall lets in, derived from the phase's launch: which TCP ports are open to whom.

Role firewall (its `ddp_firewall` filter, plugins/filter/ddp_firewall.py) turns this into one nftables table.
Nothing here is read a second way: the phase's nodes, their addresses, the rendezvous port and the ranks'
metrics ports are `derive_launch`'s (tooling/plan/launch.py, what the launcher and the Prometheus targets
use); the monitoring hosts' addresses are `node_address`'s, the one rule for "the address a host is
reached at".

Two source sets: the phase's *members* (its nodes) and the *watchers* (the members and the monitoring
hosts, where Prometheus scrapes from). The rendezvous store, the collectives' ports and the verification
probes take members only; the trainer's metrics ports and node_exporter take watchers. Every port the
plan names is dropped from anyone else, whatever the chain's policy.

Gloo's TCP pairs, NCCL's socket transport and bootstrap, and torchrun's per-round worker store
(TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: `RendezvousStoreInfo.build` takes `get_free_port()`, a bind to port 0)
all listen on ports the kernel picks from net.ipv4.ip_local_port_range; neither torch nor NCCL has a
setting that fixes them. The collectives' opening is therefore that whole range, from members only.
Replies to the node's own outgoing connections come back to the same range and stay accepted as
established traffic.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tooling.plan.launch import node_address

Source = Literal["members", "watchers"]
MEMBERS: Source = "members"
WATCHERS: Source = "watchers"
SSH = "ssh"
# `firewall_ssh_sources: [any]`: SSH from anywhere (the default: the operator is never locked out by it).
ANY = "any"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FirewallError(ValueError):
    """The inputs do not make a firewall that keeps the job and the operator working; the message names
    the host, setting and value."""


@dataclass(frozen=True)
class Opening:
    """TCP ports first..last, let in from one source set (`members` or `watchers`) and dropped from anyone
    else; `listener` says who listens there (the ruleset's comments)."""

    listener: str
    first: int
    last: int
    sources: Source

    @property
    def ports(self) -> str:
        """nftables' spelling: one port or FIRST-LAST."""
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class AddressSet:
    """One nftables set of the table: `<source>_v4` or `<source>_v6`."""

    name: str
    type: Literal["ipv4_addr", "ipv6_addr"]
    interval: bool  # networks (CIDR) allowed: the SSH sources
    elements: list[str]


@dataclass(frozen=True)
class FirewallPlan:
    phase: str
    members: dict[str, str]  # host -> address, roll-out order
    monitoring: dict[str, str]
    openings: list[Opening]
    sets: list[AddressSet]
    ssh_port: int
    ssh_any: bool

    def as_vars(self) -> dict[str, Any]:
        return {**asdict(self), "openings": [{**asdict(o), "ports": o.ports} for o in self.openings]}


def _port(value: object, setting: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise FirewallError(f"{setting}: expected a TCP port from 1 to 65535 (got {value!r})") from None
    if not 1 <= port <= 65535:
        raise FirewallError(f"{setting}: expected a TCP port from 1 to 65535 (got {port})")
    return port


def port_range(value: object, setting: str) -> tuple[int, int]:
    """`LOW-HIGH`, or `LOW HIGH` as /proc/sys/net/ipv4/ip_local_port_range writes it."""
    parts = str(value).replace("-", " ").split()
    if len(parts) != 2:
        raise FirewallError(f"{setting}: expected a port range LOW-HIGH (got {value!r})")
    first, last = (_port(part, setting) for part in parts)
    if first > last:
        raise FirewallError(f"{setting}: the range {first}-{last} ends before it starts")
    return first, last


def source_address(host: str, address: str, setting: str) -> IPAddress:
    """A host's address as the firewall admits it: an IP address, never a name (nft would resolve it once,
    at load time, through whatever DNS the node has) and never a wildcard."""
    try:
        parsed = ipaddress.ip_address(address.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        raise FirewallError(
            f"host {host}: {setting} {address!r} is not an IP address; the firewall admits addresses only. "
            "Set ddp_trainer_node_address (or ansible_host) of that host to its address on the cluster "
            "network"
        ) from None
    if parsed.is_unspecified:
        raise FirewallError(
            f"host {host}: {setting} {address!r} is a wildcard address; it would admit every source"
        )
    return parsed


def _ssh_networks(sources: Sequence[str]) -> list[IPNetwork] | None:
    """The networks SSH is let in from; None for anywhere (`[any]`)."""
    values = [str(s).strip() for s in sources]
    if not values:
        raise FirewallError(
            "firewall_ssh_sources: empty; list the addresses or networks the operators log in from, "
            "or [any] to keep SSH open to everyone"
        )
    if ANY in values:
        if values != [ANY]:
            raise FirewallError(f"firewall_ssh_sources: `any` stands alone (got {values})")
        return None
    networks: list[IPNetwork] = []
    for value in values:
        try:
            network = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise FirewallError(
                f"firewall_ssh_sources: {value!r} is not an address or network ({exc})"
            ) from None
        if network.prefixlen == 0:
            raise FirewallError(f"firewall_ssh_sources: {value!r} is everyone; write [any] to mean that")
        networks.append(network)
    return networks


def _order(value: IPAddress | IPNetwork) -> tuple[int, int, int]:
    """Numeric order (10.0.0.2 before 10.0.0.100), addresses and networks alike."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value.version, int(value.network_address), value.prefixlen
    return value.version, int(value), value.max_prefixlen


def _by_family(
    name: str, addresses: Iterable[IPAddress | IPNetwork], *, interval: bool = False
) -> list[AddressSet]:
    items = sorted(set(addresses), key=_order)
    return [
        AddressSet(f"{name}_v4", "ipv4_addr", interval, [str(a) for a in items if a.version == 4]),
        AddressSet(f"{name}_v6", "ipv6_addr", interval, [str(a) for a in items if a.version == 6]),
    ]


def _operator_admitted(address: str, networks: list[IPNetwork] | None, port: int) -> None:
    """Refuse a ruleset that would cut off the SSH connection the play itself came in on."""
    if networks is None or not address:
        return
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise FirewallError(f"the operator's address {address!r} (SSH_CLIENT) is not an IP address") from None
    if not any(parsed in network for network in networks):
        raise FirewallError(
            f"firewall_ssh_sources: this play reaches the node over SSH from {address}, which none of "
            f"{', '.join(str(n) for n in networks)} contains; loading the ruleset would drop the next "
            f"connection to port {port}. Add that address (or its network) to firewall_ssh_sources"
        )


def firewall_plan(
    launch: Mapping[str, Any],
    *,
    monitoring_hosts: Sequence[str],
    hostvars: Mapping[str, Mapping[str, Any]],
    node_exporter_port: object,
    collective_ports: object,
    probe_ports: Mapping[str, object],
    ssh_port: object,
    ssh_sources: Sequence[str],
    operator_address: str = "",
) -> FirewallPlan:
    """The openings of a phase node. `launch` is `derive_launch(...).as_vars()` (the `ddp_launch` filter's
    value); `monitoring_hosts` the inventory group Prometheus runs on; `collective_ports` the node's
    net.ipv4.ip_local_port_range; `probe_ports` the verification probes' ports by name;
    `operator_address` the address the play's SSH connection comes from (empty: not over SSH)."""
    members = {str(h): str(a) for h, a in (launch.get("addresses") or {}).items()}
    if not members:
        raise FirewallError(f"phase {launch.get('phase')}: no member nodes; the firewall would admit no one")
    monitoring = {str(h): node_address(str(h), hostvars.get(h) or {}) for h in monitoring_hosts}
    if not monitoring:
        raise FirewallError(
            "the monitoring group has no hosts: Prometheus could not scrape the trainer or node_exporter"
        )
    member_ips = [source_address(h, a, "node address") for h, a in members.items()]
    watcher_ips = member_ips + [source_address(h, a, "monitoring address") for h, a in monitoring.items()]

    metrics_ports = [int(p) for p in launch["metrics_ports"]]
    first_metrics, last_metrics = min(metrics_ports), max(metrics_ports)
    low, high = port_range(collective_ports, "net.ipv4.ip_local_port_range")
    rendezvous = _port(launch["rdzv_port"], "rendezvous.port")
    node_exporter = _port(node_exporter_port, "node_exporter_port")
    openings = [
        Opening("torchrun rendezvous store (c10d)", rendezvous, rendezvous, MEMBERS),
        Opening("Gloo/NCCL pairs and torchrun's worker store (kernel-chosen ports)", low, high, MEMBERS),
        *(
            Opening(name, port, port, MEMBERS)
            for name, port in sorted((n, _port(p, f"probe port {n}")) for n, p in probe_ports.items())
        ),
        Opening(
            "trainer metrics, one port per local rank",
            _port(first_metrics, "metrics.base_port"),
            _port(last_metrics, "metrics.base_port + local rank"),
            WATCHERS,
        ),
        Opening("node_exporter", node_exporter, node_exporter, WATCHERS),
    ]
    ssh = _port(ssh_port, "firewall_ssh_port")
    networks = _ssh_networks(ssh_sources)
    _operator_admitted(operator_address, networks, ssh)
    sets = [
        *_by_family(MEMBERS, member_ips),
        *_by_family(WATCHERS, watcher_ips),
        *_by_family(SSH, networks or [], interval=True),
    ]
    return FirewallPlan(
        phase=str(launch["phase"]),
        members=members,
        monitoring=monitoring,
        openings=openings,
        sets=sets,
        ssh_port=ssh,
        ssh_any=networks is None,
    )
