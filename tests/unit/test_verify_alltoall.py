"""nccl-tests alltoall_perf: read by the all_reduce_perf parser on real outputs, judged per GPU model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_verify_judge import cuda_node, fixture, ok, rows_for
from tooling.verify import parsers as p
from tooling.verify.judge import CheckResult, judge_all
from tooling.verify.profiles import Band, load_profile

PRODUCTION = load_profile("production")
FIXTURES = Path(__file__).parent / "fixtures" / "verify"
GB300 = "alltoall_perf_4xgb300_single_node.txt"
OLD_FORMAT = "alltoall_perf_64rank_old_format.txt"
ILLEGAL_ACCESS = "alltoall_perf_16xh800_illegal_access.txt"


def judge_alltoall(profile: Any = PRODUCTION, **commands: dict[str, Any]) -> CheckResult:
    rows = judge_all(profile, ["n1"], {"n1": cuda_node(**commands)}, None, {})
    return rows_for(rows, "n1")["nccl.alltoall_busbw"]


# --- parsing -----------------------------------------------------------------------------------------------


def test_gb300_single_node_table_is_read_whole() -> None:
    result = p.parse_alltoall_perf(fixture(GB300))
    assert result.complete and result.avg_busbw_gbs == pytest.approx(381.478)
    assert len(result.rows) == 16 and result.ranks == 4 and result.hosts == ("GPU-3882",)
    largest = result.largest
    assert largest is not None and largest.size_bytes == 17179869184
    # busbw = algbw x (n-1)/n on 4 ranks, as nccl-tests computes it for alltoall.
    assert largest.oop_busbw == pytest.approx(largest.oop_algbw * 3 / 4, abs=0.01)
    # In-place results are not validated: N/A, not a count.
    assert {r.ip_wrong for r in result.rows} == {None} and not result.wrong(in_place=False)
    assert result.out_of_bounds_ok is True and result.errors == ["NCCL version 2.28.7+cuda13.0"]


def test_old_layout_without_redop_and_root_columns() -> None:
    result = p.parse_alltoall_perf(fixture(OLD_FORMAT))
    assert [r.size_bytes for r in result.rows] == [268435456, 536870912]
    assert result.rows[0].oop_busbw == pytest.approx(0.51) and result.rows[0].oop_time_us == 520935
    assert result.complete and result.ranks == 0  # the poster copied the table only
    # The old `error` column: 1e+00 in place, yet 0 out-of-bounds values; only out of place counts.
    assert result.wrong_rows and not result.wrong(in_place=False)


def test_run_stopped_by_an_illegal_memory_access_keeps_the_reason() -> None:
    result = p.parse_alltoall_perf(fixture(ILLEGAL_ACCESS))
    assert not result.rows and not result.complete
    assert result.ranks == 16 and result.hosts == ("node0", "node1")
    assert "Test CUDA failure common.cu:389 'an illegal memory access was encountered'" in result.errors[1]
    assert result.errors[-1] == ".. node0 pid 62767: Test failure common.cu:1368"


def test_errors_name_alltoall_perf() -> None:
    with pytest.raises(p.ParseError, match="alltoall_perf"):
        p.parse_alltoall_perf("")


# --- judging -----------------------------------------------------------------------------------------------


def test_h100_node_is_judged_by_its_models_alltoall_band() -> None:
    # The 4 x H100 node of cuda_node() with the GB300 run's figures: 627.7 GB/s is above the H100 band.
    row = judge_alltoall(nccl_alltoall=ok(fixture(GB300)))
    assert row.status == "PASS"
    assert row.measured.startswith("627.7 GB/s @ 16384 MiB (avg 381.5, 4 ranks on GPU-3882)")
    assert row.expected == ">= 150 GB/s (target >= 250)"
    assert "H100 SXM5 80GB (gpu_skus.yml)" in row.reason


def test_slow_alltoall_fails_on_a_model_with_a_band() -> None:
    row = judge_alltoall(nccl_alltoall=ok(fixture(OLD_FORMAT)))
    assert row.status == "FAIL" and "below the minimum 150" in row.reason
    # The in-place `error` of 1e+00 is not a wrong result: the bandwidth is what fails.
    assert "wrong results" not in row.reason


def test_model_without_a_figure_is_measured_not_judged() -> None:
    a100 = fixture("nvidia_smi_4gpu.csv").replace("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")
    row = judge_alltoall(nvidia_smi=ok(a100), nccl_alltoall=ok(fixture(GB300)))
    assert row.status == "SKIP" and row.measured.startswith("627.7 GB/s")
    assert row.expected == "measured only (no threshold)"
    assert "gpu_skus.yml gives no alltoall figure for A100 SXM4 80GB" in row.reason
    # A site's generic figure applies where the model has none.
    site = PRODUCTION.model_copy(update={"nccl_alltoall_busbw_gbs": Band(min=700)})
    row = judge_alltoall(site, nvidia_smi=ok(a100), nccl_alltoall=ok(fixture(GB300)))
    assert row.status == "FAIL" and "generic profile threshold" in row.reason


def test_failed_run_fails_with_what_nccl_tests_printed() -> None:
    row = judge_alltoall(nccl_alltoall={"rc": 1, "stdout": fixture(ILLEGAL_ACCESS), "stderr": ""})
    assert row.status == "FAIL"
    assert row.reason.startswith("alltoall_perf failed (rc 1): ")
    assert "an illegal memory access was encountered" in row.reason


def test_run_cut_off_before_its_footer_fails() -> None:
    text = fixture(GB300).split("# Out of bounds")[0]
    row = judge_alltoall(nccl_alltoall=ok(text))
    assert row.status == "FAIL" and "incomplete" in row.reason and "16 sizes" in row.measured


def test_out_of_place_wrong_values_fail() -> None:
    # The GB300 run with one out-of-place #wrong raised from 0 to 5: a corrupted transfer.
    text = fixture(GB300).replace("627.69      0", "627.69      5")
    row = judge_alltoall(nccl_alltoall=ok(text))
    assert row.status == "FAIL" and "wrong results" in row.reason and "17179869184" in row.reason


def test_binary_not_built_and_old_records_skip_and_quick_level_skips() -> None:
    missing = {
        "rc": 127,
        "stdout": "",
        "stderr": "alltoall_perf not found under /opt/nccl-tests (bin/ or build/)",
    }
    row = judge_alltoall(nccl_alltoall=missing)
    assert row.status == "SKIP" and "alltoall_perf not found under /opt/nccl-tests" in row.reason
    assert judge_alltoall().status == "SKIP"  # a record from before verify.yml ran alltoall_perf
    node = cuda_node(nccl_alltoall=ok(fixture(GB300)))
    quick = rows_for(judge_all(PRODUCTION, ["n1"], {"n1": {**node, "level": "quick"}}, None, {}), "n1")
    assert (
        quick["nccl.alltoall_busbw"].status == "SKIP" and "level quick" in quick["nccl.alltoall_busbw"].reason
    )


def test_cpu_host_skips_alltoall() -> None:
    rows = judge_all(PRODUCTION, ["c1"], {"c1": {"accelerator": "cpu", "commands": {}}}, None, {})
    assert rows_for(rows, "c1")["nccl.alltoall_busbw"].status == "SKIP"
