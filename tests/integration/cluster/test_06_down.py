"""Last: `sandbox down` leaves nothing behind. A module of its own so the long run's module fixture (which
stops the trainer on node1) is torn down before the cluster is."""

from __future__ import annotations

import pytest

from tests.integration.sandbox_harness import Sandbox, explain

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]


def test_sandbox_down_leaves_nothing(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    if box.kept:
        pytest.skip("DDP_ITEST_KEEP_DIR keeps the cluster for the next session")
    hosts_file = box.inventory / "hosts.yml"
    removed = box.cli("down")
    assert removed.returncode == 0, explain(removed)
    left = box.podman(
        "ps", "-a", "--filter", f"label=ddp.sandbox.prefix={box.prefix}", "--format", "{{.Names}}"
    )
    assert left.stdout.strip() == ""
    assert box.podman("network", "exists", box.prefix).returncode != 0
    assert not hosts_file.exists()
    assert not (box.state_dir / "id_ed25519").exists()
