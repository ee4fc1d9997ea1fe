"""A sandbox cluster of its own for tests: prefix, subnet, state dir and inventory that never touch a
developer's running sandbox."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class Sandbox:
    def __init__(self, tmp: Path, prefix: str, subnet: str, kept: bool = False) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.subnet = subnet
        # A cluster kept between test sessions (DDP_ITEST_KEEP_DIR): the last test leaves it up.
        self.kept = kept
        self.state_dir = tmp / "state"
        self.inventory = tmp / "inventory"
        self.runs = tmp / "runs"
        # The operator's state (deployment records, decisions, soaks) of every `tooling` the tests run.
        self.home = tmp / "home"
        # What the session fixture saw: `sandbox up`'s output and the first provisioning's result.
        self.first_up: subprocess.CompletedProcess[str] | None = None
        self.first_provisioning: Any = None
        self.env = {
            **os.environ,
            "DDP_SANDBOX_PREFIX": prefix,
            "DDP_SANDBOX_SUBNET": subnet,
            "DDP_SANDBOX_STATE_DIR": str(self.state_dir),
            "DDP_SANDBOX_INVENTORY": str(self.inventory),
            "TOOLING_HOME": str(self.home),
            "COLUMNS": "200",  # keep rich tables on one line per row
        }

    def cli(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "tooling.sandbox", *args], timeout=timeout)

    def tooling(self, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "tooling.cli", *args], timeout=timeout)

    def run(self, command: list[str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        # Where a cluster test's minutes go, in its captured output (shown when it fails, or with -s).
        shown = shlex.join([Path(command[0]).name, *command[1:]])
        print(f"[sandbox] {time.monotonic() - started:5.1f} s  exit {done.returncode}  {shown[:160]}")
        return done

    def site(self, limit: str, label: str) -> Any:
        """`site.yml -l LIMIT` on this cluster through ansible-runner, as `tooling deploy` provisions."""
        from tooling.runner import run_playbook

        return run_playbook(
            "site.yml",
            inventory=self.inventory,
            runs_dir=self.runs,
            limit=limit,
            label=label,
            progress=False,
            timeout=2400,
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
