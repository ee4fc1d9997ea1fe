"""The provisioned phase-2a cluster, read before anything runs on it: the sandbox is up with a host key per
node, `site.yml` re-runs with changed=0, each role's own verify playbook passes on the nodes it provisioned,
MPI and a hand-started torchrun span both nodes, verify-node passes, and bad input to `deploy` fails
clearly."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.integration.cluster.checks import CLUSTER_VERIFIED_ROLES, run_role_verify, verify_phase
from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import SMALL_RUN, assert_no_straggler, wait_for_summary
from tooling.inventory import group_hosts, load_inventory, ssh_targets
from tooling.remote import run_everywhere

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]


def test_sandbox_is_up_with_a_host_key_per_node(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    status = box.cli("status")
    assert status.returncode == 0, explain(status)
    for host in ("node1", "node2", "monitor"):
        line = next(ln for ln in status.stdout.splitlines() if f" {host} " in ln)
        assert "running" in line and "answers" in line, status.stdout

    ping = box.run(
        [str(Path(sys.executable).with_name("ansible")), "-i", str(box.inventory / "hosts.yml"), "all", "-m",
         "ansible.builtin.ping"],
        timeout=300,
    )  # fmt: skip
    assert ping.returncode == 0, explain(ping)
    for host in ("node1", "node2", "monitor"):
        assert f"{host} | SUCCESS" in ping.stdout, ping.stdout

    again = box.cli("up", "--nodes", "2")
    assert again.returncode == 0, explain(again)
    assert "already up" in again.stdout

    # Without DNS on purpose: everything that passes here works from addresses alone.
    network = json.loads(box.podman("network", "inspect", box.prefix).stdout)[0]
    assert network["dns_enabled"] is False, network

    known_hosts = (box.state_dir / "known_hosts").read_text()
    ed25519 = [line.split()[2] for line in known_hosts.splitlines() if " ssh-ed25519 " in line]
    assert len(ed25519) == 3 and len(set(ed25519)) == 3, "every node must have its own host key"


def test_site_rerun_changes_nothing(phase2a_cluster: Sandbox) -> None:
    first = phase2a_cluster.first_provisioning
    assert sum(s.changed for s in first.stats.values()) > 0, "the first run must really have provisioned"
    again = phase2a_cluster.site("phase2a", "site-phase2a-again")
    assert again.ok, again.explanation
    assert {"node1", "node2"} <= set(again.stats)
    changed = {host: s.changed for host, s in again.stats.items() if s.changed}
    assert changed == {}, f"second run changed something: {changed} (see {again.artifact_dir})"


def test_role_verifies_pass_on_the_cluster(phase2a_cluster: Sandbox) -> None:
    for limit in sorted(set(CLUSTER_VERIFIED_ROLES.values())):
        roles = sorted(role for role, group in CLUSTER_VERIFIED_ROLES.items() if group == limit)
        verified = run_role_verify(phase2a_cluster, roles, limit)
        assert verified.returncode == 0, explain(verified)
        recap = verified.stdout[verified.stdout.rindex("PLAY RECAP") :]
        assert "failed=0" in recap and "unreachable=0" in recap, recap
        # Every role's verify plays ran on hosts: a play that matched none would pass without checking a
        # thing (ansible's default output then says so under the play), and every host in the group ran tasks.
        played = [line for line in verified.stdout.splitlines() if line.startswith("PLAY [")]
        assert len(played) >= len(roles), played
        assert "skipping: no hosts matched" not in verified.stdout, verified.stdout[-4000:]
        for host in group_hosts(load_inventory(phase2a_cluster.inventory), limit):
            assert re.search(rf"^{re.escape(host)}\s+: ok=[1-9]", recap, re.M), (host, recap)


def test_torchrun_two_nodes_by_two_processes(phase2a_cluster: Sandbox) -> None:
    """The launcher started by hand on each node, as an operator without `tooling` would."""
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
    assert_no_straggler(summary)


def test_healthy_phase_passes_the_sandbox_profile(phase2a_cluster: Sandbox) -> None:
    code, document = verify_phase(phase2a_cluster)
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


def test_deploy_bad_input_fails_clearly(phase2a_cluster: Sandbox) -> None:
    """Refused before anything runs; an unreachable node is the node-down scenario's (test_05)."""
    box = phase2a_cluster
    unknown = box.tooling("deploy", "--phase", "3", "--inventory", str(box.inventory))
    assert unknown.returncode == 2 and "unknown phase '3'" in unknown.stderr, explain(unknown)

    too_big = box.tooling("deploy", "--phase", "2b", "--inventory", str(box.inventory))
    assert too_big.returncode == 2 and "no group 'phase2b'" in too_big.stderr, explain(too_big)

    missing = box.tooling("deploy", "--phase", "1", "--inventory", str(box.tmp / "nowhere"))
    assert missing.returncode == 2 and "inventory not found" in missing.stderr, explain(missing)
