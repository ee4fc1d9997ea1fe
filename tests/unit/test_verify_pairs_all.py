"""`verify-node --pairs all`: the option, the matrix read from published outputs, its findings and JSON,
and one local run of playbooks/verify.yml with every pair (two 'nodes' on this machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.test_verify_cli import NEEDS_LOCAL_TOOLS, _mounted, run_local
from tooling.console import ToolingError
from tooling.verify import pair_report
from tooling.verify.judge import CLUSTER, judge_all
from tooling.verify.pair_schedule import PairMode
from tooling.verify.profiles import load_profile
from tooling.verify.run import Level, run_verify

SANDBOX = load_profile("sandbox")
PROBE_ANSWER = (Path(__file__).parent / "fixtures" / "verify" / "collective_bw_1node_2proc.txt").read_text()


def _iperf(gbps: float) -> dict[str, Any]:
    doc = {
        "end": {"sum_received": {"bits_per_second": gbps * 1e9}, "sum_sent": {"bits_per_second": gbps * 1e9}}
    }
    return {"rc": 0, "stdout": json.dumps(doc), "stderr": ""}


def _net(gbps: dict[tuple[str, str], float], nodes: list[str]) -> dict[str, Any]:
    pairs = {
        f"{a}<->{b}": {
            a: {"rc": 0, "stdout": PROBE_ANSWER, "stderr": ""},
            b: {"rc": 0, "stdout": "", "stderr": ""},
        }
        for i, a in enumerate(nodes)
        for b in nodes[i + 1 :]
    }
    return {
        "nodes": nodes,
        "level": "full",
        "iperf": {f"{c}->{s}": {"client": c, "server": s, "result": _iperf(v)} for (c, s), v in gbps.items()},
        "pair_collectives": pairs,
    }


def test_the_option_reaches_the_run_and_ring_stays_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import tooling.verify.run as run

    seen: list[PairMode] = []
    monkeypatch.setattr(run, "run_verify", lambda *a, **kw: seen.append(kw["pairs"]) or 0)
    app, runner = _mounted(), CliRunner()
    assert runner.invoke(app, ["verify-node", "--phase", "2a", "--pairs", "all"]).exit_code == 0
    assert runner.invoke(app, ["verify-node", "--phase", "2a"]).exit_code == 0
    assert seen == [PairMode.all, PairMode.ring]
    bad = runner.invoke(app, ["verify-node", "--pairs", "mesh"])
    assert bad.exit_code == 2 and "mesh" in bad.output
    assert "--pairs" in runner.invoke(app, ["verify-node", "--help"]).output


def test_pairs_all_at_the_quick_level_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ToolingError, match="--level full") as info:
        run_verify(
            [], "2a", tmp_path / "nope", "sandbox", as_json=True, level=Level.quick, pairs=PairMode.all
        )
    assert info.value.exit_code == 2


def test_a_shaped_direction_is_named_and_flagged() -> None:
    nodes = ["node1", "node2"]
    matrix, failed = pair_report.build_matrix(
        nodes, _net({("node1", "node2"): 9.0, ("node2", "node1"): 0.05}, nodes)
    )
    assert matrix.cell("node2", "node1") == pytest.approx(0.05)
    assert failed == {}
    rows = pair_report.pair_findings(matrix, SANDBOX)
    by = {(r.host, r.check): r for r in rows}
    assert by[("node2", "net.pair_blame -> node1")].status == "FAIL"
    assert by[(CLUSTER, "net.pair_asymmetry node2->node1")].status == "WARN"
    doc = pair_report.to_json(matrix, SANDBOX)
    assert doc["gbps"]["node2"]["node1"] == pytest.approx(0.05)
    assert doc["allreduce_busbw_gbs"]["node1"]["node2"] > 0
    assert [c["host"] for c in doc["culprits"]] == ["node2"]


def test_a_pair_all_reduce_that_failed_is_reported_with_its_error() -> None:
    nodes = ["node1", "node2", "node3"]
    net = _net({d: 9.0 for d in [("node1", "node2"), ("node2", "node1")]}, nodes)
    net["pair_collectives"]["node2<->node3"] = {
        "node2": {"rc": 1, "stdout": "", "stderr": "DistNetworkError: timed out"},
        "node3": {"rc": 124, "stdout": "", "stderr": ""},
    }
    matrix, failed = pair_report.build_matrix(nodes, net)
    rows = {r.check: r for r in pair_report.pair_findings(matrix, SANDBOX, failed)}
    row = rows["net.pair_allreduce node2<->node3"]
    assert row.status == "FAIL" and "node2: torchrun failed (rc 1): DistNetworkError" in row.reason


def test_healthy_matrix_has_no_findings() -> None:
    nodes = ["node1", "node2", "node3"]
    gbps = {(a, b): 9.0 for a in nodes for b in nodes if a != b}
    matrix, _ = pair_report.build_matrix(nodes, _net(gbps, nodes))
    assert pair_report.pair_findings(matrix, SANDBOX) == []


def test_the_phase_probe_gives_the_all_to_all_figure() -> None:
    net = {"nodes": ["node1", "node2"], "gloo": {"node1": {"rc": 0, "stdout": PROBE_ANSWER, "stderr": ""}}}
    rows = {r.check: r for r in judge_all(SANDBOX, [], {}, net, {}) if r.host == CLUSTER}
    assert rows["net.gloo_alltoall"].status == "PASS"
    assert "0.398 GB/s busbw (2 ranks, 16 MiB)" in rows["net.gloo_alltoall"].measured
    slow = SANDBOX.model_copy(
        update={
            "gloo_alltoall_busbw_gbs": SANDBOX.gloo_busbw_gbs.model_copy(
                update={"min": 1.0, "warn_below": 2.0}
            )
        }
    )
    assert {r.check: r for r in judge_all(slow, [], {}, net, {})}["net.gloo_alltoall"].status == "FAIL"


@pytest.mark.slow
@NEEDS_LOCAL_TOOLS
def test_local_run_measures_every_pair_both_ways(tmp_path: Path) -> None:
    """playbooks/verify.yml with --pairs all on two 'nodes' of this machine (loopback)."""
    _, document = run_local(tmp_path, ["node1", "node2"], pairs=PairMode.all)
    gbps = document["pairs"]["gbps"]
    assert gbps["node1"]["node2"] > 0 and gbps["node2"]["node1"] > 0
    assert document["pairs"]["allreduce_busbw_gbs"]["node1"]["node2"] > 0
    checks = {(r["host"], r["check"]): r["status"] for r in document["results"]}
    assert checks[("node1", "net.iperf3 -> node2")] == "PASS"
    assert checks[("node2", "net.iperf3 -> node1")] == "PASS"
    assert checks[(CLUSTER, "net.gloo_alltoall")] == "PASS"


def test_the_rounds_reach_the_playbook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tooling.verify.run as run

    seen: dict[str, Any] = {}
    monkeypatch.setattr(run, "run_playbook", lambda *args, **kwargs: seen.update(kwargs) or "ran")
    target = run.Target(["node1", "node2", "node3"], "phase 2b", None)
    run.collect(target, tmp_path, tmp_path, install_iperf3=False, progress_console=None, pairs=PairMode.all)
    rounds = seen["extravars"]["verify_pair_rounds"]
    assert seen["extravars"]["verify_pairs"] == "all"
    # 3 nodes: 3 circle rounds (a bye each), each measured one way then the other.
    assert len(rounds) == 6 and all(len(r) == 1 for r in rounds)
    assert sorted(tuple(p) for r in rounds for p in r) == sorted(
        (a, b) for a in target.hosts for b in target.hosts if a != b
    )
