"""Free loopback ports for runs on one machine: a rendezvous port, or one metrics port per rank."""

from __future__ import annotations

import socket


def free_port_block(count: int = 1) -> int:
    """The first of `count` consecutive loopback ports that are free right now.

    Only a snapshot: another process may take them before the caller binds, so callers that can retry do.
    """
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no block of {count} free loopback ports")
