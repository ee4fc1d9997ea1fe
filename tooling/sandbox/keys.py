"""The sandbox's SSH identity and the known_hosts that pins every node's own host key."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ddp.atomic import atomic_write_text
from tooling.console import ToolingError
from tooling.sandbox.addresses import Endpoint


def ensure_keypair(private_key: Path) -> str:
    """Create an ed25519 key (0600) once; return the public key line for authorized_keys."""
    # cryptography here, not at the top: only making a key needs it, and `tooling --help` imports this
    # module (through the sandbox commands).
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public_key = private_key.with_name(private_key.name + ".pub")
    if not private_key.is_file():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        pub = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        private_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(public_key, pub.decode() + " ddp-sandbox\n", mode=0o644)
        atomic_write_text(private_key, pem.decode(), mode=0o600)
    elif not public_key.is_file():
        loaded = serialization.load_ssh_private_key(private_key.read_bytes(), password=None)
        pub = loaded.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        atomic_write_text(public_key, pub.decode() + " ddp-sandbox\n", mode=0o644)
    return public_key.read_text(encoding="utf-8").strip()


def known_hosts_name(endpoint: Endpoint) -> str:
    """How ssh writes the host in known_hosts: bare for port 22, `[host]:port` otherwise."""
    if endpoint.ssh_port == 22:
        return endpoint.ssh_host
    return f"[{endpoint.ssh_host}]:{endpoint.ssh_port}"


def keyscan(host: str, endpoint: Endpoint, *, timeout_s: float = 90.0) -> list[str]:
    """The node's host keys as known_hosts lines, read over the network (sshd may still be starting)."""
    deadline = time.monotonic() + timeout_s
    error = ""
    while True:
        try:
            result = subprocess.run(
                ["ssh-keyscan", "-T", "3", "-p", str(endpoint.ssh_port), endpoint.ssh_host],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except FileNotFoundError:
            raise ToolingError(
                "ssh-keyscan is not installed",
                hint="install the OpenSSH client (`apt-get install openssh-client`)",
            ) from None
        except subprocess.TimeoutExpired:
            result = None
        lines = (
            []
            if result is None
            else [ln for ln in result.stdout.splitlines() if ln and not ln.startswith("#")]
        )
        if lines:
            return sorted(lines)
        error = "timed out" if result is None else (result.stderr.strip().splitlines() or ["no keys"])[-1]
        if time.monotonic() > deadline:
            raise ToolingError(
                f"{host}: ssh-keyscan {known_hosts_name(endpoint)} returned no host key "
                f"after {timeout_s:.0f} s ({error})",
                hint="check sshd inside the container: podman exec <container> systemctl status ssh",
            )
        time.sleep(1)
