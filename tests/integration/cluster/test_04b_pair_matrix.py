"""`verify-node --pairs all` on the cluster with one direction of a link shaped: node2's outgoing traffic
held back by a token bucket in its own network namespace (faults.rate_limited; the kernel has no netem).
The matrix must show the shaped direction slow, flag the pair as asymmetric and name node2 -> node1."""

from __future__ import annotations

import time

import pytest

from tests.integration.cluster.checks import verify_phase
from tests.integration.cluster.faults import rate_limited
from tests.integration.sandbox_harness import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]

# Slow enough to stand far below the bridge's Gb/s, fast enough that the 16 MiB all_reduce probes (pair
# and phase) over the shaped direction finish well inside the time limit below.
RATE = "400mbit"
# Its cost on the shared cluster: 79 s measured with the rest of the suite loading both cores (the
# budget for a cluster test is 60 s on a quiet machine); beyond 120 s something is wrong.
CLUSTER_TIME_S = 120


def test_pair_matrix_names_the_shaped_link(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    started = time.monotonic()
    with rate_limited(box, "node2", RATE):
        code, document = verify_phase(box, "2a", pairs="all")
    took = time.monotonic() - started
    pairs = document["pairs"]
    gbps = pairs["gbps"]
    shaped, reverse = gbps["node2"]["node1"], gbps["node1"]["node2"]
    assert shaped is not None and reverse is not None, pairs
    assert shaped < 0.8 * reverse, f"node2 -> node1 {shaped} Gb/s not below node1 -> node2 {reverse} Gb/s"
    assert [item["slow"] for item in pairs["asymmetric"]] == [["node2", "node1"]], pairs["asymmetric"]
    named = {(c["kind"], c["host"], c["peer"]) for c in pairs["culprits"]}
    assert ("link", "node2", "node1") in named, pairs["culprits"]
    assert pairs["allreduce_busbw_gbs"]["node1"]["node2"], "the pair all_reduce gave no figure"
    checks = {(r["host"], r["check"]): r for r in document["results"]}
    assert checks[("node2", "net.pair_blame -> node1")]["status"] == "FAIL"
    assert checks[("(cluster)", "net.pair_asymmetry node2->node1")]["status"] == "WARN"
    assert code == 1
    assert took <= CLUSTER_TIME_S, f"verify-node --pairs all took {took:.0f} s"
