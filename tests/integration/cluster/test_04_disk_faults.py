"""Checkpoint disk faults on the sandbox cluster: during a phase-1 run node1's checkpoint directory (a small
tmpfs mounted there for the test) first fills up, then turns read-only. Each time the trainer must say so
in its log, keep the previous checkpoint (manifest and file intact), train on, raise
TrainerCheckpointWriteFailures in Prometheus and Alertmanager, and write checkpoints again once the disk is
back."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import RUN_ROOT, SMALL_RUN, deploy_run, on_node
from tests.integration.sandbox_monitor import monitor_url, prometheus_api, wait_until

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]

RUN_ID = "disk-faults"
RUN_DIR = f"{RUN_ROOT}/{RUN_ID}"
CHECKPOINTS = f"{RUN_DIR}/checkpoints"
VENV_PYTHON = "/opt/ddp/venv/bin/python"


def _in_node1_mounts(box: Sandbox, *command: str) -> None:
    """Run `command` in node1's mount namespace from the host: a container may not mount, the host may."""
    pid = box.podman("inspect", "--format", "{{.State.Pid}}", box.container("node1")).stdout.strip()
    done = box.run(["nsenter", "-t", pid, "-m", *command])
    assert done.returncode == 0, explain(done)


def _manifest(box: Sandbox) -> dict[str, Any]:
    shown = on_node(box, "node1", f"cat {CHECKPOINTS}/manifest.json")
    return json.loads(shown.stdout) if shown.rc == 0 else {"checkpoints": []}


def _newest_step(box: Sandbox) -> int:
    return max((int(e["step"]) for e in _manifest(box)["checkpoints"]), default=-1)


def _failures_logged(box: Sandbox, reason: str) -> list[str]:
    shown = on_node(box, "node1", f"grep -h 'checkpoint at step' {RUN_DIR}/logs/*.ndjson || true")
    return [line for line in shown.stdout.splitlines() if reason in line]


def _write_failure_alerts(url: str) -> list[dict[str, Any]]:
    alerts = prometheus_api(url, "/api/v1/alerts")["alerts"]
    return [
        a
        for a in alerts
        if a["labels"]["alertname"] == "TrainerCheckpointWriteFailures"
        and a["labels"].get("node") == "node1"
        and a["state"] == "firing"
    ]


def _refused_then_kept(box: Sandbox, reason: str) -> int:
    """Wait for the trainer to log `reason` for a checkpoint, then check the newest kept one is untouched."""
    kept = _newest_step(box)
    logged = wait_until(f"a checkpoint refused: {reason}", lambda: _failures_logged(box, reason), 180, 3)
    assert f"keeping step-{kept:09d}.pt" in logged[-1], logged[-1]
    # More failed attempts, and the job still trains: the manifest has not moved, the step has.
    time.sleep(10)
    assert _newest_step(box) == kept, "a checkpoint was recorded on a full or read-only disk"
    verified = on_node(box, "node1", f"{VENV_PYTHON} -m ddp.checkpoint_verify {RUN_DIR} --json")
    assert verified.rc == 0, verified
    return kept


def test_checkpoint_disk_full_then_read_only_keeps_the_previous_checkpoint(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    prometheus = monitor_url(box, 9090)
    prepared = on_node(box, "node1", f"rm -rf {RUN_DIR} && mkdir -p {CHECKPOINTS}")
    assert prepared.rc == 0, prepared
    # Before the launch, so the trainer's unit starts with the small disk in place. Room for a few
    # checkpoints (well under 1 MiB each with SMALL_RUN), not for the filler.
    _in_node1_mounts(box, "mount", "-t", "tmpfs", "-o", "size=16m", "ddp-test-checkpoints", CHECKPOINTS)
    try:
        owner = on_node(box, "node1", f"chown --reference={RUN_ROOT} {RUN_DIR} {CHECKPOINTS}")
        assert owner.rc == 0, owner
        deploy_run(box, "1", RUN_ID, [*SMALL_RUN, "training.max_steps=1000000"], "--skip-verify")
        wait_until("a first checkpoint", lambda: _newest_step(box) >= 0, 300, 3)

        on_node(box, "node1", f"dd if=/dev/zero of={CHECKPOINTS}/.filler bs=1M 2>/dev/null; sync")
        full_kept = _refused_then_kept(box, "No space left on device")
        fired = wait_until("the write-failure alert", lambda: _write_failure_alerts(prometheus), 180)
        assert fired[0]["labels"]["phase"] == "1", fired[0]["labels"]

        def in_alertmanager() -> list[dict[str, Any]]:
            alerts = prometheus_api(monitor_url(box, 9093), "/api/v2/alerts")
            return [a for a in alerts if a["labels"]["alertname"] == "TrainerCheckpointWriteFailures"]

        wait_until("TrainerCheckpointWriteFailures in Alertmanager", in_alertmanager, 90)

        on_node(box, "node1", f"rm -f {CHECKPOINTS}/.filler")
        _in_node1_mounts(box, "mount", "-o", "remount,ro", CHECKPOINTS)
        ro_kept = _refused_then_kept(box, "Read-only file system")
        assert ro_kept >= full_kept

        # The disk is back: checkpoints resume beyond the one that was kept, and they verify.
        _in_node1_mounts(box, "mount", "-o", "remount,rw", CHECKPOINTS)
        wait_until("a checkpoint after the fault", lambda: _newest_step(box) > ro_kept, 180, 3)
        verified = on_node(box, "node1", f"{VENV_PYTHON} -m ddp.checkpoint_verify {RUN_DIR} --json")
        assert verified.rc == 0, verified
        stopped = box.tooling("stop", "--inventory", str(box.inventory))
        assert stopped.returncode == 0, explain(stopped)
        summary = json.loads(on_node(box, "node1", f"cat {RUN_DIR}/summary.json").stdout)
        assert summary["checkpoints"]["failures"] >= 2, summary["checkpoints"]
        print(f"kept step {full_kept} (disk full), {ro_kept} (read-only); {summary['checkpoints']}")
    finally:
        on_node(box, "node1", "systemctl stop ddp-trainer")
        _in_node1_mounts(box, "umount", CHECKPOINTS)
