"""The address a rank's metrics endpoint binds to.

Kept apart from ddp/metrics.py so that ddp/preflight.py, which runs on every launch, can ask the same
question without importing ddp.metrics (and with it torch, seconds of start-up).
"""

from __future__ import annotations

import socket


def resolve_bind_address(configured: str | None) -> str:
    """The configured address, else what this host's name resolves to (its cluster interface)."""
    if configured:
        return configured
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
