"""Faults on the sandbox cluster: node2 lost (its container killed) or partitioned (its traffic to node1
dropped inside its own network namespace) during a phase-2a run. Phase 2a allows no fewer nodes than it has
(min_nodes 2), so the job must stop on node1 within the configured timeouts, not hang, with its checkpoints
intact; `tooling deploy --phase 2a --fallback 1` then resumes the same run on node1 from its newest
checkpoint. With a site's phases file that lets 2a go down to one node (min_nodes 1), the same loss is
absorbed instead: torchrun re-forms the group on node1 alone and training continues from the checkpoint.

Imported by test_cluster_phase2a.py so they share its provisioned cluster (one module per xdist worker)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable

import pytest
import yaml

from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import (
    RUN_ROOT,
    SMALL_RUN,
    corrupt_newest_checkpoint,
    deploy_run,
    forget_run,
    on_node,
)
from tooling.inventory import load_inventory
from tooling.phases import DEFAULT_PHASES_FILE, load_phases
from tooling.soak.causes import WorkerFailure, parse_failure

VENV_PYTHON = "/opt/ddp/venv/bin/python"
# distributed.timeout_s: how long a collective waits for a silent peer before the rank gives up.
COLLECTIVE_TIMEOUT_S = 30
MAX_STEPS = 600


def _newest_checkpoint(box: Sandbox, run_dir: str) -> int | None:
    shown = on_node(box, "node1", f"cat {run_dir}/checkpoints/manifest.json")
    if shown.rc != 0:
        return None
    return max((int(e["step"]) for e in json.loads(shown.stdout).get("checkpoints", [])), default=None)


def _completed_summary(box: Sandbox, run_dir: str, timeout: float = 600) -> dict:
    # The failed 8-rank incarnation may have left a summary saying "failed": wait for the fallback's.
    deadline = time.monotonic() + timeout
    summary: dict = {}
    while time.monotonic() < deadline:
        shown = on_node(box, "node1", f"cat {run_dir}/summary.json")
        if shown.rc == 0:
            summary = json.loads(shown.stdout)
            if summary["status"] == "completed":
                return summary
        time.sleep(3)
    raise AssertionError(f"the fallback run did not complete within {timeout:.0f} s: {summary.get('status')}")


def _unit_state(box: Sandbox, host: str) -> str:
    return on_node(box, host, "systemctl show -p ActiveState --value ddp-trainer").stdout.strip()


def _restore_node2(box: Sandbox) -> None:
    box.podman("stop", "--time", "2", box.container("node2"))
    restored = box.cli("up", "--nodes", "2")
    assert restored.returncode == 0, explain(restored)


def _wait_for_checkpoint(box: Sandbox, run_dir: str, step: int) -> int:
    deadline = time.monotonic() + 300
    while (_newest_checkpoint(box, run_dir) or 0) < step:
        assert time.monotonic() < deadline, f"no checkpoint at step {step} within 5 minutes"
        time.sleep(2)
    newest = _newest_checkpoint(box, run_dir)
    assert newest is not None and newest < MAX_STEPS, "the run ended before the fault: raise MAX_STEPS"
    return newest


def _lose(box: Sandbox) -> None:
    killed = box.podman("kill", "--signal", "KILL", box.container("node2"))
    assert killed.returncode == 0, killed.stderr


def _partition(box: Sandbox) -> None:
    """Drop node2's traffic to and from node1 in node2's own network namespace (the host is untouched)."""
    pid = box.podman("inspect", "--format", "{{.State.Pid}}", box.container("node2")).stdout.strip()
    node1 = load_inventory(box.inventory)["_meta"]["hostvars"]["node1"]["ansible_host"]
    for rule in (["INPUT", "-s", node1], ["OUTPUT", "-d", node1]):
        dropped = box.run(["nsenter", "-t", pid, "-n", "iptables", "-I", rule[0], *rule[1:], "-j", "DROP"])
        assert dropped.returncode == 0, explain(dropped)


@pytest.mark.parametrize("fault", [_lose, _partition], ids=["node-lost", "node-partitioned"])
def test_node_fault_stops_cleanly_and_the_run_falls_back_to_phase1(
    phase2a_cluster: Sandbox, fault: Callable[[Sandbox], None]
) -> None:
    box = phase2a_cluster
    run_id = f"fault-{fault.__name__.strip('_')}"
    run_dir = f"{RUN_ROOT}/{run_id}"
    sets = [*SMALL_RUN, f"training.max_steps={MAX_STEPS}", f"distributed.timeout_s={COLLECTIVE_TIMEOUT_S}"]
    deploy_run(box, "2a", run_id, sets, "--skip-verify")
    try:
        before = _wait_for_checkpoint(box, run_dir, 40)

        fault(box)
        injected = time.monotonic()
        # A rank notices within the collective timeout; torchrun then waits join_timeout for the lost node
        # to rejoin (min_nodes = nodes) and gives up. Anything past that (plus slack for 2 busy cores) hangs.
        limit = COLLECTIVE_TIMEOUT_S + load_phases().rendezvous.join_timeout_s + 90
        while _unit_state(box, "node1") in ("active", "activating", "deactivating"):
            assert time.monotonic() - injected < limit, f"node1's job still runs {limit} s after the fault"
            time.sleep(3)
        stopped_after = time.monotonic() - injected
        assert _unit_state(box, "node1") == "failed"

        verified = on_node(box, "node1", f"{VENV_PYTHON} -m ddp.checkpoint_verify {run_dir} --json")
        assert verified.rc == 0, verified
        newest = _newest_checkpoint(box, run_dir)
        assert newest is not None and newest >= before, "a checkpoint was lost"

        fallback = box.tooling(
            "deploy", "--phase", "2a", "--fallback", "1", "--inventory", str(box.inventory), "--skip-verify"
        )
        assert fallback.returncode == 0, explain(fallback)
        assert f"run {run_id} of phase 2a" in fallback.stdout, fallback.stdout
        summary = _completed_summary(box, run_dir)
        assert (summary["world_size"], summary["nodes"], summary["steps"]) == (4, 1, MAX_STEPS)
        assert summary["checkpoints"]["resumed_from_step"] == newest
        worlds = [i["world_size"] for i in summary["incarnations"]]
        assert worlds[-1] == 4 and set(worlds) <= {8, 4}, summary["incarnations"]
        print(
            f"{fault.__name__}: job stopped {stopped_after:.0f} s after the fault; resumed from step {newest}"
        )
    finally:
        _restore_node2(box)


def test_node_lost_is_absorbed_when_the_site_allows_fewer_nodes(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    run_id = "fault-elastic"
    run_dir = f"{RUN_ROOT}/{run_id}"
    plan = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    plan["phases"]["2a"]["min_nodes"] = 1
    site_phases = box.tmp / "site-phases-elastic.yml"
    site_phases.write_text(yaml.safe_dump(plan))
    sets = [*SMALL_RUN, f"training.max_steps={MAX_STEPS}", f"distributed.timeout_s={COLLECTIVE_TIMEOUT_S}"]
    forget_run(box, run_id)
    deploy_run(box, "2a", run_id, sets, "--skip-verify", site_phases=site_phases)
    try:
        launcher = on_node(box, "node1", "cat /usr/local/bin/ddp-launch")
        assert "--nnodes 1:2" in launcher.stdout, "the site's min_nodes did not reach torchrun"
        before = _wait_for_checkpoint(box, run_dir, 40)
        _lose(box)
        injected = time.monotonic()
        # The job must finish on node1 alone, without ever leaving its unit (no operator, no fallback).
        summary = _completed_summary(box, run_dir, timeout=600)
        absorbed_in = time.monotonic() - injected
        assert (summary["world_size"], summary["nodes"], summary["steps"]) == (4, 1, MAX_STEPS), summary
        worlds = [i["world_size"] for i in summary["incarnations"]]
        assert worlds[0] == 8 and worlds[-1] == 4, summary["incarnations"]
        resumed = summary["checkpoints"]["resumed_from_step"]
        assert resumed is not None and resumed >= before, summary["checkpoints"]
        assert (
            on_node(box, "node1", "systemctl show -p Result --value ddp-trainer").stdout.strip() == "success"
        )
        verified = on_node(box, "node1", f"{VENV_PYTHON} -m ddp.checkpoint_verify {run_dir} --json")
        assert verified.rc == 0, verified
        print(f"node lost: finished on node1 alone {absorbed_in:.0f} s later, resumed from step {resumed}")
    finally:
        _restore_node2(box)


def _node2_worker(box: Sandbox, run_dir: str, local_rank: int) -> dict:
    """The status record (rank, pid, step) of the worker with `local_rank` on node2."""
    read = "import glob, json, sys; print(json.dumps([json.load(open(p)) for p in glob.glob(sys.argv[1])]))"
    shown = on_node(box, "node2", f"python3 -c {shlex.quote(read)} '{run_dir}/status/rank*.json'")
    assert shown.rc == 0, shown
    return next(r for r in json.loads(shown.stdout) if r.get("local_rank") == local_rank)


def _kill_after_next_checkpoint(box: Sandbox, run_dir: str, damage: bool = False) -> tuple[int, dict]:
    """SIGKILL node2's local rank 1 right after a new checkpoint lands, so none lands in between; with
    `damage`, that newest checkpoint is first corrupted on both nodes."""
    seen = _newest_checkpoint(box, run_dir)
    deadline = time.monotonic() + 300
    while (newest := _newest_checkpoint(box, run_dir)) == seen:
        assert time.monotonic() < deadline, "no new checkpoint within 5 minutes"
        time.sleep(0.5)
    assert newest is not None
    for host in ("node1", "node2") if damage else ():
        damaged = corrupt_newest_checkpoint(box, host, run_dir)
        assert damaged.endswith(f"step-{newest:09d}.pt"), (host, damaged, newest)
    victim = _node2_worker(box, run_dir, local_rank=1)
    killed = on_node(box, "node2", f"kill -KILL {victim['pid']}")
    assert killed.rc == 0, killed
    return newest, victim


def _incarnations(box: Sandbox, run_dir: str, count: int) -> list[dict]:
    """The run's incarnations once there are `count` and the newest has written a checkpoint."""
    deadline = time.monotonic() + 300
    found: list[dict] = []
    while time.monotonic() < deadline:
        shown = on_node(box, "node1", f"cat {run_dir}/summary.json")
        found = json.loads(shown.stdout).get("incarnations", []) if shown.rc == 0 else []
        if len(found) >= count:
            return found
        time.sleep(3)
    raise AssertionError(f"{count} incarnations expected within 5 minutes, saw {found}")


