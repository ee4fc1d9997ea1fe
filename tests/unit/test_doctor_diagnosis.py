"""tooling doctor's verdict on made-up evidence: every rule, and a healthy run naming nobody."""

from __future__ import annotations

from typing import Any

from tooling.doctor.diagnosis import MIN_STALL_S, NodeEvidence, Settings, diagnose, stall_threshold_s
from tooling.doctor.stacks import collective

NOW = 1_000_000.0
ALLREDUCE_STACK = """Thread 11 (idle): "MainThread"
    wait (torch/distributed/distributed_c10d.py:200)
    all_reduce (torch/distributed/distributed_c10d.py:2800)
    heartbeat (ddp/telemetry.py:300)
    run (ddp/trainer.py:290)
Thread 12 (idle): "Thread-1 (serve_forever)"
    broadcast (somewhere.py:1)
"""


def rank(
    number: int, step: int = 100, age: float = 1.0, process: str | None = "S", **extra: Any
) -> dict[str, Any]:
    return {
        "rank": number,
        "pid": 4000 + number,
        "state": "running",
        "step": step,
        "updated_at": NOW - age,
        "step_seconds": 0.05,
        "status_every_steps": 10,
        "straggler": False,
        "process": {"state": process, "stack": ALLREDUCE_STACK, "stack_error": None},
        **extra,
    }


def node(host: str, *ranks: dict[str, Any], rendezvous: dict[str, Any] | None = None) -> NodeEvidence:
    return NodeEvidence(
        host, {"node_time": NOW, "ranks": list(ranks), "agents": [], "rendezvous": rendezvous}
    )


def by_rank(findings: list[Any]) -> dict[int | None, list[Any]]:
    out: dict[int | None, list[Any]] = {}
    for f in findings:
        out.setdefault(f.rank, []).append(f)
    return out


def test_a_healthy_run_names_nobody_even_on_demand() -> None:
    nodes = [node("node1", rank(0), rank(1, step=95)), node("node2", rank(2), rank(3))]
    assert diagnose(nodes, Settings(world_size=4)) == []
    assert diagnose(nodes, Settings(world_size=4, now=True)) == []


def test_a_stopped_rank_is_named_with_its_node_and_its_peers_wait_in_allreduce() -> None:
    nodes = [node("node1", rank(0), rank(1)), node("node2", rank(2, process="T"), rank(3))]
    findings = by_rank(diagnose(nodes, Settings(world_size=4)))
    (stopped,) = findings[2]
    assert (stopped.kind, stopped.host) == ("hang", "node2")
    assert "stopped (state T in /proc/4002/stat)" in stopped.evidence
    for peer in (0, 1, 3):
        (blocked,) = findings[peer]
        assert blocked.kind == "hang"
        assert "in allreduce" in blocked.evidence and "waiting for rank 2 (stopped)" in blocked.evidence


def test_a_gone_process_is_dead_and_a_missing_rank_too() -> None:
    nodes = [node("node1", rank(0, process=None), rank(1))]
    findings = by_rank(diagnose(nodes, Settings(world_size=3)))
    assert findings[0][0].kind == "dead" and "process 4000 is gone" in findings[0][0].evidence
    assert findings[2][0].kind == "dead" and "no status file" in findings[2][0].evidence


def test_an_unreachable_node_is_named_with_the_reason_and_its_ranks_are_not_called_missing() -> None:
    nodes = [
        node("node1", rank(0), rank(1)),
        NodeEvidence("node2", error="timed out connecting to 10.0.0.2:22"),
    ]
    findings = diagnose(nodes, Settings(world_size=4))
    assert [(f.kind, f.rank, f.host) for f in findings] == [("unreachable", None, "node2")]
    assert "timed out connecting" in findings[0].evidence


def test_a_stall_past_k_median_steps_is_a_hang_naming_the_rank_behind() -> None:
    age = MIN_STALL_S + 5
    nodes = [node("node1", rank(0, step=200, age=age), rank(1, step=150, age=age))]
    findings = by_rank(diagnose(nodes, Settings(world_size=2)))
    assert "behind: step 150 while others reached 200" in findings[1][0].evidence
    assert "no status moved" in findings[0][0].evidence
    # the same ages under the threshold: nothing
    young = [node("node1", rank(0, step=200, age=5), rank(1, step=150, age=5))]
    assert diagnose(young, Settings(world_size=2)) == []


