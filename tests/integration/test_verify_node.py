"""`tooling verify-node` against the provisioned sandbox cluster (tests/integration/conftest.py): a healthy
phase passes; a stopped node is named with the reason."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rich.console import Console

from tests.integration.sandbox_harness import Sandbox, explain

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]


def _verify(box: Sandbox) -> tuple[int, dict[str, Any]]:
    from tooling.verify.cli import run_verify

    buffer = io.StringIO()
    code = run_verify(
        [],
        "2a",
        box.inventory,
        "sandbox",
        as_json=True,
        install_iperf3=True,
        runs_dir=box.runs,
        out=Console(file=buffer, width=200),
    )
    return code, json.loads(buffer.getvalue())


def test_healthy_phase_passes_the_sandbox_profile(phase2a_cluster: Sandbox) -> None:
    code, document = _verify(phase2a_cluster)
    failing = [r for r in document["results"] if r["status"] == "FAIL"]
    assert code == 0, failing
    assert document["hosts"] == ["node1", "node2"]
    checks = {(r["host"], r["check"]): r["status"] for r in document["results"]}
    for host in ("node1", "node2"):
        assert checks[(host, "torch.version")] == "PASS"
        assert checks[(host, "mpi.version")] == "PASS"
        assert checks[(host, "gpu.count")] == "SKIP"
    assert checks[("node1", "net.iperf3 -> node2")] in ("PASS", "WARN")
    assert checks[("(cluster)", "net.gloo_allreduce")] in ("PASS", "WARN")


def test_stopped_node_fails_naming_the_host_and_reason(phase2a_cluster: Sandbox) -> None:
    sandbox = phase2a_cluster
    stopped = sandbox.podman("stop", "--time", "2", sandbox.container("node2"))
    assert stopped.returncode == 0, stopped.stderr
    try:
        code, document = _verify(sandbox)
    finally:
        restarted = sandbox.cli("up", "--nodes", "2")
    assert restarted.returncode == 0, explain(restarted)
    assert code == 1
    node2 = [r for r in document["results"] if r["host"] == "node2"]
    assert [(r["check"], r["status"]) for r in node2] == [("ssh", "FAIL")]
    assert sandbox.subnet.rsplit(".", 1)[0] in node2[0]["reason"] or "node2" in node2[0]["reason"], node2[0][
        "reason"
    ]
    # The node that is up is still judged in full.
    checks = {(r["host"], r["check"]): r["status"] for r in document["results"]}
    assert checks[("node1", "torch.version")] == "PASS"
    assert checks[("node1", "cpu.cores")] == "PASS"