def test_killed_rank_restarts_from_the_last_good_checkpoint(phase2a_cluster: Sandbox) -> None:
    """A SIGKILLed rank: torchrun restarts the whole group on both nodes from the newest checkpoint; then
    with that newest checkpoint damaged on every node, the restart falls back to the one before it."""
    box = phase2a_cluster
    run_dir = f"{RUN_ROOT}/fault-rank"
    every = 200  # steps: a window of seconds between checkpoints for the damage and the kill to land in
    sets = [*SMALL_RUN, "training.max_steps=1500", f"checkpoint.every_steps={every}"]
    forget_run(box, "fault-rank")
    deploy_run(box, "2a", "fault-rank", sets, "--skip-verify")

    newest, victim = _kill_after_next_checkpoint(box, run_dir)
    second = _incarnations(box, run_dir, 2)[-1]
    # Node1's agent counts the restart only when its own workers failed first (the dead peer breaks their
    # collective) rather than seeing node2 rejoin: 0 or 1, and the summary counts incarnations instead.
    assert second["world_size"] == 8 and second["restart_count"] in (0, 1), second
    assert second["resumed_from_step"] == newest, (second, newest)
    # The victim's last reported step is at most a status interval behind where it died.
    assert 0 <= victim["step"] - newest <= every, (victim, newest)
    # The cause, as torchrun's agent logged it and as `tooling soak` reads it.
    agent_log = on_node(box, "node2", "journalctl -u ddp-trainer --no-pager -o cat").stdout
    failures = [f for f in map(parse_failure, agent_log.splitlines()) if f is not None]
    assert WorkerFailure(-9, 1, victim["pid"]) in failures, agent_log[-3000:]

    damaged_step, _ = _kill_after_next_checkpoint(box, run_dir, damage=True)
    third = _incarnations(box, run_dir, 3)[-1]
    assert third["resumed_from_step"] == damaged_step - every, (third, damaged_step)
    skipped = on_node(box, "node1", f"grep -h 'skipping checkpoint' {run_dir}/logs/rank*.ndjson").stdout
    assert f"step-{damaged_step:09d}.pt" in skipped and "sha256 does not match" in skipped, skipped

    summary = _completed_summary(box, run_dir)
    assert summary["steps"] == 1500 and summary["restarts"] == 2, summary["incarnations"]
    verified = on_node(box, "node1", f"{VENV_PYTHON} -m ddp.checkpoint_verify {run_dir} --json")
    assert verified.rc == 0, verified


def test_taken_rendezvous_port_stops_the_launch_on_every_node(phase2a_cluster: Sandbox) -> None:
    """Something else listens on node1's rendezvous port: deploy refuses before any unit starts, naming the
    node, the port and the setting, instead of torchrun talking to a stranger or node2 waiting forever."""
    box = phase2a_cluster
    port = load_phases().rendezvous.port
    hold = (
        f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {port})); s.listen(); time.sleep(900)"
    )
    forget_run(box, "port-taken")
    held = on_node(box, "node1", f"systemd-run --unit ddp-test-port-holder python3 -c {shlex.quote(hold)}")
    assert held.rc == 0, held
    try:
        deadline = time.monotonic() + 30
        while not on_node(box, "node1", f"ss -Hltn 'sport = :{port}'").stdout.strip():
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
            assert _unit_state(box, host) not in ("active", "activating"), f"{host} started a unit"
            started = on_node(box, host, f"test -e {RUN_ROOT}/port-taken/status")
            assert started.rc != 0, f"{host} started ranks of the refused run"
    finally:
        on_node(box, "node1", "systemctl stop ddp-test-port-holder")
