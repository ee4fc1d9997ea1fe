"""Names, paths and defaults of one sandbox: everything `up`, `down` and `status` must agree on.

Every default can be overridden by an environment variable so that tests (and a developer running two
sandboxes) can keep a separate prefix, state dir, inventory and subnet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tooling.console import ToolingError

IMAGE = "localhost/ddp-node:bookworm"
SUITE = "bookworm"
DEFAULT_PREFIX = "ddp-sandbox"
# Outside podman's own pools (10.88.0.0/16 default, 10.89.x.0/24 for new networks) and Docker's 172.17+.
DEFAULT_SUBNET = "10.213.31.0/24"
DEFAULT_NODES = 4
MONITOR_HOST = "monitor"
CPUS_ENV = "DDP_SANDBOX_CPUS_PER_NODE"
# podman refuses a CFS quota under 1 ms of its 100 ms period.
MIN_CPUS = 0.01


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


def host_cpus() -> int:
    """The CPUs this machine lets its processes (and so the sandbox's containers) run on."""
    return len(os.sched_getaffinity(0))


def check_cpus_per_node(value: float | None, setting: str = "--cpus-per-node") -> float | None:
    """A node's CPU capacity as podman's --cpus takes it; None (no limit) passes. ToolingError naming
    `setting` otherwise: podman itself accepts a negative value as "no limit" and more than the host has
    without a word, and either would quietly give a sandbox other than the one asked for."""
    if value is None:
        return None
    available = host_cpus()
    if not MIN_CPUS <= value <= available:
        raise ToolingError(
            f"{setting}={value:g}: expected a number of CPUs from {MIN_CPUS:g} to {available} "
            f"(this machine has {available})",
            hint=f"leave {setting} unset for nodes without a CPU limit",
        )
    return value


def overcommit_warning(cpus_per_node: float | None, nodes: int) -> str | None:
    """A sentence when the nodes together may use every CPU this machine has (None otherwise). The limit is
    a ceiling, not a reservation: the host's own work (Ansible, SSH, the monitoring host, this toolkit)
    then comes out of the nodes' share, the more so the more nodes train at once. Measured on 2 cores,
    4 nodes x 0.5 (the trainer's own CPU figures; the host also ran a second sandbox's Ansible): each node got
    0.48 CPU when one node trained, 0.41 with three, 0.31 with all four."""
    available = host_cpus()
    if cpus_per_node is None or cpus_per_node * nodes < available:
        return None
    return (
        f"{nodes} nodes x {cpus_per_node:g} CPU ask for all {available} CPUs of this machine: while every "
        f"node trains, each gets less than {cpus_per_node:g} CPU (the host's own work comes out of it); "
        f"below {available / nodes:g} CPU a node leaves the host some"
    )


def _env_cpus() -> float | None:
    raw = os.environ.get(CPUS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ToolingError(
            f"{CPUS_ENV}={raw}: expected a number of CPUs (e.g. 0.5)", hint=f"unset {CPUS_ENV} for no limit"
        ) from None
    return check_cpus_per_node(value, CPUS_ENV)


@dataclass(frozen=True)
class SandboxSettings:
    nodes: int = DEFAULT_NODES
    monitor: bool = True
    prefix: str = field(default_factory=lambda: os.environ.get("DDP_SANDBOX_PREFIX", DEFAULT_PREFIX))
    subnet: str = field(default_factory=lambda: os.environ.get("DDP_SANDBOX_SUBNET", DEFAULT_SUBNET))
    state_dir: Path = field(default_factory=default_state_dir)
    inventory_dir: Path = field(default_factory=default_inventory_dir)
    image: str = IMAGE
    # Each training node's CPU capacity (podman --cpus); None: no limit, the nodes share the host's CPUs.
    cpus_per_node: float | None = field(default_factory=_env_cpus)

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
