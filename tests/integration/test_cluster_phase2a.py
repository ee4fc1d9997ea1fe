"""Phase 2a on the sandbox cluster, the way an operator runs it: site.yml converges and re-runs with
changed=0, MPI and torchrun span both nodes, `tooling deploy` runs phase 1 then 2a, `tooling status`
shows every rank, and bad input fails clearly."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rich.console import Console

from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import SMALL_RUN, on_node, wait_for_summary
from tooling.inventory import load_inventory, ssh_targets
from tooling.remote import run_everywhere
from tooling.runner import run_playbook

pytestmark = pytest.mark.sandbox


def test_site_rerun_changes_nothing(phase2a_cluster: Sandbox) -> None:
    first = phase2a_cluster.first_provisioning  # type: ignore[attr-defined]
    assert sum(s.changed for s in first.stats.values()) > 0, "the first run must really have provisioned"
    again = run_playbook(
        "site.yml",
        inventory=phase2a_cluster.inventory,
        runs_dir=phase2a_cluster.runs,
        limit="phase2a",
        label="site-phase2a-again",
        progress=False,
        timeout=1200,
    )
    assert again.ok, again.explanation
    assert {"node1", "node2"} <= set(again.stats)
    changed = {host: s.changed for host, s in again.stats.items() if s.changed}
    assert changed == {}, f"second run changed something: {changed} (see {again.artifact_dir})"


def test_mpirun_spans_both_nodes(phase2a_cluster: Sandbox) -> None:
    # As the training account: the common role gives it the cluster SSH key and known_hosts.
    result = on_node(phase2a_cluster, "node1", "su - ddp -c 'mpirun -np 2 --host node1,node2 hostname'")
    assert result.rc == 0, result
    assert sorted(result.stdout.split()) == [
        phase2a_cluster.container("node1"),
        phase2a_cluster.container("node2"),
    ]


def test_torchrun_two_nodes_by_two_processes(phase2a_cluster: Sandbox) -> None:
    run_id = "torchrun-2x2"
    sets = " ".join(f"--set {s}" for s in [*SMALL_RUN, "training.max_steps=40"])
    targets = ssh_targets(load_inventory(phase2a_cluster.inventory), ["node1", "node2"])
    results = run_everywhere(
        targets, f"DDP_RUN_ID={run_id} ddp-launch --nproc-per-node 2 {sets}", timeout_s=600
    )
    for host, result in results.items():
        assert result.rc == 0, f"{host}: {result.stderr[-3000:]}"
    summary = wait_for_summary(phase2a_cluster, f"/var/lib/ddp/runs/{run_id}", timeout=30)
    assert summary["status"] == "completed"
    assert (summary["world_size"], summary["nodes"], summary["steps"]) == (4, 2, 40)
    assert {r["node"] for r in summary["ranks"]} == {"node1", "node2"}
    assert summary["grad_sync"]["mismatches"] == 0 and summary["grad_sync"]["checks"] >= 1


def deploy(box: Sandbox, phase: str, *extra: str) -> None:
    sets = [arg for s in SMALL_RUN for arg in ("--set", s)]
    result = box.tooling("deploy", "--phase", phase, "--inventory", str(box.inventory), *sets, *extra)
    assert result.returncode == 0, explain(result)
    assert "is up" in result.stdout


def status(box: Sandbox) -> str:
    result = box.tooling("status", "--inventory", str(box.inventory))
    assert result.returncode == 0, explain(result)
    return result.stdout


def test_deploy_phase1_then_phase2a(phase2a_cluster: Sandbox) -> None:
    deploy(phase2a_cluster, "1", "--run-id", "deploy-phase1", "--set", "training.max_steps=3000")
    shown = status(phase2a_cluster)
    assert "4/4 ranks reported" in shown
    stopped = phase2a_cluster.tooling("stop", "--inventory", str(phase2a_cluster.inventory))
    assert stopped.returncode == 0, explain(stopped)
    summary = wait_for_summary(
        phase2a_cluster, "/var/lib/ddp/runs/deploy-phase1", status="stopped", timeout=60
    )
    assert summary["status"] == "stopped" and summary["world_size"] == 4
    assert summary["checkpoints"]["last_step"] == summary["steps"], "a clean stop writes a final checkpoint"

    deploy(
        phase2a_cluster,
        "2a",
        "--skip-provision",
        "--run-id",
        "deploy-phase2a",
        "--set",
        "training.max_steps=60",
    )
    summary = wait_for_summary(phase2a_cluster, "/var/lib/ddp/runs/deploy-phase2a")
    assert summary["status"] == "completed"
    assert (summary["world_size"], summary["nodes"]) == (8, 2)
    shown = status(phase2a_cluster)
    assert "8/8 ranks reported" in shown and "job completed" in shown
    # One table row per rank: node, rank, state, step ... (rich draws the cells between │ bars).
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in shown.splitlines() if line.count("│") >= 9]
    ranks = [(row[0], int(row[1]), row[2]) for row in rows if len(row) > 2 and row[1].isdigit()]
    assert sorted(rank for _, rank, _ in ranks) == list(range(8)), shown
    assert sorted(node for node, _, _ in ranks) == ["node1"] * 4 + ["node2"] * 4, shown
    assert {state for _, _, state in ranks} == {"completed"}, shown


def test_deploy_bad_input_fails_clearly(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    unknown = box.tooling("deploy", "--phase", "3", "--inventory", str(box.inventory))
    assert unknown.returncode == 2 and "unknown phase '3'" in unknown.stderr, explain(unknown)

    too_big = box.tooling("deploy", "--phase", "2b", "--inventory", str(box.inventory))
    assert too_big.returncode == 2 and "no group 'phase2b'" in too_big.stderr, explain(too_big)

    missing = box.tooling("deploy", "--phase", "1", "--inventory", str(box.tmp / "nowhere"))
    assert missing.returncode == 2 and "inventory not found" in missing.stderr, explain(missing)

    stopped = box.podman("stop", "--time", "2", box.container("node2"))
    assert stopped.returncode == 0, stopped.stderr
    try:
        unreachable = box.tooling(
            "deploy", "--phase", "2a", "--inventory", str(box.inventory), "--skip-provision"
        )
    finally:
        restarted = box.cli("up", "--nodes", "2")
    assert restarted.returncode == 0, explain(restarted)
    assert unreachable.returncode == 1, explain(unreachable)
    output = unreachable.stdout + unreachable.stderr
    assert "node2" in output and "nothing was launched" in output, output[-4000:]


# --- tooling verify-node on the same cluster ---


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


# Tests kept in files of their own but run on this module's cluster (xdist hands out whole modules), last:
# they stop node2 or kill its training processes.
from tests.integration.cluster_checks import (  # noqa: E402, F401
    test_check_broken_cluster_fails_naming_node2_and_the_corrupt_file,
    test_check_healthy_cluster_passes,
)
from tests.integration.cluster_disk_faults import (  # noqa: E402, F401
    test_checkpoint_disk_full_then_read_only_keeps_the_previous_checkpoint,
)
from tests.integration.cluster_faults import (  # noqa: E402, F401
    test_killed_rank_restarts_from_the_last_good_checkpoint,
    test_node_fault_stops_cleanly_and_the_run_falls_back_to_phase1,
    test_node_lost_is_absorbed_when_the_site_allows_fewer_nodes,
    test_taken_rendezvous_port_stops_the_launch_on_every_node,
)
from tests.integration.cluster_monitoring import (  # noqa: E402, F401
    test_phase2a_run_is_scraped_charted_and_alerted,
    test_run_that_ends_as_planned_raises_no_rank_alert,
)
from tests.integration.cluster_rollout import (  # noqa: E402, F401
    test_phase1_then_phase2a_are_gated_and_reported,
)
from tests.integration.cluster_sweep import (  # noqa: E402, F401
    test_sweep_runs_ranked_trials_on_the_cluster,
)
