"""Slow links between nodes (ddp/links.py) and how `tooling status` names them (tooling/job/slow_links.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from ddp.links import RECENT, LinkProber, LinkReading, _kernel_rtt, handshake_seconds, peer_endpoints
from tooling.job.slow_links import describe, node_at_fault, slow_pairs


@pytest.fixture
def listening() -> Iterator[tuple[str, int]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield "127.0.0.1", server.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_handshake_to_a_listening_endpoint_takes_a_round_trip(listening: tuple[str, int]) -> None:
    seconds = handshake_seconds(*listening, timeout_s=2.0)
    assert 0 < seconds < 1.0


def test_the_kernels_round_trip_is_read_from_tcp_info(listening: tuple[str, int]) -> None:
    """On Linux the figure is the kernel's (whole microseconds, set at the handshake), not a clock read."""
    if not hasattr(socket, "TCP_INFO"):
        pytest.skip("no TCP_INFO on this platform")
    with socket.create_connection(listening, timeout=2.0) as sock:
        rtt = _kernel_rtt(sock)
    assert rtt is not None and 0 < rtt < 0.1 and round(rtt * 1e6) == pytest.approx(rtt * 1e6)


def test_the_prober_keeps_the_median_of_recent_round_trips_and_the_best(listening: tuple[str, int]) -> None:
    rounds: list[list[LinkReading]] = []
    times = iter([0.001, 0.002, 0.200, 0.003, 0.004, 0.250, 0.300, 0.300])
    prober = LinkProber({"node2": listening}, 0.01, rounds.append, measure=lambda *_: next(times))
    for _ in range(RECENT - 1):
        prober.probe_once()
    assert prober.readings() == [LinkReading("node2", None, 0.001)]  # too few round trips to judge
    prober.probe_once()
    assert prober.readings() == [LinkReading("node2", 0.003, 0.001)]  # one late sample is not slow
    for _ in range(3):
        prober.probe_once()
    reading = prober.readings()[0]
    assert reading.rtt_s == 0.25 and reading.slow(5.0, 0.005)


def test_the_probe_thread_hands_every_round_to_the_judge(listening: tuple[str, int]) -> None:
    rounds: list[list[LinkReading]] = []
    prober = LinkProber({"node2": listening}, 0.01, rounds.append)
    prober.start()
    deadline = time.monotonic() + 10
    while len(rounds) < RECENT and time.monotonic() < deadline:
        time.sleep(0.01)
    prober.stop()
    assert len(rounds) >= RECENT and rounds[-1][0].rtt_s is not None


def test_an_endpoint_that_refuses_is_named_with_its_address() -> None:
    port = _closed_port()
    prober = LinkProber({"node2": ("127.0.0.1", port)}, 0.01, lambda _: None)
    prober.probe_once()
    reading = prober.readings()[0]
    assert reading.rtt_s is None and not reading.slow(5.0, 0.005)
    assert reading.error is not None and reading.error.startswith(f"127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    ("rtt", "best", "slow"),
    [(0.020, 0.0002, True), (0.004, 0.0002, False), (0.5, 0.2, False), (None, 0.0002, False)],
    ids=["queued", "within-the-extra", "within-the-factor", "unmeasured"],
)
def test_slow_needs_both_the_factor_and_the_extra(rtt: float | None, best: float, slow: bool) -> None:
    assert LinkReading("node2", rtt, best).slow(5.0, 0.005) is slow


def test_each_other_node_is_probed_at_its_local_rank_0() -> None:
    endpoints: list[dict[str, object]] = [
        {"node": "node1", "local_rank": 0, "address": "10.0.0.1", "port": 9500},
        {"node": "node1", "local_rank": 1, "address": "10.0.0.1", "port": 9501},
        {"node": "node2", "local_rank": 1, "address": "10.0.0.2", "port": 9501},
        {"node": "node2", "local_rank": 0, "address": "10.0.0.2", "port": 9500},
        {"node": "node3", "local_rank": 0, "address": None, "port": None},
        {"node": "node3", "local_rank": 1, "address": "10.0.0.3", "port": 9501},
    ]
    assert peer_endpoints(endpoints, "node1") == {"node2": ("10.0.0.2", 9500), "node3": ("10.0.0.3", 9501)}


def _links(**slow_ms: float) -> list[dict[str, object]]:
    return [{"peer": peer, "rtt_seconds": ms / 1000, "slow": True} for peer, ms in slow_ms.items()]


def test_status_names_each_slow_link_once_and_the_node_they_share() -> None:
    reports = [
        ("node1", _links(node2=110.0)),
        ("node1", None),  # its other ranks probe nothing
        ("node2", _links(node1=100.0, node3=120.0)),
        ("node3", _links(node2=90.0)),
    ]
    pairs = slow_pairs(reports)
    assert pairs == {frozenset({"node1", "node2"}): 0.110, frozenset({"node2", "node3"}): 0.120}
    assert node_at_fault(pairs, nodes=3) == "node2"
    line = describe(reports, nodes=3)
    assert line is not None and line.startswith(
        "slow links: node1 <-> node2 (110 ms), node2 <-> node3 (120 ms); every one touches node2"
    )


def test_two_nodes_name_the_link_but_no_node() -> None:
    reports = [("node1", _links(node2=100.0)), ("node2", _links(node1=100.0))]
    assert node_at_fault(slow_pairs(reports), nodes=2) is None
    line = describe(reports, nodes=2)
    assert line is not None and "node1 <-> node2 (100 ms)" in line and "touches" not in line


def test_no_slow_link_no_line() -> None:
    healthy = [("node1", [{"peer": "node2", "rtt_seconds": 0.0002, "slow": False}]), ("node2", None)]
    assert describe(healthy, nodes=2) is None
