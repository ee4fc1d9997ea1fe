"""Names, paths and defaults of one sandbox: everything `up`, `down` and `status` must agree on.

Every default can be overridden by an environment variable so that tests (and a developer running two
sandboxes) can keep a separate prefix, state dir, inventory and subnet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE = "localhost/ddp-node:bookworm"
SUITE = "bookworm"
DEFAULT_PREFIX = "ddp-sandbox"
# Outside podman's own pools (10.88.0.0/16 default, 10.89.x.0/24 for new networks) and Docker's 172.17+.
DEFAULT_SUBNET = "10.213.31.0/24"
DEFAULT_NODES = 4
MONITOR_HOST = "monitor"


def project_root() -> Path:
    """The checkout holding this package, or the working directory when installed elsewhere."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def default_state_dir() -> Path:
    return _env_path("DDP_SANDBOX_STATE_DIR", project_root() / ".sandbox")


def default_inventory_dir() -> Path:
    return _env_path("DDP_SANDBOX_INVENTORY", project_root() / "inventory" / "sandbox")


def cache_dir() -> Path:
    """Shared by every sandbox of this user: the debootstrap rootfs does not depend on the sandbox."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return _env_path("DDP_SANDBOX_CACHE_DIR", base / "ddp-toolkit")


@dataclass(frozen=True)
class SandboxSettings:
    nodes: int = DEFAULT_NODES
    monitor: bool = True
    prefix: str = field(default_factory=lambda: os.environ.get("DDP_SANDBOX_PREFIX", DEFAULT_PREFIX))
    subnet: str = field(default_factory=lambda: os.environ.get("DDP_SANDBOX_SUBNET", DEFAULT_SUBNET))
    state_dir: Path = field(default_factory=default_state_dir)
    inventory_dir: Path = field(default_factory=default_inventory_dir)
    image: str = IMAGE

    @property
    def network(self) -> str:
        return self.prefix

    @property
    def node_names(self) -> list[str]:
        return [f"node{i}" for i in range(1, self.nodes + 1)]

    @property
    def host_names(self) -> list[str]:
        return self.node_names + ([MONITOR_HOST] if self.monitor else [])

    def container_name(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"
