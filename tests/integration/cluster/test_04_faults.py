"""Launch and network faults on the cluster. A taken rendezvous port stops the launch on every node. node2
cut off from node1 during a phase-2a run, with a site's phases file that lets 2a go down to one node
(min_nodes 1): `tooling doctor` names node2 as cut off at once, the cut is absorbed, torchrun re-forms the
group on node1 alone and training continues from the checkpoint. Without that setting (min_nodes 2) the
job must stop on node1 within the configured timeouts with its checkpoints intact: the node-down scenario
of test_05 checks that, once for the suite (for node1 a killed node2 is the same silent peer a cut-off one
is: its packets vanish, nothing answers with a reset), then falls back to phase 1."""

from __future__ import annotations

import json
import shlex
import time

import pytest

from tests.integration.cluster.faults import (
    COLLECTIVE_TIMEOUT_S,
    checkpoints_verify,
    heal_node2,
    partition_node2,
    site_phases,
    unit_state,
    wait_for_checkpoint,
    wait_for_unit_end,
)
from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import (
    RUN_ROOT,
    SMALL_RUN,
    deploy_run,
    forget_run,
    on_node,
    wait_for_summary,
)
from tooling.plan.phases import load_phases

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]

MAX_STEPS = 150
FAULT_SETS = [*SMALL_RUN, f"training.max_steps={MAX_STEPS}", f"distributed.timeout_s={COLLECTIVE_TIMEOUT_S}"]


def test_taken_rendezvous_port_stops_the_launch_on_every_node(phase2a_cluster: Sandbox) -> None:
    """Something else listens on node1's rendezvous port: deploy refuses before any unit starts, naming the
    node, the port and the setting, instead of torchrun talking to a stranger or node2 waiting forever."""
    box = phase2a_cluster
    port = load_phases().rendezvous.port
    hold = (
        "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('0.0.0.0', {port})); s.listen(); time.sleep(900)"
    )
    forget_run(box, "port-taken")
    # The run before this test (the sweep's last trial) writes its summary a moment before its unit ends:
    # until then its rendezvous store holds the port. After it, the store's closed connections linger in
    # TIME_WAIT: the holder binds with SO_REUSEADDR, as servers (and torch's store) do.
    for host in ("node1", "node2"):
        wait_for_unit_end(box, host, time.monotonic(), 120)
    held = on_node(box, "node1", f"systemd-run --unit ddp-test-port-holder python3 -c {shlex.quote(hold)}")
    assert held.rc == 0, held
    try:
        deadline = time.monotonic() + 30
        holder = "systemctl is-active --quiet ddp-test-port-holder"
        listening = f"ss -Hltn 'sport = :{port}' | grep -q . && {holder}"
        while on_node(box, "node1", listening).rc != 0:
            assert time.monotonic() < deadline, f"the holder never listened on {port}"
            time.sleep(1)
        refused = box.tooling(
            "deploy", "--phase", "2a", "--inventory", str(box.inventory), "--skip-provision", "--skip-verify",
            "--restart", "--run-id", "port-taken", *[a for s in SMALL_RUN for a in ("--set", s)],
        )  # fmt: skip
        output = refused.stdout + refused.stderr
        assert refused.returncode == 1, explain(refused)
        assert f"node1: port {port} (rendezvous.port" in output and "in use" in output, output[-4000:]
        for host in ("node1", "node2"):
            assert unit_state(box, host) not in ("active", "activating"), f"{host} started a unit"
            started = on_node(box, host, f"test -e {RUN_ROOT}/port-taken/status")
            assert started.rc != 0, f"{host} started ranks of the refused run"
    finally:
        on_node(box, "node1", "systemctl stop ddp-test-port-holder")


def test_node_cut_off_is_absorbed_when_the_site_allows_fewer_nodes(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    run_id = "fault-elastic"
    run_dir = f"{RUN_ROOT}/{run_id}"
    forget_run(box, run_id)
    deploy_run(
        box, "2a", run_id, FAULT_SETS, "--skip-verify", site_phases=site_phases(box, "elastic", min_nodes=1)
    )
    try:
        launcher = on_node(box, "node1", "cat /usr/local/bin/ddp-launch")
        assert "--nnodes 1:2" in launcher.stdout, "the site's min_nodes did not reach torchrun"
        before = wait_for_checkpoint(box, run_dir, 40, MAX_STEPS)
        partition_node2(box)
        injected = time.monotonic()
        # While node1 still waits in the collective: the doctor names node2 as cut off (its SSH answers, its
        # connect to the rendezvous store does not, node1's does) and offers to quarantine it.
        doctor = box.tooling("doctor", "--phase", "2a", "--inventory", str(box.inventory), "--now", "--json")
        assert doctor.returncode == 1, explain(doctor)
        cut = [f for f in json.loads(doctor.stdout)["findings"] if f["kind"] == "unreachable"]
        assert [f["host"] for f in cut] == ["node2"] and cut[0]["evidence"].startswith("cut off: "), cut
        assert "--exclude node2" in doctor.stderr, doctor.stderr
        # The job must finish on node1 alone, without ever leaving its unit (no operator, no fallback).
        summary = wait_for_summary(box, run_dir, stop_on_failed=False)
        absorbed_in = time.monotonic() - injected
        assert (summary["world_size"], summary["nodes"], summary["steps"]) == (4, 1, MAX_STEPS), summary
        worlds = [i["world_size"] for i in summary["incarnations"]]
        assert worlds[0] == 8 and worlds[-1] == 4, summary["incarnations"]
        resumed = summary["checkpoints"]["resumed_from_step"]
        assert resumed is not None and resumed >= before, summary["checkpoints"]
        wait_for_unit_end(box, "node1", time.monotonic(), 60)
        result = on_node(box, "node1", "systemctl show -p Result --value ddp-trainer").stdout.strip()
        assert result == "success", result
        checkpoints_verify(box, run_dir)
        print(f"node cut off: finished on node1 alone {absorbed_in:.0f} s later, resumed from step {resumed}")
    finally:
        heal_node2(box)
