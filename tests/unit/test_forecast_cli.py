"""`tooling forecast` end to end: runs and verify-node's record found in the state root, the table and the
JSON document, the exit codes, the missing measurements named, and the comparison with a measured run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.unit.forecast_fakes import Truth, summary, write_run, write_verify_record
from tests.unit.panel_text import flat
from tooling import home
from tooling.cli import app
from tooling.console import console
from tooling.verify.recorded import latest_busbw

runner = CliRunner()
PERFECT = Truth(overlap=1.0, alpha_s=0.0)  # every all-reduce hidden: scaling is linear


def _setup(truth: Truth, *, phases: tuple[tuple[str, int], ...] = (("1", 1), ("2a", 2))) -> Path:
    """Runs named as rehearsals name them under <home>/runs, and a verify-node record of the bandwidth."""
    for phase, nodes in phases:
        write_run(home.runs(), f"rehearsal-phase{phase}-20261201-000000", summary(truth, nodes, spread=0.03))
    write_verify_record(home.verify(), "20261201T000000.000000Z", truth.busbw_gbs, ["node1", "node2"])
    return home.runs()


def _invoke(*args: str) -> tuple[int, str]:
    # The shared console took its width when it was made (80 without a terminal, as in CI): widen it for
    # the table's cells to stay on one line each, then give it back.
    width = console.width
    console.width = 200
    try:
        result = runner.invoke(app, ["forecast", *args], env={"COLUMNS": "200"})
    finally:
        console.width = width
    return result.exit_code, result.output


def test_json_gives_the_prediction_the_model_and_the_gate() -> None:
    truth = Truth()
    _setup(truth)
    code, out = _invoke("--phase", "2b", "--json")
    document = json.loads(out)
    assert document["phase"] == "2b" and document["world_size"] == 12 and document["nodes"] == 3
    assert [r["phase"] for r in document["runs"]] == ["1", "2a"]
    throughput = document["predicted"]["throughput"]
    assert throughput["low"] <= throughput["value"] <= throughput["high"]
    assert throughput["value"] == pytest.approx(truth.throughput(12, 3), rel=1e-6)
    model = document["model"]
    assert model["overlap_ratio"] == pytest.approx(truth.overlap, abs=1e-6)
    assert model["alpha_seconds"] == pytest.approx(truth.alpha_s, rel=1e-5)
    assert model["busbw_bytes_per_s"] == pytest.approx(truth.busbw_gbs * 1e9)
    assert "verify-node Gloo probe" in model["bandwidth_source"]
    criteria = {c["criterion"]: c for c in document["gate"]["criteria"]}
    assert set(criteria) == {"throughput", "scaling_efficiency", "efficiency_degradation", "comm_overhead"}
    assert criteria["scaling_efficiency"]["target"] == {"op": ">=", "value": 1.08}  # the plan's, not restated
    assert document["gate"]["decision"] == "NO-GO"  # below 100 % efficiency never meets 108 %
    assert code == 1
    assert document["compare"] is None


def test_the_table_and_a_go_on_site_criteria(tmp_path: Path) -> None:
    _setup(PERFECT)
    site = tmp_path / "criteria.yml"
    relaxed = {"target": ">= 95%", "minimum": ">= 90%"}
    site.write_text(yaml.safe_dump({"gate_criteria": {"2b": {"scaling_efficiency": relaxed}}}))
    code, out = _invoke("--phase", "2b", "--criteria", str(site))
    assert code == 0, out
    assert "phase 2b forecast" in out and "scaling efficiency vs. the first phase" in out
    assert "overlap = 100.0%" in out and "per-hop latency alpha = - (all hidden)" in out
    assert "gate on these figures: GO" in out
    # 2c's gate has no degradation criterion: the figure is shown, not judged.
    code, out = _invoke("--phase", "2c")
    assert code == 1 and "efficiency degradation" in out and "not gated in this phase" in out


def test_explicit_runs_and_a_given_bandwidth(tmp_path: Path) -> None:
    truth = Truth()
    one = write_run(tmp_path, "a", summary(truth, 1))
    two = write_run(tmp_path, "b", summary(truth, 2))
    code, out = _invoke(
        "--phase", "2c", "--from", str(one), "--from", str(two / "summary.json"), "--busbw", "1.25", "--json"
    )
    document = json.loads(out)
    assert code == 1  # 100 % efficiency at most: 2c's 110 % is out of reach
    assert document["model"]["bandwidth_source"] == "--busbw 1.25 GB/s"
    assert document["predicted"]["throughput"]["value"] == pytest.approx(truth.throughput(16, 4), rel=1e-6)


def test_compare_prints_the_error_against_a_measured_run(tmp_path: Path) -> None:
    truth = Truth()
    _setup(truth)
    measured = Truth(compute_s=truth.compute_s * 1.1)  # the real 2b ran 10 % slower per step than predicted
    run_2b = write_run(tmp_path, "2b", summary(measured, 3))
    _, out = _invoke("--phase", "2b", "--compare", str(run_2b), "--json")
    figures = json.loads(out)["compare"]["figures"]
    expected = (truth.throughput(12, 3) - measured.throughput(12, 3)) / measured.throughput(12, 3)
    assert figures["throughput"]["error_ratio"] == pytest.approx(expected, rel=1e-6)
    assert figures["throughput"]["inside_band"] is False
    _, out = _invoke("--phase", "2b", "--compare", str(run_2b))
    assert f"error {expected:+.1%} (outside the band)" in out
    wrong = write_run(tmp_path, "2c", summary(truth, 4))
    code, out = _invoke("--phase", "2b", "--compare", str(wrong))
    assert code == 2 and "compare with a run of phase 2b" in flat(out)


def test_no_bandwidth_says_how_to_measure_it() -> None:
    _setup(Truth())
    for data_dir in home.verify().iterdir():
        for path in sorted(data_dir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        data_dir.rmdir()
    code, out = _invoke("--phase", "2b")
    assert code == 2
    assert "no all-reduce bus bandwidth measured" in flat(out) and "tooling verify-node --phase 2a" in flat(
        out
    )


def test_no_run_says_which_phases_to_run() -> None:
    code, out = _invoke("--phase", "2b", "--busbw", "1")
    assert code == 2 and "no measured run of a phase before 2b" in flat(out)


def test_runs_on_one_node_only_name_the_missing_run() -> None:
    _setup(Truth(), phases=(("1", 1),))
    code, out = _invoke("--phase", "2b")
    assert code == 2
    assert "no run on more than one node" in flat(out) and "--from RUN1 --from RUN2A" in flat(out)


def test_a_run_without_any_communication_figure_is_named(tmp_path: Path) -> None:
    data = summary(Truth(), 2)
    for rank in data["ranks"]:
        del rank["collective_wait_seconds_mean"]
    del data["comm_overhead_ratio"]
    run = write_run(tmp_path, "old", data)
    code, out = _invoke("--phase", "2b", "--from", str(run), "--busbw", "1")
    assert code == 2 and "comm_overhead_ratio" in flat(out) and str(run) in out.replace("\n", "")


def test_runs_of_different_models_are_refused(tmp_path: Path) -> None:
    one = write_run(tmp_path, "a", summary(Truth(), 1))
    two = write_run(tmp_path, "b", summary(Truth(parameters=10), 2))
    code, out = _invoke("--phase", "2b", "--from", str(one), "--from", str(two), "--busbw", "1")
    assert code == 2 and "different models or batches" in flat(out)


def test_the_newest_verify_record_with_a_probe_across_nodes_wins(tmp_path: Path) -> None:
    write_verify_record(tmp_path, "20261201T000000.000000Z", 0.5, ["node1", "node2"])
    write_verify_record(tmp_path, "20261202T000000.000000Z", 0.9, ["node1", "node2", "node3"])
    one_node = write_verify_record(tmp_path, "20261203T000000.000000Z", 5.0, ["node1"])
    found = latest_busbw(tmp_path)
    assert found is not None and found.probe.busbw_gbs == 0.9 and found.nodes == ["node1", "node2", "node3"]
    assert one_node.is_dir() and os.listdir(tmp_path)  # the one-node record was there and skipped
    assert latest_busbw(tmp_path / "absent") is None


def test_prometheus_figures_replace_the_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    from tooling.gates import prometheus
    from tooling.plan.measurements import Measurement

    truth = Truth()
    _setup(truth)
    asked: list[tuple[float, float, int]] = []

    def measure(client, start, end, expected_ranks, step=None):  # the gate's Prometheus reader, faked
        asked.append((start, end, expected_ranks))
        rate = 1000.0 * expected_ranks
        return {
            "throughput": Measurement(rate, "prometheus"),
            "throughput_sigma": Measurement(0.0, "prometheus"),
        }, 15.0

    monkeypatch.setattr(prometheus, "measure", measure)
    _, out = _invoke("--phase", "2b", "--prometheus", "http://127.0.0.1:1", "--json")
    document = json.loads(out)
    assert [r["throughput"] for r in document["runs"]] == [4000.0, 8000.0]
    assert [a[2] for a in asked] == [4, 8] and all(start < end for start, end, _ in asked)
    assert all(r["spread_ratio"] == 0.0 for r in document["runs"])
