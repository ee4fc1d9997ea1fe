"""Verdicts and GO/NO-GO on recorded runs (tests/unit/fixtures/gates: real trainer summaries, trimmed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.unit.fixtures.gates.recorded import baseline_of, recorded, run_gate, verdicts
from tooling.gates.judge import judge
from tooling.gates.scaling import Baseline, compute
from tooling.gates.site import Criterion
from tooling.plan.bounds import Bound
from tooling.plan.measurements import Measurement

THROUGHPUT = Criterion("throughput", Bound(">=", 270), Bound(">=", 250))
SIGMA = Criterion("throughput_sigma", Bound("<", 10), Bound("<", 20))


@pytest.mark.parametrize(
    ("criterion", "value", "verdict"),
    [
        (THROUGHPUT, 300.0, "PASS"),
        (THROUGHPUT, 270.0, "PASS"),
        (THROUGHPUT, 260.0, "WARN"),
        (THROUGHPUT, 249.9, "FAIL"),
        (SIGMA, 9.9, "PASS"),
        (SIGMA, 10.0, "WARN"),  # "< 10" is strict
        (SIGMA, 20.0, "FAIL"),
    ],
)
def test_pass_warn_fail(criterion: Criterion, value: float, verdict: str) -> None:
    assert judge(criterion, Measurement(value, "summary"), "cpu").verdict == verdict


def test_recorded_4rank_run_against_phase1() -> None:
    result = run_gate("1", recorded("phase1_4rank_cpu"))
    v = verdicts(result)
    # This CPU host's run: fast enough, but gloo on shared cores makes the rate jumpy and comm-bound.
    assert v["world_size"] == "PASS"
    assert v["throughput"] == "PASS"
    assert v["throughput_sigma"] == "FAIL"
    assert v["comm_overhead"] == "FAIL"
    assert v["memory_pressure"] == v["nonfinite_losses"] == v["grad_sync_accuracy"] == "PASS"
    assert result.decision == "NO-GO"


def test_warn_still_goes(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        {
            "1": {
                "throughput": {"target": ">= 20000", "minimum": ">= 10000"},  # 11271 measured: WARN
                "throughput_sigma": {"target": "< 2000", "minimum": "< 3000"},
                "comm_overhead": {"target": "<= 80%", "minimum": "<= 90%"},
            }
        },
    )
    # "stragglers": this run was recorded before the trainer measured its ranks' compute.
    given = {"packet_loss": 0.0, "thermal_throttling": 0.0, "uptime": 1.0, "stragglers": 0.0}
    result = run_gate("1", recorded("phase1_4rank_cpu"), site_file=site, given=given)
    assert verdicts(result)["throughput"] == "WARN"
    assert result.decision == "GO"


def test_missing_data_is_no_go(tmp_path: Path) -> None:
    site = _site(tmp_path, _relaxed())
    result = run_gate("1", recorded("phase1_4rank_cpu"), site_file=site)
    v = verdicts(result)
    assert v["packet_loss"] == v["thermal_throttling"] == v["uptime"] == "NO DATA"
    assert "FAIL" not in v.values()
    assert result.decision == "NO-GO"
    # stragglers too: the run was recorded before the trainer measured its ranks' compute.
    blocking = {row.name for row in result.rows if row.blocks}
    assert blocking == {"packet_loss", "thermal_throttling", "uptime", "stragglers"}


def test_waived_missing_data_goes(tmp_path: Path) -> None:
    body = _relaxed()
    body["all"] = {
        name: {"waive": "sandbox rehearsal: no node_exporter, no soak"}
        for name in ("packet_loss", "thermal_throttling", "uptime")
    }
    body["all"]["stragglers"] = {"waive": "recorded before the trainer measured its ranks' compute"}
    result = run_gate("1", recorded("phase1_4rank_cpu"), site_file=_site(tmp_path, body))
    row = next(r for r in result.rows if r.name == "uptime")
    assert row.verdict == "NO DATA" and not row.blocks
    assert "waived by the site: sandbox rehearsal" in row.note
    assert result.decision == "GO"


def test_stragglers_counted_from_each_ranks_worst_compute_ratio() -> None:
    """A run of the trainer that measured its compute split (2 ranks on one machine, neither a straggler);
    then the same summary with rank 1's worst ratio raised past the margin, as a slow rank's would be."""
    summary = recorded("phase1_2rank_split_cpu")
    row = next(r for r in run_gate("1", summary).rows if r.name == "stragglers")
    assert (row.verdict, row.measurement.value) == ("PASS", 0.0)
    assert "none; highest compute 1.03x the median (margin 20%)" in row.measurement.note
    summary["ranks"][1]["compute_ratio_to_median_max"] = 1.6
    row = next(r for r in run_gate("1", summary).rows if r.name == "stragglers")
    assert (row.verdict, row.measurement.value) == ("FAIL", 1.0)
    assert row.measurement.note.startswith("ranks 1; highest compute 1.60x")


def test_waiver_does_not_hide_a_measured_failure(tmp_path: Path) -> None:
    body = {"1": {"comm_overhead": {"waive": "we know"}}}
    result = run_gate("1", recorded("phase1_4rank_cpu"), site_file=_site(tmp_path, body))
    row = next(r for r in result.rows if r.name == "comm_overhead")
    assert row.verdict == "FAIL" and row.blocks


def test_gpu_utilisation_skipped_on_cpu_and_missing_on_gpu() -> None:
    cpu = next(r for r in run_gate("1", recorded("phase1_4rank_cpu")).rows if r.name == "gpu_utilisation")
    assert cpu.verdict == "SKIP" and "cpu devices" in cpu.note and not cpu.blocks
    summary = recorded("phase1_4rank_cpu")
    summary["device"] = "cuda"  # a GPU run that sampled no utilisation (NVML missing): not a pass
    gpu = next(r for r in run_gate("1", summary).rows if r.name == "gpu_utilisation")
    assert gpu.verdict == "NO DATA" and gpu.blocks


def test_wrong_shape_fails() -> None:
    v = verdicts(run_gate("1", recorded("phase1_1proc_cpu")))
    assert v["world_size"] == "FAIL"


def test_real_scaling_efficiency_against_the_previous_phase() -> None:
    result = run_gate(
        "2a", recorded("phase2a_8rank_cpu"), baseline=baseline_of(recorded("phase1_4rank_cpu"), "1")
    )
    row = next(r for r in result.rows if r.name == "scaling_efficiency")
    x8 = recorded("phase2a_8rank_cpu")["throughput"]["global_samples_per_second_mean"]
    x4 = recorded("phase1_4rank_cpu")["throughput"]["global_samples_per_second_mean"]
    assert row.measurement.value == pytest.approx(x8 / (x4 * 8 / 4))
    assert row.verdict == "FAIL"  # 8 processes on 2 shared cores cannot scale
    assert not row.suspect and "celebrate" not in row.note


def test_superlinear_efficiency_is_explained_not_celebrated() -> None:
    base = recorded("phase1_4rank_cpu")  # its T_sync/T_nosync (about 6.4) leaves room above 100 %
    run = recorded("phase2a_8rank_cpu")
    run["throughput"]["global_samples_per_second_mean"] = (
        1.2 * base["throughput"]["global_samples_per_second_mean"] * 2
    )
    result = run_gate("2a", run, baseline=baseline_of(base, "1"))
    row = next(r for r in result.rows if r.name == "scaling_efficiency")
    assert row.measurement.value == pytest.approx(1.2)
    assert row.verdict == "PASS" and not row.suspect
    assert "above 100 % is not a speed-up to celebrate" in row.note
    assert "oversubscribed" in row.note and "warm-up" in row.note and "padding" in row.note


def test_efficiency_above_the_ceiling_is_suspect() -> None:
    # The single-process run's probe shows no communication (ceiling 100 %), yet 4 ranks ran 4x faster
    # per process: the baseline was slowed by something else (it ran cold, next to other work).
    result = run_gate(
        "2a", recorded("phase1_4rank_cpu"), baseline=baseline_of(recorded("phase1_1proc_cpu"), "1")
    )
    row = next(r for r in result.rows if r.name == "scaling_efficiency")
    assert (row.measurement.value or 0) > 4
    assert row.suspect and row.verdict == "FAIL"
    assert "ceiling 100 % (phase 1's T_sync/T_nosync)" in row.note
    assert "SUSPECT: above the ceiling" in row.note
    assert result.scaling is not None and result.scaling.ceiling == 1.0


def test_no_baseline_is_no_data() -> None:
    result = run_gate("2a", recorded("phase2a_8rank_cpu"))
    row = next(r for r in result.rows if r.name == "scaling_efficiency")
    assert row.verdict == "NO DATA" and "gate the previous phase first" in row.note


def test_efficiency_degradation() -> None:
    scaling = compute(900.0, 12, None, None, baseline_of_numbers(1000.0, 8, efficiency=0.95))
    # E = 900 / (1000 * 12 / 8) = 0.6; drop = (0.95 - 0.6) / 0.95
    assert scaling.efficiency.value == pytest.approx(0.6)
    assert scaling.degradation.value == pytest.approx((0.95 - 0.6) / 0.95)


def test_ranks_in_sync_counts_missing_ranks() -> None:
    summary = recorded("phase2a_8rank_cpu")
    result = run_gate("2c", summary)
    row = next(r for r in result.rows if r.name == "ranks_in_sync")
    assert row.measurement.value == 16 - 8 and row.verdict == "FAIL"


def baseline_of_numbers(throughput: float, world: int, efficiency: float | None) -> Baseline:
    return Baseline("2a", throughput, world, None, None, efficiency, "test")


def _relaxed() -> dict:
    # What this CPU host can do; the site file is how a user's own workload gets its own numbers.
    return {
        "1": {
            "throughput_sigma": {"target": "< 2000", "minimum": "< 3000"},
            "comm_overhead": {"target": "<= 80%", "minimum": "<= 90%"},
        }
    }


def _site(tmp_path: Path, criteria: dict) -> Path:
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump({"gate_criteria": criteria}))
    return path
