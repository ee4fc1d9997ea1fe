"""bench/forecast_accuracy.py on runs made from known parameters: a phase run as the model says lands within
the target, one that ran slower than predicted misses it, and missing runs or bandwidth exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.forecast_accuracy import main
from tests.unit.forecast_fakes import Truth, summary, write_run, write_verify_record


def _runs(tmp_path: Path, truth: Truth, later: Truth) -> Path:
    runs = tmp_path / "runs"
    for phase, nodes, made_by in (("1", 1, truth), ("2a", 2, truth), ("2b", 3, later), ("2c", 4, later)):
        write_run(runs, f"rehearsal-phase{phase}-20261201-000000", summary(made_by, nodes, spread=0.02))
    return runs


def test_runs_that_follow_the_model_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = Truth()
    runs = _runs(tmp_path, truth, truth)
    out = tmp_path / "accuracy.json"
    assert main(["--runs-dir", str(runs), "--busbw", str(truth.busbw_gbs), "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert set(document["fitted_on"]) == {"1", "2a"} and set(document["phases"]) == {"2b", "2c"}
    for entry in document["phases"].values():
        assert entry["figures"]["throughput"]["error_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert "throughput within 15%: PASS" in capsys.readouterr().out


def test_a_slower_phase_misses_the_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = Truth()
    runs = _runs(tmp_path, truth, Truth(compute_s=truth.compute_s * 1.5))
    verify = tmp_path / "verify"
    write_verify_record(verify, "20261201T000000.000000Z", truth.busbw_gbs, ["node1", "node2"])
    assert main(["--runs-dir", str(runs), "--artifacts-dir", str(verify)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_missing_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs-dir", str(tmp_path), "--busbw", "1"]) == 2
    assert "no run of phase 1, 2a" in capsys.readouterr().err
    runs = _runs(tmp_path, Truth(), Truth())
    assert main(["--runs-dir", str(runs), "--artifacts-dir", str(tmp_path / "none")]) == 2
    assert "no all-reduce bus bandwidth measured" in capsys.readouterr().err


def test_each_run_is_listed_with_its_ranks_cpu_against_the_fitted_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A phase whose ranks got half the CPU of the fitted runs' (an over-committed sandbox) says so."""
    truth = Truth()
    runs = tmp_path / "runs"
    for phase, nodes, cpu in (("1", 1, 0.06), ("2a", 2, 0.06), ("2b", 3, 0.06), ("2c", 4, 0.03)):
        data = summary(truth, nodes, spread=0.02)
        for rank in data["ranks"]:
            rank["cpu_utilisation_ratio"] = cpu
        write_run(runs, f"rehearsal-phase{phase}-20261201-000000", data)
    out = tmp_path / "accuracy.json"
    assert main(["--runs-dir", str(runs), "--busbw", str(truth.busbw_gbs), "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line for line in lines if "rank CPU" in line]
    assert [line.split()[0] for line in listed] == ["1", "2a", "2b", "2c"]
    assert "rank CPU 0.060 (x1.00 of the fitted runs')" in listed[2]
    assert "rank CPU 0.030 (x0.50 of the fitted runs')" in listed[3]
    document = json.loads(out.read_text())
    assert [r["cpu_utilisation_ratio"] for r in document["runs"]] == [0.06, 0.06, 0.06, 0.03]


def test_a_summary_without_cpu_figures_lists_a_dash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = Truth()
    assert main(["--runs-dir", str(_runs(tmp_path, truth, truth)), "--busbw", str(truth.busbw_gbs)]) == 0
    assert all(
        line.endswith("rank CPU -") for line in capsys.readouterr().out.splitlines() if "rank CPU" in line
    )
