"""A sandbox cluster of its own for tests: prefix, subnet, state dir and inventory that never touch a
developer's running sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Sandbox:
    def __init__(self, tmp: Path, prefix: str, subnet: str) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.subnet = subnet
        self.state_dir = tmp / "state"
        self.inventory = tmp / "inventory"
        self.runs = tmp / "runs"
        self.env = {
            **os.environ,
            "DDP_SANDBOX_PREFIX": prefix,
            "DDP_SANDBOX_SUBNET": subnet,
            "DDP_SANDBOX_STATE_DIR": str(self.state_dir),
            "DDP_SANDBOX_INVENTORY": str(self.inventory),
            "COLUMNS": "200",  # keep rich tables on one line per row
        }

    def cli(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "tooling.sandbox", *args], timeout=timeout)

    def tooling(self, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "tooling.cli", *args], timeout=timeout)

    def run(self, command: list[str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        from tooling.sandbox.podman import podman_env

        return subprocess.run(
            ["podman", *args], env=podman_env(self.state_dir), capture_output=True, text=True, check=False
        )

    def container(self, host: str) -> str:
        return f"{self.prefix}-{host}"


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-6000:]}\nstderr:\n{result.stderr[-6000:]}"
