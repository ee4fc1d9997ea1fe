"""The one provisioned sandbox cluster every test in this directory shares.

Its tests form one xdist group (`--dist loadgroup`): they run on one worker, in file order, while the other
worker takes the unit, trainer and molecule tests. The files are numbered because the order matters: the
read-only checks first, runs that change what is running next, and the node-down scenario last (it stops
node2 and brings it back once), then `sandbox down`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster.checks import write_node_settings
from tests.integration.sandbox_harness import Sandbox, explain

UNGROUPED = pytest.StashKey[list[str]]()
# Overridable so a developer can run the cluster tests beside a CI run on the same machine.
CLUSTER_PREFIX = os.environ.get("DDP_ITEST_PREFIX", "ddp-itest")
CLUSTER_SUBNET = os.environ.get("DDP_ITEST_SUBNET", "10.213.34.0/24")
# A directory here keeps the cluster up after the session and reuses it next time (`up` is a no-op on a
# running sandbox, the re-provisioning is warm): minutes saved per iteration while writing a cluster test.
KEEP_DIR = os.environ.get("DDP_ITEST_KEEP_DIR")
# The cluster's containers against the containers the tests beside it start (molecule's): podman puts every
# container in a CPU cgroup of its own, where the worker's nice value does not reach, and equal shares
# (1024 each) let a molecule converge slow the cluster's provisioning and rank starts. Ten times the default
# share (measured: provisioning 445 -> 390 s, 294 s on an idle machine); idle CPU still goes to all.
CLUSTER_CPU_SHARES = 10240
CLUSTER_HOSTS = ("monitor", "node1", "node2")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` pytest-xdist marks each test's id with its group; a pytest/xdist pair that
    loses the mark (pytest 9.2 with xdist 3.8 did) splits these tests over both workers, each provisioning
    the same cluster. The cluster fixture then fails saying so instead of provisioning."""
    if not getattr(config.option, "loadgroup", False):
        return
    here = Path(__file__).parent
    lost = [
        item.nodeid for item in items if here in item.path.parents and not item.nodeid.endswith("@cluster")
    ]
    config.stash[UNGROUPED] = lost


@pytest.fixture(scope="session")
def phase2a_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sandbox]:
    """Two nodes and a monitoring host provisioned by `site.yml -l phase2a:monitoring` (as `tooling deploy`
    does). Tests that break a node put it back; the last test takes the cluster down and checks that
    nothing is left (the finalizer's `down` is then a no-op)."""
    ungrouped = request.config.stash.get(UNGROUPED, [])
    assert not ungrouped, f"xdist_group is not honoured by this pytest/pytest-xdist pair: {ungrouped[0]}"
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    home = Path(KEEP_DIR) if KEEP_DIR else tmp_path_factory.mktemp("cluster")
    home.mkdir(parents=True, exist_ok=True)
    box = Sandbox(home, CLUSTER_PREFIX, CLUSTER_SUBNET, kept=bool(KEEP_DIR))
    try:
        if not KEEP_DIR:
            # A session cut off before its finalizer leaves its containers behind under this prefix; they
            # belong to the suite, and `up` would restart them rather than start clean.
            leftovers = box.cli("down")
            assert leftovers.returncode == 0, explain(leftovers)
        started = box.cli("up", "--nodes", "2")
        assert started.returncode == 0, explain(started)
        box.first_up = started
        favour_on_the_cpu(box)
        write_node_settings(box)
        first = box.site("phase2a:monitoring", "site-phase2a")
        assert first.ok, f"{first.explanation}: {first.hard_failures()[:5]} (see {first.artifact_dir})"
        box.first_provisioning = first
        yield box
    finally:
        if not KEEP_DIR:
            box.cli("down")


def favour_on_the_cpu(box: Sandbox) -> None:
    """Raise the cluster containers' CPU share (CLUSTER_CPU_SHARES)."""
    for host in CLUSTER_HOSTS:
        updated = box.podman("update", "--cpu-shares", str(CLUSTER_CPU_SHARES), box.container(host))
        assert updated.returncode == 0, f"podman update {box.container(host)}: {updated.stderr}"