def test_the_stall_threshold_is_k_median_step_times_status_intervals_with_a_floor() -> None:
    slow = [{"step_seconds": 2.0, "status_every_steps": 10}] * 3
    assert stall_threshold_s(slow, 5) == 100.0
    assert stall_threshold_s([{"step_seconds": 0.01, "status_every_steps": 10}], 5) == MIN_STALL_S


def test_an_unresolvable_rendezvous_name_is_reported_by_name() -> None:
    check = {
        "endpoint": "store.invalid:29400",
        "host": "store.invalid",
        "error": "name 'store.invalid' does not resolve",
    }
    (finding,) = diagnose([node("node1", rank(0), rendezvous=check)], Settings(world_size=1))
    assert (finding.kind, finding.rank, finding.host) == ("unreachable", None, "store.invalid")
    assert "store.invalid:29400" in finding.evidence


def _endpoint(error: str | None, failed: str | None) -> dict[str, Any]:
    return {"endpoint": "10.0.0.11:29400", "host": "10.0.0.11", "error": error, "failed": failed}


def test_a_node_that_alone_cannot_reach_the_rendezvous_is_named_cut_off() -> None:
    """node2 partitioned: its SSH answers, its connect to the store on node1 times out, node1's works."""
    timed_out = _endpoint("10.0.0.11:29400 resolves to 10.0.0.11 but does not connect: timed out", "connect")
    nodes = [
        node("node1", rank(0), rendezvous=_endpoint(None, None)),
        node("node2", rank(1), rendezvous=timed_out),
    ]
    cut = [f for f in diagnose(nodes, Settings(world_size=2)) if f.kind == "unreachable"]
    assert [(f.host, f.at_fault) for f in cut] == [("node2", True)]
    assert cut[0].evidence.startswith("cut off: ") and "while node1 connect" in cut[0].evidence


def test_when_no_node_reaches_the_rendezvous_the_endpoint_is_named() -> None:
    refused = _endpoint("10.0.0.11:29400 resolves to 10.0.0.11 but does not connect: refused", "connect")
    nodes = [node("node1", rank(0), rendezvous=refused), node("node2", rank(1), rendezvous=refused)]
    cut = [f for f in diagnose(nodes, Settings(world_size=2)) if f.kind == "unreachable"]
    assert [f.host for f in cut] == ["10.0.0.11", "10.0.0.11"]


def test_stragglers_come_from_the_ranks_own_flags() -> None:
    nodes = [node("node3", rank(4, straggler=True, compute_ratio_to_median=1.8), rank(5))]
    (finding,) = diagnose(nodes, Settings())
    assert (finding.kind, finding.rank, finding.host) == ("straggler", 4, "node3")
    assert "1.80x" in finding.evidence


def test_ranks_that_ended_and_said_so_are_not_hung() -> None:
    done = [node("node1", rank(0, process=None, state="completed"))]
    assert diagnose(done, Settings(world_size=1)) == []


def test_collectives_read_from_py_spy_and_faulthandler_stacks() -> None:
    assert collective(ALLREDUCE_STACK) == "allreduce"  # the main thread's, not the server thread's
    faulthandler = (
        'Thread 0x1 (most recent call first):\n  File "x.py", line 3 in wait\n'
        '  File "torch/distributed/distributed_c10d.py", line 9 in barrier\n  File "t.py", line 1 in run\n'
    )
    assert collective(faulthandler.replace("most recent call first", "most recent call last")) == "barrier"
    store = (
        'Thread 1 (idle): "MainThread"\n'
        "    get (torch/distributed/elastic/rendezvous/c10d_rendezvous_backend.py:80)\n"
        "    next_rendezvous (torch/distributed/elastic/rendezvous/dynamic_rendezvous.py:1100)\n"
    )
    assert collective(store) == "store wait/get (rendezvous)"
    assert collective("") is None
    assert collective('Thread 1 (idle): "MainThread"\n    train (user.py:1)\n') is None
