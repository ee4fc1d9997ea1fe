"""Host settings that podman changes behind our back, recorded at `up` and put back at `down`.

netavark turns on net.ipv4.ip_forward for bridge networks (rootful only) and never turns it off.
"""

from __future__ import annotations

from pathlib import Path

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def read_ip_forward(path: Path | None = None) -> str | None:
    path = path or IP_FORWARD  # looked up at call time so tests can point it elsewhere
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def restore_ip_forward(before: str | None, *, others_running: bool, path: Path | None = None) -> str:
    """Put ip_forward back to `before`; returns a sentence saying what happened."""
    path = path or IP_FORWARD
    now = read_ip_forward(path)
    if before is None or now is None or before == now:
        return f"net.ipv4.ip_forward unchanged ({now})"
    if others_running:
        return (
            f"net.ipv4.ip_forward left at {now} (was {before} before `up`): other podman containers are "
            "running and may need it"
        )
    try:
        path.write_text(before + "\n", encoding="utf-8")
    except OSError as exc:
        return f"could not restore net.ipv4.ip_forward to {before}: {exc}"
    return f"net.ipv4.ip_forward restored to {before}"
