"""Running and reading training jobs on a test sandbox cluster: the small run every cluster test uses, a
command on one node, and waiting for a run's summary."""

from __future__ import annotations

import json
import time

from tests.integration.sandbox_harness import Sandbox
from tooling.inventory import load_inventory, ssh_targets
from tooling.remote import RemoteResult, run_command

# Small enough for 8 ranks on a 2-core machine, big enough to take a few seconds per checkpoint interval.
SMALL_RUN = [
    "workload.input_dim=64",
    "workload.hidden_dim=128",
    "workload.num_samples=8192",
    "training.batch_size=16",
    "checkpoint.every_steps=20",
]


def on_node(box: Sandbox, host: str, command: str, timeout: float = 300) -> RemoteResult:
    target = {t.name: t for t in ssh_targets(load_inventory(box.inventory), [host])}[host]
    return run_command(target, command, timeout_s=timeout)


def wait_for_summary(box: Sandbox, run_dir: str, status: str = "completed", timeout: float = 600) -> dict:
    """The run's summary.json on node1 once it says `status` (or failed)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = on_node(box, "node1", f"cat {run_dir}/summary.json")
        if last.rc == 0:
            summary = json.loads(last.stdout)
            if summary["status"] in (status, "failed"):
                return summary
        time.sleep(3)
    raise AssertionError(f"no {status} summary in {run_dir} on node1: {last}")
