"""ib_write_bw (perftest) between node pairs: its report read on real outputs, each pair judged against the
fraction of the slower end's port rate, a node without perftest a SKIP, a failed pair a FAIL naming both."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.test_verify_judge import cuda_node, fixture, ok, published, rows_for
from tooling.findings import CLUSTER
from tooling.verify.judge import CheckResult, judge_all
from tooling.verify.parsers import ParseError
from tooling.verify.perftest import parse_ib_write_bw
from tooling.verify.profiles import load_profile

PRODUCTION = load_profile("production")
SANDBOX = load_profile("sandbox")
ROCE_100G = "ib_write_bw_roce_rdma_cm_4qp_98g.txt"
POST_LIST = "ib_write_bw_post_list_8b_cut.txt"
CONNECT_FAILED = "ib_write_bw_connect_failed.txt"

# --- parsing -----------------------------------------------------------------------------------------------


def test_roce_report_with_four_queue_pairs_over_rdma_cm() -> None:
    report = parse_ib_write_bw(fixture(ROCE_100G))
    assert report.test == "RDMA_Write BW Test" and report.errors == ()
    assert (report.device, report.queue_pairs, report.link_type) == ("mlx5_5", 4, "Ethernet")
    largest = report.largest
    assert largest is not None
    assert (largest.size_bytes, largest.iterations, largest.average_gbps) == (65536, 20000, 98.01)
    assert largest.msg_rate_mpps == pytest.approx(0.186932)


def test_post_list_run_cut_by_its_poster_with_no_peak() -> None:
    report = parse_ib_write_bw(fixture(POST_LIST))
    assert report.test == "RDMA_Write Post List BW Test" and report.device == "ib0"
    largest = report.largest
    assert largest is not None and (largest.size_bytes, largest.peak_gbps, largest.average_gbps) == (
        8,
        0,
        0.48,
    )


def test_megabytes_per_second_are_converted_to_gigabits() -> None:
    # The RoCE report as perftest prints it without --report_gbits: the unit in the header is MB/sec (MiB
    # in newer releases), 2^20 bytes either way; the numbers are the report's, only the unit is changed.
    for unit in ("MB/sec", "MiB/sec"):
        text = fixture(ROCE_100G).replace("[Gb/sec]", f"[{unit}]")
        largest = parse_ib_write_bw(text).largest
        assert largest is not None and largest.average_gbps == pytest.approx(98.01 * 2**20 * 8 / 1e9)


def test_failed_connect_keeps_perftests_words() -> None:
    report = parse_ib_write_bw(fixture(CONNECT_FAILED))
    assert report.rows == () and report.largest is None
    assert report.errors == (
        "Couldn't connect to 192.168.125.211:18515",
        "Unable to open file descriptor for socket connection Unable to init the socket connection",
    )


def test_a_failure_line_with_a_colon_is_an_error_not_a_setting() -> None:
    text = fixture(ROCE_100G).split(" #bytes")[0] + "ethernet_read_keys: Couldn't read remote address\n"
    assert parse_ib_write_bw(text).errors == ("ethernet_read_keys: Couldn't read remote address",)


@pytest.mark.parametrize("text", ["", "  \n", fixture(ROCE_100G).split(" #bytes")[0]])
def test_no_result_and_no_error_is_unreadable(text: str) -> None:
    with pytest.raises(ParseError, match="ib_write_bw"):
        parse_ib_write_bw(text)


def test_unknown_unit_is_refused() -> None:
    with pytest.raises(ParseError, match="unknown bandwidth unit"):
        parse_ib_write_bw(fixture(ROCE_100G).replace("[Gb/sec]", "[Kb/sec]"))


# --- judging -----------------------------------------------------------------------------------------------


def _pair(client: str, server: str, stdout: str, rc: int = 0, server_out: str = "") -> dict[str, Any]:
    return {
        "client": client,
        "server": server,
        "result": {"rc": rc, "stdout": "", "stderr": stdout} if rc else ok(stdout),
        "server_result": {"rc": 1 if server_out else 0, "stdout": "", "stderr": server_out, "finished": 1},
    }


def judge_pairs(
    profile: Any, net_update: dict[str, Any], hosts: tuple[str, ...] = ("gpu1", "gpu2")
) -> list[CheckResult]:
    nodes = {h: cuda_node() for h in hosts}
    net = {"nodes": list(hosts), "level": "full", **net_update}
    return judge_all(profile, list(hosts), nodes, net, {})


def test_pair_at_its_ports_rate_passes_naming_both_ends() -> None:
    # The H100 nodes of cuda_node() are held to 400 Gb/s (gpu_skus.yml); the 98 Gb/s RoCE run, rescaled
    # to 392.04 (x4) the way a 400 Gb/s port reports it, is 0.98 of that.
    text = fixture(ROCE_100G).replace("98.01", "392.04")
    rows = judge_pairs(PRODUCTION, {"ib_write_bw": {"gpu2->gpu1": _pair("gpu2", "gpu1", text)}})
    row = rows_for(rows, "gpu2")["ib.write_bw -> gpu1"]
    assert row.status == "PASS" and row.measured == "392 Gb/s average (65536 B messages)"
    assert row.expected == ">= 320 Gb/s (target >= 360): >= 0.8 (target >= 0.9) x 400 Gb/s"
    assert row.reason.startswith("gpu2 writing into gpu1 (device mlx5_5, 4 QP, Ethernet): within range")
    assert "rate of H100 SXM5 80GB (gpu_skus.yml)" in row.reason


def test_a_100g_result_on_a_400g_fabric_fails() -> None:
    rows = judge_pairs(PRODUCTION, {"ib_write_bw": {"gpu2->gpu1": _pair("gpu2", "gpu1", fixture(ROCE_100G))}})
    row = rows_for(rows, "gpu2")["ib.write_bw -> gpu1"]
    assert row.status == "FAIL" and "below the minimum 320" in row.reason


def test_slower_end_sets_the_expectation() -> None:
    # gpu1's GPUs are A100 SXM4 (200 Gb/s ports in gpu_skus.yml): the pair is held to 200 Gb/s, so 180 Gb/s
    # (0.9 of it) passes, where two H100 nodes would fail it.
    a100 = fixture("nvidia_smi_4gpu.csv").replace("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")
    nodes = {"gpu1": cuda_node(nvidia_smi=ok(a100)), "gpu2": cuda_node()}
    text = fixture(ROCE_100G).replace("98.01", "180.00")
    net = {"nodes": ["gpu1", "gpu2"], "ib_write_bw": {"gpu2->gpu1": _pair("gpu2", "gpu1", text)}}
    row = rows_for(judge_all(PRODUCTION, ["gpu1", "gpu2"], nodes, net, {}), "gpu2")["ib.write_bw -> gpu1"]
    assert row.status == "PASS" and "x 200 Gb/s" in row.expected and "A100 SXM4 80GB" in row.reason


def test_failed_pair_names_both_ends_and_what_each_said() -> None:
    server_said = "Couldn't listen to port 18515"
    pair = _pair("gpu2", "gpu1", fixture(CONNECT_FAILED), rc=1, server_out=server_said)
    row = rows_for(judge_pairs(PRODUCTION, {"ib_write_bw": {"gpu2->gpu1": pair}}), "gpu2")[
        "ib.write_bw -> gpu1"
    ]
    assert row.status == "FAIL"
    assert row.reason == (
        "gpu2 writing into gpu1: ib_write_bw failed (rc 1): Couldn't connect to 192.168.125.211:18515; "
        "Unable to open file descriptor for socket connection Unable to init the socket connection; "
        "server gpu1 said: Couldn't listen to port 18515"
    )


def test_perftest_missing_is_a_skip_not_a_failure() -> None:
    why = "perftest is not installed (no ib_write_bw on PATH)"
    rows = judge_pairs(PRODUCTION, {"ib_write_bw_missing": {"gpu1": why, "gpu2": why}})
    for host in ("gpu1", "gpu2"):
        row = rows_for(rows, host)["ib.write_bw"]
        assert row.status == "SKIP" and row.reason.startswith(why)


@pytest.mark.parametrize(
    ("profile", "net_update", "hosts", "reason"),
    [
        (SANDBOX, {}, ("gpu1", "gpu2"), "the profile expects no InfiniBand/RoCE fabric"),
        (PRODUCTION, {}, ("gpu1",), "fewer than 2 nodes to pair"),
        (PRODUCTION, {"level": "quick"}, ("gpu1", "gpu2"), "level quick: ib_write_bw runs at --level full"),
        (PRODUCTION, {}, ("gpu1", "gpu2"), "ib_write_bw not collected by this run"),
    ],
)
def test_one_cluster_skip_row_says_why_nothing_was_measured(
    profile: Any, net_update: dict[str, Any], hosts: tuple[str, ...], reason: str
) -> None:
    row = rows_for(judge_pairs(profile, net_update, hosts), CLUSTER)["ib.write_bw"]
    assert (row.status, row.reason) == ("SKIP", reason)


def test_sandbox_record_still_judges_as_before_with_one_skip_row() -> None:
    data = published()
    rows = judge_all(SANDBOX, ["node1", "node2"], data["verify_raw"], copy.deepcopy(data["verify_net"]), {})
    ib = [r for r in rows if r.check.startswith("ib.write_bw")]
    assert [(r.host, r.status) for r in ib] == [(CLUSTER, "SKIP")]


def test_banner_without_a_result_says_so() -> None:
    banner = fixture(ROCE_100G).split(" #bytes")[0]
    pair = {"client": "gpu2", "server": "gpu1", "result": ok(banner)}
    row = rows_for(judge_pairs(PRODUCTION, {"ib_write_bw": {"gpu2->gpu1": pair}}), "gpu2")[
        "ib.write_bw -> gpu1"
    ]
    assert row.status == "FAIL"
    assert row.reason == (
        "gpu2 writing into gpu1: ib_write_bw failed (rc 0): ib_write_bw: no result row and no error message"
    )
