"""The step-time model behind `tooling forecast`: a fit on summaries made from known parameters finds them,
its predictions follow the ring all-reduce formula, its band follows the runs' noise, and runs that cannot
determine it are named as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.fixtures.gates.recorded import FIXTURES, recorded
from tests.unit.forecast_fakes import BATCH, Truth, summary
from tooling.forecast.evidence import measured_run
from tooling.forecast.predict import forecast
from tooling.gates.site import effective_criteria
from tooling.plan.phases import load_phases
from tooling.plan.step_model import ModelError, Network, RunPoint, fit

PLAN = load_phases()


def _runs(truth: Truth, shapes: list[int], **kwargs: float) -> list:
    return [measured_run(summary(truth, nodes, **kwargs), Path(f"run{nodes}"), PLAN) for nodes in shapes]


def _forecast(truth: Truth, phase: str, shapes: list[int], **kwargs: float):
    runs = _runs(truth, shapes, **kwargs)
    criteria = effective_criteria(phase, PLAN.get(phase), None, None)
    return forecast(PLAN, phase, runs, truth.busbw_gbs * 1e9, "test", criteria)


@pytest.mark.parametrize(
    "truth",
    [
        Truth(),
        Truth(compute_s=0.05, overlap=0.0, alpha_s=0.0002),
        Truth(overlap=0.9, alpha_s=0.004, busbw_gbs=0.2),
    ],
)
@pytest.mark.parametrize("shapes", [[1, 2], [1, 2, 3]])
def test_the_fit_finds_the_parameters_the_runs_were_made_from(truth: Truth, shapes: list[int]) -> None:
    runs = _runs(truth, shapes)
    model = fit([r.point for r in runs], Network(truth.gradient_bytes, truth.busbw_gbs * 1e9))
    assert model.compute_seconds == pytest.approx(truth.compute_s, rel=1e-6)
    assert model.overlap == pytest.approx(truth.overlap, abs=1e-6)
    assert model.alpha_seconds == pytest.approx(truth.alpha_s, rel=1e-5)
    assert model.other_ratio == pytest.approx(1.0, rel=1e-9)


def test_errors_in_the_measured_waits_stay_small_in_the_prediction() -> None:
    # Overlap and latency trade against each other under noise; the step time they predict does not.
    truth = Truth()
    runs = [
        measured_run(summary(truth, nodes, wait_error=error), Path(f"run{nodes}"), PLAN)
        for nodes, error in ((1, 0.03), (2, -0.03), (3, 0.02))
    ]
    model = fit([r.point for r in runs], Network(truth.gradient_bytes, truth.busbw_gbs * 1e9))
    assert model.overlap == pytest.approx(truth.overlap, abs=0.1)
    assert model.step_seconds(16, 4) == pytest.approx(BATCH * 16 / truth.throughput(16, 4), rel=0.03)


@pytest.mark.parametrize("phase", ["2b", "2c"])
def test_the_prediction_is_the_formula_for_the_phase(phase: str) -> None:
    truth = Truth()
    target = PLAN.get(phase)
    result = _forecast(truth, phase, [1, 2])
    n, nodes = target.world_size, target.nodes
    expected = BATCH * n / (truth.compute_s + (1 - truth.overlap) * truth.ring_s(n, nodes))
    assert result.figures["throughput"].value == pytest.approx(expected, rel=1e-6)
    assert result.figures["throughput"].value == pytest.approx(truth.throughput(n, nodes), rel=1e-6)
    wait = truth.wait_s(n, nodes)
    assert result.figures["comm_overhead"].value == pytest.approx(wait / (truth.compute_s + wait), rel=1e-6)
    first = PLAN.get("1")
    expected_e1 = expected / (truth.throughput(first.world_size, first.nodes) * n / first.world_size)
    assert result.figures["efficiency_vs_first"].value == pytest.approx(expected_e1, rel=1e-6)
    previous = PLAN.get(target.previous)
    expected_e = expected / (truth.throughput(previous.world_size, previous.nodes) * n / previous.world_size)
    assert result.figures["scaling_efficiency"].value == pytest.approx(expected_e, rel=1e-6)


def test_without_noise_the_band_is_the_value_and_with_noise_it_holds_the_truth() -> None:
    truth = Truth()
    exact = _forecast(truth, "2c", [1, 2])
    for b in exact.figures.values():
        assert b.low == pytest.approx(b.value) and b.high == pytest.approx(b.value)
    narrow = _forecast(truth, "2c", [1, 2], spread=0.02).figures["throughput"]
    wide = _forecast(truth, "2c", [1, 2], spread=0.08).figures["throughput"]
    assert narrow.low < truth.throughput(16, 4) < narrow.high
    assert wide.high - wide.low > 2 * (narrow.high - narrow.low)


def test_the_gate_verdicts_follow_the_phase_criteria() -> None:
    # Per-rank rates far above phase 2c's throughput bound, and all communication hidden: throughput and
    # overhead pass, and the efficiency against 2b is ~100 %, short of the plan's 110 %.
    truth = Truth(compute_s=0.001, overlap=1.0, alpha_s=0.0)
    result = _forecast(truth, "2c", [1, 2])
    verdicts = {row.name: row.verdict for row in result.rows}
    assert verdicts == {
        "throughput": "PASS",
        "comm_overhead": "PASS",
        "scaling_efficiency": "FAIL",
    }
    assert result.decision == "NO-GO"


def test_runs_of_one_node_only_cannot_fit_the_network_term() -> None:
    truth = Truth()
    point = _runs(truth, [1])[0].point
    small = RunPoint("one", 2, 1, 0.02, 0.019, 0.001, 0.0)
    with pytest.raises(ModelError, match="no run on more than one node"):
        fit([point, small], Network(truth.gradient_bytes, 1e9))


def test_one_shape_cannot_tell_overlap_from_latency() -> None:
    truth = Truth()
    runs = _runs(truth, [2, 2])
    with pytest.raises(ModelError, match="one shape only"):
        fit([r.point for r in runs], Network(truth.gradient_bytes, 1e9))


def test_recorded_runs_without_the_split_fall_back_on_the_probe() -> None:
    plan = PLAN
    runs = []
    for name in ("phase1_4rank_cpu", "phase2a_2x4_cpu"):
        data = recorded(name)
        run = measured_run(data, FIXTURES / f"{name}.json", plan)
        step = data["samples_per_step"] / data["throughput"]["global_samples_per_second_mean"]
        assert run.split_from == "no_sync probe"
        assert run.point.wait_seconds == pytest.approx(data["comm_overhead_ratio"] * step)
        assert run.point.compute_seconds + run.point.wait_seconds == pytest.approx(step)
        runs.append(run)
    assert [r.phase for r in runs] == ["1", "2a"]
    criteria = effective_criteria("2b", plan.get("2b"), None, None)
    result = forecast(plan, "2b", runs, 0.6e9, "test", criteria)
    for b in result.figures.values():
        assert b.low <= b.value <= b.high
    # A measured phase enters with its measured throughput: 2a's efficiency against 1 is the measured one.
    x1, x2a = (r.throughput for r in runs)
    e2a = x2a / (x1 * 2)
    assert result.figures["efficiency_degradation"].value == pytest.approx(
        (e2a - result.figures["scaling_efficiency"].value) / e2a
    )


def test_a_recorded_run_with_the_split_uses_it() -> None:
    data = recorded("phase1_2rank_split_cpu")
    run = measured_run(data, Path("split.json"), PLAN)
    assert run.split_from == "compute/wait split"
    waits = [r["collective_wait_seconds_mean"] for r in data["ranks"]]
    assert run.point.wait_seconds == pytest.approx(sum(waits) / len(waits))
