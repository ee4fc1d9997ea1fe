"""Running and reading training jobs on a test sandbox cluster: the small run every cluster test uses, a
command on one node, and waiting for a run's summary."""

from __future__ import annotations

import json
import shlex
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_monitor import wait_until
from tooling.inventory import load_inventory, ssh_targets
from tooling.remote import RemoteResult, SshTarget, run_command

# Small enough for 8 ranks on a 2-core machine.
SMALL_MODEL = [
    "workload.input_dim=64",
    "workload.hidden_dim=128",
    "workload.num_samples=8192",
    "training.batch_size=16",
    "checkpoint.every_steps=20",
]
# What the cluster tests run: each forward pass waits 200 ms, as a GPU rank's host thread waits on its
# device. At most 5 steps a second: the tests wait on time (scrapes, alerts, timeouts), not on steps, and the
# ranks of a run that lasts minutes leave the two cores to the tests beside it. (Measured on 4 local ranks:
# 0.23 cores at 100 ms, 0.08 at 300 ms; unpaced, the cluster's containers used a third of the machine's CPU
# over a whole suite run.)
SMALL_RUN = [*SMALL_MODEL, "workload.device_time_ms=200"]


RUN_ROOT = "/var/lib/ddp/runs"
# Python run on a node with a checkpoint directory: flip one byte in the middle of the newest checkpoint the
# manifest lists, and print that file's path.
_CORRUPT_NEWEST = """
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
entry = max(json.loads((d / "manifest.json").read_text())["checkpoints"], key=lambda e: e["step"])
path = d / entry["file"]
data = bytearray(path.read_bytes())
data[len(data) // 2] ^= 0xFF
path.write_bytes(bytes(data))
print(path)
"""


def deploy_run(
    box: Sandbox, phase: str, run_id: str, sets: list[str], *extra: str, site_phases: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`tooling deploy` of an already provisioned phase (restarting whatever runs), which must succeed;
    `site_phases` is a site's own phases file (`tooling --phases`)."""
    plan = ["--phases", str(site_phases)] if site_phases else []
    result = box.tooling(
        *plan, "deploy", "--phase", phase, "--inventory", str(box.inventory), "--skip-provision", "--restart",
        "--run-id", run_id, *[arg for s in sets for arg in ("--set", s)], *extra,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    return result


def forget_run(box: Sandbox, run_id: str, hosts: tuple[str, ...] = ("node1", "node2")) -> None:
    """Remove a run's directory from the nodes: a run id used before would resume from its checkpoints
    (on a cluster kept between test sessions)."""
    for host in hosts:
        removed = on_node(box, host, f"rm -rf {RUN_ROOT}/{run_id}")
        assert removed.rc == 0, removed


@lru_cache(maxsize=8)
def _loaded(inventory: Path, files: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    return load_inventory(inventory)


def _ssh_target(inventory: Path, host: str) -> SshTarget:
    """`host`'s SSH target from the inventory, read again only when one of its files changed: the tests poll
    nodes hundreds of times, and each `ansible-inventory --list` costs about a second of CPU."""
    files = tuple(sorted((str(f), f.stat().st_mtime_ns) for f in inventory.rglob("*") if f.is_file()))
    return ssh_targets(_loaded(inventory, files), [host])[0]


def node_address(box: Sandbox, host: str) -> str:
    """The address the inventory gives `host` (where its services listen)."""
    return _ssh_target(box.inventory, host).address


def on_node(box: Sandbox, host: str, command: str, timeout: float = 300) -> RemoteResult:
    return run_command(_ssh_target(box.inventory, host), command, timeout_s=timeout)


def wait_for_summary(
    box: Sandbox, run_dir: str, status: str = "completed", timeout: float = 600, stop_on_failed: bool = True
) -> dict:
    """node1's summary.json of the run once it says `status`, or failed (the caller's assertion then shows
    why). A run that restarts or falls back says failed on the way: those pass `stop_on_failed=False`."""
    ends = {status, "failed"} if stop_on_failed else {status}

    def read() -> dict | None:
        shown = on_node(box, "node1", f"cat {run_dir}/summary.json")
        summary = json.loads(shown.stdout) if shown.rc == 0 else None
        return summary if summary and summary["status"] in ends else None

    found: dict = wait_until(f"a {status} summary in {run_dir} on node1", read, timeout, every=3)
    return found


def assert_no_straggler(summary: dict) -> None:
    """A healthy run names nobody: no rank's compute ever exceeded the median rank's by the run's margin,
    and no link turned slow (the false positives of straggler and slow-link detection, counted on every
    healthy cluster run)."""
    margin = summary["config"]["metrics"]["straggler_margin"]
    worst = {r["rank"]: r["compute_ratio_to_median_max"] for r in summary["ranks"]}
    assert all(v is not None for v in worst.values()), f"a rank never measured its compute: {worst}"
    assert max(worst.values()) <= 1 + margin, f"a healthy run named a straggler: {worst}"
    links = {r["rank"]: r["slow_link_events"] for r in summary["ranks"] if r["slow_link_events"]}
    assert not links, f"a healthy run named a slow link (events per rank): {links}"


def corrupt_newest_checkpoint(box: Sandbox, host: str, run_dir: str) -> str:
    """Flip a byte of the newest checkpoint of `run_dir` on `host`; the damaged file's path."""
    corrupted = on_node(
        box, host, f"python3 -c {shlex.quote(_CORRUPT_NEWEST)} {shlex.quote(run_dir + '/checkpoints')}"
    )
    assert corrupted.rc == 0 and corrupted.stdout.strip().endswith(".pt"), corrupted
    return corrupted.stdout.strip()
