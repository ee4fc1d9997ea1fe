"""iperf3's plain text report (no -J): the summary lines parsed from real outputs and judged like JSON."""

from __future__ import annotations

import copy
import json

import pytest

from tests.unit.test_verify_judge import SANDBOX, fixture
from tooling.verify import parsers as p
from tooling.verify.judge import judge_all


def test_single_stream_with_retransmits() -> None:
    result = p.parse_iperf3_text(fixture("iperf3_text_zerocopy_36g.txt"))
    assert result.received_bps == pytest.approx(36.7e9)
    assert result.sent_bps == pytest.approx(36.7e9)
    assert (result.retransmits, result.streams) == (3148, 1)


def test_server_output_after_the_client_summary_is_not_read() -> None:
    # --get-server-output appends the server's own sender/receiver lines (0.00 Kbits/sec "sender").
    result = p.parse_iperf3_text(fixture("iperf3_text_server_output_cut.txt"))
    assert result.received_bps == pytest.approx(3.77e6)
    assert result.retransmits == 467


def test_sum_lines_of_parallel_streams() -> None:
    result = p.parse_iperf3_text(fixture("iperf3_text_16_streams_sum_cut.txt"))
    assert result.received_gbps == pytest.approx(35.2)
    assert result.retransmits == 0


def test_old_report_with_sec_glued_to_the_interval() -> None:
    result = p.parse_iperf3_text(fixture("iperf3_text_nospace_sec_done.txt"))
    assert result.received_bps == pytest.approx(8103e6)
    assert result.sent_bps == pytest.approx(8114e6)


def test_json_and_text_through_one_entry_point() -> None:
    assert p.parse_iperf3(fixture("iperf3_loopback.json")).retransmits == 6
    assert p.parse_iperf3(fixture("iperf3_text_zerocopy_36g.txt")).retransmits == 3148


def test_cut_report_and_garbage_are_clear_errors() -> None:
    # Only the sender line survived: no receiver figure to judge.
    sender_only = fixture("iperf3_text_zerocopy_36g.txt").rsplit("\n", 2)[0]
    with pytest.raises(p.ParseError, match="no receiver summary line"):
        p.parse_iperf3_text(sender_only)
    with pytest.raises(p.ParseError, match="iperf3: no receiver summary line"):
        p.parse_iperf3(fixture("garbage.txt"))
    with pytest.raises(p.ParseError, match="iperf3: no output"):
        p.parse_iperf3(fixture("empty.txt"))


def _net_with(stdout: str) -> tuple[dict, dict]:
    data = json.loads(fixture("published_2node_local.json"))
    net = copy.deepcopy(data["verify_net"])
    net["iperf"]["node1->node2"]["result"] = {"rc": 0, "stdout": stdout, "stderr": ""}
    return data["verify_raw"], net


def test_text_report_is_judged_with_its_retransmits() -> None:
    raw, net = _net_with(fixture("iperf3_text_zerocopy_36g.txt"))
    rows = judge_all(SANDBOX, ["node1", "node2"], raw, net, {})
    row = next(r for r in rows if r.host == "node1" and r.check == "net.iperf3 -> node2")
    assert (row.status, row.measured) == ("PASS", "36.70 Gbps")
    assert row.reason == "within range; 3148 TCP retransmits"


def test_json_report_names_its_retransmits_too() -> None:
    raw, net = _net_with(fixture("iperf3_loopback.json"))
    rows = judge_all(SANDBOX, ["node1", "node2"], raw, net, {})
    row = next(r for r in rows if r.host == "node1" and r.check == "net.iperf3 -> node2")
    assert row.reason.endswith("; 6 TCP retransmits")


def test_garbage_report_fails_the_pair_naming_the_client() -> None:
    raw, net = _net_with(fixture("garbage.txt"))
    rows = judge_all(SANDBOX, ["node1", "node2"], raw, net, {})
    row = next(r for r in rows if r.check == "net.iperf3 -> node2")
    assert (row.host, row.status) == ("node1", "FAIL")
    assert row.reason.startswith("iperf3: no receiver summary line")
