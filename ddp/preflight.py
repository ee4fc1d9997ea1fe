"""Checks a node runs before torchrun starts: are the ports this node's part of the job needs free?

    python -m ddp.preflight --node node1 --nproc-per-node 4 [--rdzv-port 29400] \\
        --plan-metrics-base-port 9500 --config /etc/ddp/trainer.yaml [--set KEY.PATH=VALUE ...]

The node launcher (roles/ddp_trainer/templates/ddp-launch.j2) runs it with the trainer's own arguments, so
the metrics ports checked are the ones the trainer will bind (a run's --set may move them). A taken port is
reported with its setting and the process holding it, and the exit status is 2; nothing is reported for
ports that are free. Light on purpose (no torch import): it runs on every launch.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from ddp.addresses import resolve_bind_address
from ddp.config import MetricsSection, load_config
from ddp.config_errors import ConfigError

EXIT_PROBLEM = 2
Warn = Callable[[str], None]


class PreflightError(Exception):
    """A check could not be made (bad arguments or trainer config); the message is printable."""


def port_holder(port: int) -> str:
    """Who listens on `port` (complete for root; another account sees only its own processes' sockets)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port or conn.pid is None:
            continue
        try:
            command = " ".join(psutil.Process(conn.pid).cmdline())
        except psutil.Error:  # gone since, or not ours to read
            continue
        return f"pid {conn.pid} ({command[:100]})"
    return f"another process (`ss -ltnp 'sport = :{port}'` as root names it)"


def port_taken(address: str, port: int, family: int = 0, warn: Warn | None = None) -> bool:
    """True when a socket of this node holds `address:port`; False when it is free, or when the test
    cannot tell (an address that is not this node's: the trainer then reports that itself). `warn` hears
    why a test could not be made."""
    try:
        infos = socket.getaddrinfo(address, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        if warn:
            warn(f"cannot resolve {address}: {exc}")
        return False
    fam, kind, proto, _, sockaddr = infos[0]
    with socket.socket(fam, kind, proto) as sock:
        # As the trainer's servers do, so a closed connection in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if warn:
                warn(f"cannot test {address}:{port}: {exc.strerror}")
            return False
    return False


@dataclass(frozen=True)
class PortPlan:
    """The ports one node's part of the job listens on."""

    node: str
    nproc_per_node: int
    rdzv_port: int | None  # only on the node that hosts the rendezvous, and not for --standalone
    metrics: MetricsSection
    plan_metrics_base_port: int  # tooling/phases.yml's, to tell a run's own --set from the plan


def port_problems(ports: PortPlan, warn: Warn | None = None) -> list[str]:
    """One line per taken or impossible port, naming the node, the port, its setting and its holder."""
    node = ports.node
    problems: list[str] = []
    if ports.rdzv_port is not None:
        port = ports.rdzv_port
        # c10d's store listens on every address, on IPv6 and IPv4 where it can. Failing to test the wildcard
        # addresses says nothing about the port, so those tests stay quiet.
        if port_taken("::", port, socket.AF_INET6) or port_taken("0.0.0.0", port, socket.AF_INET):
            problems.append(
                f"{node}: port {port} (rendezvous.port in tooling/phases.yml) is in use by "
                f"{port_holder(port)}; torchrun's rendezvous listens there on this node"
            )
    metrics = ports.metrics
    if not metrics.enabled:
        return problems
    address = resolve_bind_address(metrics.bind_address)
    base = metrics.base_port
    origin = "in tooling/phases.yml" if base == ports.plan_metrics_base_port else "set for this run"
    for local_rank in range(ports.nproc_per_node):
        port = base + local_rank
        what = f"port {port} (metrics.base_port {base} {origin} + local rank {local_rank})"
        if port > 65535:
            problems.append(f"{node}: {what} is past 65535; lower metrics.base_port")
        elif port_taken(address, port, warn=warn):
            problems.append(f"{node}: {what} on {address} is in use by {port_holder(port)}")
    return problems


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ddp.preflight", description="Check that the ports this node's ranks need are free."
    )
    parser.add_argument("--node", required=True, help="This node's inventory name (prefixes every line).")
    # Taken as text: the launcher passes what its user typed, and the error names it.
    parser.add_argument("--nproc-per-node", required=True, help="Ranks on this node.")
    parser.add_argument("--rdzv-port", type=int, help="Rendezvous port, on the node that hosts it.")
    parser.add_argument(
        "--plan-metrics-base-port", type=int, required=True, help="metrics.base_port of tooling/phases.yml."
    )
    parser.add_argument("--config", required=True, help="The trainer config the ranks will load.")
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY.PATH=VALUE", help="Trainer setting."
    )
    return parser


def plan_from_args(argv: Sequence[str] | None = None) -> PortPlan:
    """The ports to check, from the launcher's arguments (the command line's when None); PreflightError
    for a bad count or config."""
    args = _parser().parse_args(argv)
    node, nproc = args.node, args.nproc_per_node
    if not nproc.isdigit() or int(nproc) < 1:
        raise PreflightError(f"{node}: --nproc-per-node: expected a positive number (got {nproc!r})")
    try:
        metrics = load_config(args.config, args.sets).metrics
    except ConfigError as exc:
        raise PreflightError(f"{node}: invalid trainer config:\n{exc}") from None
    return PortPlan(node, int(nproc), args.rdzv_port, metrics, args.plan_metrics_base_port)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        ports = plan_from_args(argv)
    except PreflightError as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM

    def warn(text: str) -> None:
        print(f"{ports.node}: warning: {text}", file=sys.stderr)

    problems = port_problems(ports, warn)
    if problems:
        # The detail last: a failed Ansible task shows the last line of stderr.
        print(
            f"{ports.node}: not starting the trainer; stop what holds these ports or change them:",
            file=sys.stderr,
        )
        print("\n".join(problems), file=sys.stderr)
        return EXIT_PROBLEM
    return 0


if __name__ == "__main__":
    sys.exit(main())
