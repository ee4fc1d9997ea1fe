"""Fixed addresses: a node keeps its address across restarts, so an address-based inventory stays true.

Inside the subnet the monitoring host takes .10 and nodeN takes .10+N (the gateway keeps .1).
Rootless podman cannot route from the host into a container network, so there each host's sshd is
also published on 127.0.0.1 at SSH_PORT_BASE + the same offset.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from tooling.console import ToolingError
from tooling.sandbox.settings import MONITOR_HOST

FIRST_OFFSET = 10
SSH_PORT_BASE = int(os.environ.get("DDP_SANDBOX_SSH_PORT_BASE", "22200"))


@dataclass(frozen=True)
class Endpoint:
    """Where a host lives on the sandbox network and where the control machine reaches its sshd."""

    address: str
    ssh_host: str
    ssh_port: int = 22
    published_port: int | None = None  # host port published for sshd (rootless only)


def host_offset(host: str) -> int:
    if host == MONITOR_HOST:
        return FIRST_OFFSET
    if host.startswith("node") and host[4:].isdigit() and int(host[4:]) > 0:
        return FIRST_OFFSET + int(host[4:])
    raise ValueError(f"unknown sandbox host name {host!r}")


def parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise ToolingError(
            f"subnet {subnet!r} is not a valid network: {exc}", hint="pass e.g. --subnet 10.213.31.0/24"
        ) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ToolingError(f"subnet {subnet!r} is IPv6; the sandbox needs an IPv4 subnet")
    return network


def allocate(subnet: str, hosts: list[str], *, rootless: bool = False) -> dict[str, Endpoint]:
    network = parse_subnet(subnet)
    usable = network.num_addresses - 2
    endpoints: dict[str, Endpoint] = {}
    for host in hosts:
        offset = host_offset(host)
        if offset > usable:
            raise ToolingError(
                f"subnet {subnet} has {usable} usable addresses; {host} needs offset {offset}",
                hint="use a larger subnet (a /24 holds up to 89 nodes)",
            )
        address = str(network.network_address + offset)
        if rootless:
            port = SSH_PORT_BASE + offset
            endpoints[host] = Endpoint(address, "127.0.0.1", port, port)
        else:
            endpoints[host] = Endpoint(address, address)
    return endpoints
