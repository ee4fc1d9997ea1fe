"""Wait, before torchrun starts, until this node can reach the rendezvous store on another node.

    python -m ddp.store_wait --node node2 --endpoint 10.0.0.11:29400 --timeout 120

A node that cannot reach the store (a name that does not resolve, a firewall, a partition, the store's node
down) otherwise starts torchrun anyway, which retries until the rendezvous times out and then prints pages
of tracebacks in which the endpoint is hard to find. Here the outcome is one line naming the endpoint and
the last reason, within the rendezvous join timeout, and exit status 2. The store's own node starts it
(torchrun there), possibly a little later than this one: connection refused is retried until the timeout.
Light on purpose (no torch import): it runs on every launch of every node but the store's.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable, Sequence

EXIT_PROBLEM = 2
RETRY_S = 1.0


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT as torchrun's --rdzv-endpoint takes it; ValueError when it is neither."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"rendezvous endpoint {endpoint!r}: expected HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


def unreachable_store(
    node: str,
    endpoint: str,
    timeout_s: float,
    connect: Callable[[tuple[str, int], float], socket.socket] = socket.create_connection,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """None once a TCP connection to `endpoint` succeeds; else, after `timeout_s` (at once for a name
    that does not resolve: retrying will not make it resolve), one line saying why."""
    host, port = split_endpoint(endpoint)
    deadline = clock() + timeout_s
    last = "no attempt made"
    while True:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return (
                f"{node}: the rendezvous endpoint {endpoint} does not resolve ({exc.strerror}); set the "
                "node's address (ddp_trainer_node_address or ansible_host) to one every node can reach"
            )
        left = deadline - clock()
        try:
            with connect((host, port), max(0.1, min(5.0, left))):
                return None
        except OSError as exc:
            last = exc.strerror or str(exc)
        left = deadline - clock()
        if left <= 0:
            return (
                f"{node}: cannot reach the rendezvous store at {endpoint} within {timeout_s:g} s "
                f"(last attempt: {last}); is torchrun running on the store's node, and is the port open "
                "between the nodes?"
            )
        sleep(min(RETRY_S, left))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddp.store_wait", description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True, help="This node's inventory name (prefixes the line).")
    parser.add_argument("--endpoint", required=True, help="The rendezvous endpoint, HOST:PORT.")
    parser.add_argument("--timeout", type=float, required=True, help="Seconds to wait (the join timeout).")
    args = parser.parse_args(argv)
    try:
        problem = unreachable_store(args.node, args.endpoint, args.timeout)
    except ValueError as exc:
        problem = f"{args.node}: {exc}"
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_PROBLEM
    return 0


if __name__ == "__main__":
    sys.exit(main())
