"""`tooling check` on the sandbox cluster: the daily checks pass on a healthy phase-2a run, and fail naming
the host and the reason when node2 is stopped and node1's newest checkpoint is corrupt.

Meant to be imported by test_cluster_phase2a.py so the tests share its provisioned cluster (one module per
xdist worker); the broken-cluster test stops node2's container and starts it again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.integration.sandbox_harness import ROOT, Sandbox, explain
from tests.integration.sandbox_jobs import (
    RUN_ROOT,
    SMALL_RUN,
    corrupt_newest_checkpoint,
    deploy_run,
    on_node,
    wait_for_summary,
)
from tooling import deployment

PHASE = "2a"
NODES = ("node1", "node2")
# The sandbox's nodes share this machine's disk: its fill level and how fast other work fills it say
# nothing about the cluster, so the disk bands are widened. Eight ranks on two cores also delay the
# connect probe's own process, so its latency band is widened too; every other threshold is the package's.
SANDBOX_SETTINGS = """\
thresholds:
  disk_free_warn_ratio: 0.02
  disk_free_fail_ratio: 0.01
  time_to_full_warn_h: 0.02
  time_to_full_fail_h: 0.01
  latency_warn_ms: 100
"""


def _deploy(box: Sandbox, run_id: str, *sets: str) -> str:
    # Pre-flight verification has tests of its own in test_cluster_phase2a.py; here it would only cost time.
    deploy_run(box, PHASE, run_id, [*SMALL_RUN, *sets], "--skip-verify")
    return f"{RUN_ROOT}/{run_id}"


def _check_runs_dir(box: Sandbox, name: str) -> Path:
    """A runs directory of the test's own, holding a copy of the deployment record `tooling deploy` wrote
    (under the project's runs/, its working directory), so the snapshots stay out of the project."""
    runs = box.tmp / name
    record = deployment.load(box.inventory, ROOT / "runs" / "deployments")
    deployment.save(record, runs / "deployments")
    return runs


def _check(box: Sandbox, runs: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    settings = box.tmp / "check-settings.yml"
    settings.write_text(SANDBOX_SETTINGS)
    result = box.tooling(
        "check", "--inventory", str(box.inventory), "--runs-dir", str(runs), "--settings", str(settings),
        "--json", *args, timeout=900,
    )  # fmt: skip
    assert result.returncode in (0, 1), explain(result)
    return result.returncode, json.loads(result.stdout), explain(result)


def _rows(document: dict[str, Any], check: str, host: str | None = None) -> list[dict[str, Any]]:
    return [r for r in document["results"] if r["check"] == check and (host is None or r["host"] == host)]


def _wait_for_checkpoints(box: Sandbox, run_dir: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(NODES)
    while waiting and time.monotonic() < deadline:
        waiting = [
            h for h in waiting if on_node(box, h, f"test -s {run_dir}/checkpoints/manifest.json").rc != 0
        ]
        if waiting:
            time.sleep(3)
    assert not waiting, f"no checkpoint on {', '.join(waiting)} in {run_dir} within {timeout:.0f} s"


def test_check_healthy_cluster_passes(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    # Running while checked (ranks online, rendezvous port open); checkpoints far enough apart that the
    # one being verified is not pruned under the check.
    run_dir = _deploy(box, "checked-2a", "training.max_steps=1000000", "checkpoint.every_steps=50")
    try:
        _wait_for_checkpoints(box, run_dir)
        runs = _check_runs_dir(box, "check-healthy")
        # A rank alert left firing by an earlier test's killed run resolves once this run's endpoints are
        # scraped again (one rule evaluation after the next scrape): only such rows earn another look.
        for _ in range(6):
            code, document, shown = _check(box, runs)
            fails = [r for r in document["results"] if r["status"] == "FAIL"]
            if code == 0 or any(r["check"] != "alerts" for r in fails):
                break
            time.sleep(20)
    finally:
        stopped = box.tooling("stop", "--inventory", str(box.inventory))
    assert stopped.returncode == 0, explain(stopped)
    assert code == 0, shown
    assert document["phase"] == PHASE and document["run_id"] == "checked-2a"
    assert [r["status"] for r in _rows(document, "job")] == ["PASS"], _rows(document, "job")
    for host in NODES:
        for check in ("ranks", "disk", "checkpoint"):
            rows = _rows(document, check, host)
            assert [r["status"] for r in rows] == ["PASS"], (check, host, rows)
    ranks = _rows(document, "ranks", "node1")[0]
    assert ranks["measured"] == "4/4 ranks"
    verified = _rows(document, "checkpoint", "node1")[0]
    assert "sha256 ok, torch.load ok" in verified["detail"] and verified["measured"].startswith("step-")
    # Every node reaches the other's sshd, and node2 reaches the rendezvous on node1 while the job runs.
    network = _rows(document, "network")
    assert network and all(r["status"] == "PASS" for r in network), network
    links = {(r["host"], r["detail"].split()[1], r["detail"].rsplit("(", 1)[-1].rstrip(")")) for r in network}
    assert {("node1", "node2", "ssh"), ("node2", "node1", "ssh"), ("node2", "node1", "rendezvous")} <= links
    # Prometheus runs on the monitor host: the alert checks really looked.
    assert _rows(document, "alerts")[0]["measured"] != "not checked", _rows(document, "alerts")
    snapshot = Path(document["snapshot"])
    assert snapshot.parent == runs / "checks"
    record = json.loads(snapshot.read_text().splitlines()[-1])
    assert record["run_id"] == "checked-2a" and set(record["disk"]) == set(NODES)


def test_check_broken_cluster_fails_naming_node2_and_the_corrupt_file(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    run_dir = _deploy(box, "checked-2a-broken", "training.max_steps=60")
    summary = wait_for_summary(box, run_dir)
    assert summary["status"] == "completed", summary
    corrupt_file = corrupt_newest_checkpoint(box, "node1", run_dir)
    runs = _check_runs_dir(box, "check-broken")
    stopped = box.podman("stop", "--time", "2", box.container("node2"))
    assert stopped.returncode == 0, stopped.stderr
    try:
        code, document, shown = _check(box, runs)
    finally:
        restarted = box.cli("up", "--nodes", "2")
    assert restarted.returncode == 0, explain(restarted)
    assert code == 1, shown
    failing = [r for r in document["results"] if r["status"] == "FAIL"]
    # node2 itself: every per-node check says it cannot be reached, and why.
    on_node2 = {r["check"]: r for r in failing if r["host"] == "node2"}
    assert {"ranks", "disk", "checkpoint", "network", "thermal"} <= set(on_node2), failing
    assert all(r["measured"] == "unreachable" and r["detail"] for r in on_node2.values()), on_node2
    # node1 cannot reach node2 either, and the job as a whole is only partly readable.
    link = _rows(document, "network", "node1")
    assert [r["status"] for r in link] == ["FAIL"] and "-> node2" in link[0]["detail"], link
    job = _rows(document, "job")[0]
    assert job["status"] == "FAIL" and "node2" in job["detail"], job
    # node1's newest checkpoint is named, with the reason.
    checkpoint = _rows(document, "checkpoint", "node1")[0]
    assert checkpoint["status"] == "FAIL", checkpoint
    assert corrupt_file in checkpoint["detail"] and "sha256" in checkpoint["detail"], checkpoint
    assert Path(corrupt_file).name in checkpoint["measured"]
