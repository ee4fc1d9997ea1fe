"""Verdicts of the daily checks (PASS / WARN / FAIL / SKIP) and the disk trend's time-to-full."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from tooling.check import judge
from tooling.check.commands import ProbeTarget
from tooling.check.parsers import (
    Alert,
    CheckedFile,
    CheckpointReport,
    Connect,
    ConnectivityReport,
    DiskUsage,
    Gpu,
    ThermalReport,
    Zone,
)
from tooling.check.schedules import Thresholds
from tooling.check.trend import Trend, daily_points, from_snapshots, slope
from tooling.findings import Finding, counts
from tooling.job.status import NodeReport

T = Thresholds()
GiB = 1 << 30
DAY = 86400.0
NOW = 1_800_000_000.0


def rank(n: int, node: str, state: str = "running", **extra: Any) -> dict[str, Any]:
    return {
        "rank": n,
        "local_rank": n % 4,
        "node": node,
        "state": state,
        "step": 120,
        "max_steps": 3000,
        "samples_per_second": 100.0,
        "updated_at": NOW - 5,
        **extra,
    }


def node(host: str, first: int, state: str = "running", **extra: Any) -> NodeReport:
    return NodeReport(host, [rank(i, host, state, **extra) for i in range(first, first + 4)], NOW)


def healthy() -> list[NodeReport]:
    return [node("node1", 0), node("node2", 4)]


# --- job and ranks ---------------------------------------------------------------------------------------


def test_job_running_passes_and_partial_names_the_unreachable_node() -> None:
    row = judge.judge_job("r1", healthy(), 8)
    assert (row.status, row.measured) == ("PASS", "running, 8/8 ranks")
    assert "step 120/3000" in row.reason
    down = [node("node1", 0), NodeReport("node2", [], None, "root@10.0.0.12:22: No route to host")]
    row = judge.judge_job("r1", down, 8)
    assert row.status == "FAIL" and "node2: root@10.0.0.12:22: No route to host" in row.reason


@pytest.mark.parametrize(
    ("reports", "status", "word"),
    [
        ([node("node1", 0, "completed"), node("node2", 4, "completed")], "PASS", "completed"),
        ([node("node1", 0, "stopped"), node("node2", 4, "stopped")], "WARN", "stopped"),
        ([node("node1", 0)], "WARN", "only 4 of 8"),
        ([node("node1", 0), node("node2", 4, "failed", error="CUDA error")], "FAIL", "CUDA error"),
    ],
)
def test_job_states(reports: list[NodeReport], status: str, word: str) -> None:
    row = judge.judge_job("r1", reports, 8)
    assert row.status == status and word in row.reason


def test_ranks_missing_stale_and_unreachable_fail() -> None:
    full = judge.judge_ranks(node("node1", 0), 4, "running", T.rank_stale_s)
    assert (full.status, full.measured) == ("PASS", "4/4 ranks")
    missing = NodeReport("node2", node("node2", 4).ranks[:3], NOW)
    row = judge.judge_ranks(missing, 4, "running", T.rank_stale_s)
    assert row.status == "FAIL" and "local rank(s) 3" in row.reason
    stale = NodeReport("node2", [*node("node2", 4).ranks[:3], rank(7, "node2", updated_at=NOW - 600)], NOW)
    row = judge.judge_ranks(stale, 4, "running", T.rank_stale_s)
    assert row.status == "FAIL" and "rank 7 (node2) silent for 600 s" in row.reason
    row = judge.judge_ranks(NodeReport("node2", [], None, "timed out"), 4, "partial", T.rank_stale_s)
    assert (row.status, row.reason) == ("FAIL", "timed out")


def test_completed_ranks_are_not_stale() -> None:
    done = NodeReport("node1", [rank(i, "node1", "completed", updated_at=NOW - 9999) for i in range(4)], NOW)
    assert judge.judge_ranks(done, 4, "completed", T.rank_stale_s).status == "PASS"


@pytest.mark.parametrize(("slow_rate", "status"), [(95.0, "PASS"), (75.0, "WARN"), (60.0, "FAIL")])
def test_balance_bands(slow_rate: float, status: str) -> None:
    reports = [node("node1", 0), NodeReport("node2", [*node("node2", 4).ranks[:3], rank(7, "node2")], NOW)]
    reports[1].ranks[3]["samples_per_second"] = slow_rate
    row = judge.judge_balance(reports, T)
    assert row.status == status
    assert row.data["ratio"] == pytest.approx(100.0 / slow_rate)
    assert "slowest rank 7 (node2)" in row.reason


def test_balance_prefers_reported_step_time_and_skips_without_rates() -> None:
    reports = [
        NodeReport("node1", [rank(0, "node1", step_seconds=0.1), rank(1, "node1", step_seconds=0.2)], NOW)
    ]
    assert judge.judge_balance(reports, T).data["ratio"] == pytest.approx(2.0)
    lonely = [NodeReport("node1", [rank(0, "node1")], NOW)]
    assert judge.judge_balance(lonely, T).status == "SKIP"


def test_balance_compares_compute_where_ranks_report_it() -> None:
    """In DDP every rank's step takes as long as the slowest's (the others wait in the all-reduce): the
    ranks' own compute names the slow one where their step times are all equal."""
    ranks = [rank(i, "node1", step_seconds=0.8, compute_seconds=0.2) for i in range(3)]
    ranks.append(rank(3, "node1", step_seconds=0.8, compute_seconds=0.78))
    row = judge.judge_balance([NodeReport("node1", ranks, NOW)], T)
    assert row.status == "FAIL" and row.data["ratio"] == pytest.approx(3.9)
    assert "slowest rank 3 (node1)" in row.reason and "per-rank compute" in row.reason


# --- alerts ----------------------------------------------------------------------------------------------


def alert(name: str, severity: str, state: str = "firing") -> Alert:
    return Alert(name, state, severity, {"alertname": name, "node": "node2"}, None)


@pytest.mark.parametrize(
    ("alerts", "status"),
    [
        ([], "PASS"),
        ([alert("TrainerStalled", "warning", "pending")], "PASS"),
        ([alert("TrainerStalled", "warning")], "WARN"),
        ([alert("TrainerStalled", "warning"), alert("NodeDown", "critical")], "FAIL"),
    ],
)
def test_alerts_firing_now(alerts: list[Alert], status: str) -> None:
    row = judge.judge_alerts_now(alerts)
    assert row.status == status
    if status != "PASS":
        assert "(node2)" in row.reason


def test_an_alert_on_a_down_endpoint_says_why_it_is_down() -> None:
    labels = {"alertname": "TrainerRankDown", "node": "node2", "instance": "10.0.0.3:9402", "local_rank": "2"}
    down = Alert("TrainerRankDown", "firing", "critical", labels, "2026-11-25T06:01:02.5Z")
    error = 'Get "http://10.0.0.3:9402/metrics": context deadline exceeded'
    row = judge.judge_alerts_now([down], {"10.0.0.3:9402": error, "10.0.0.3:9100": "refused"})
    assert row.status == "FAIL"
    assert row.reason == f"TrainerRankDown (node2); scrapes failing: 10.0.0.3:9402: {error}"
    assert row.data["alerts"] == [
        {"name": "TrainerRankDown", "state": "firing", "where": "node2", "instance": "10.0.0.3:9402",
         "active_at": "2026-11-25T06:01:02.5Z", "scrape_error": error}
    ]  # fmt: skip


def test_a_firing_alert_says_how_long_it_has_been_active() -> None:
    def down(instance: str, active_at: str | None) -> Alert:
        labels = {"alertname": "TrainerRankDown", "node": "node2", "instance": instance}
        return Alert("TrainerRankDown", "firing", "critical", labels, active_at)

    now = datetime.fromisoformat("2026-11-25T06:05:02Z").timestamp()
    alerts = [
        # Prometheus writes activeAt to the nanosecond (its HTTP API's own example); the oldest series counts.
        down("10.0.0.3:9402", "2026-11-25T06:03:02.723715405Z"),
        down("10.0.0.3:9403", "2026-11-25T06:01:02.5Z"),
        Alert(
            "NodeHighTemperature",
            "firing",
            "warning",
            {"alertname": "NodeHighTemperature", "node": "node1"},
            "garbled",
        ),
    ]
    row = judge.judge_alerts_now(alerts, now=now)
    assert row.reason == "NodeHighTemperature (node1), TrainerRankDown (node2, active 4 min)"
    # 06:03:02.72 to 06:05:02: 119.3 s.
    assert judge.judge_alerts_now(alerts[:1], now=now).reason == "TrainerRankDown (node2, active 119 s)"


def test_alert_history_lists_what_fired() -> None:
    assert judge.judge_alert_history([], 24).status == "PASS"
    row = judge.judge_alert_history(
        [
            ({"alertname": "NodeDown", "node": "node2"}, 12.0),
            ({"alertname": "TrainerStalled", "node": "node1"}, 3.0),
        ],
        24,
    )
    assert row.status == "WARN" and row.measured == "2 fired"
    assert "NodeDown (node2) ~12 min; TrainerStalled (node1) ~3 min" in row.reason


def test_prometheus_not_reached_is_never_a_pass() -> None:
    assert judge.prometheus_unavailable("alerts", "cannot be reached", configured=True).status == "WARN"
    assert judge.prometheus_unavailable("alerts", "no monitoring group", configured=False).status == "SKIP"


# --- disk and its trend ----------------------------------------------------------------------------------


def usage(avail_gib: float, size_gib: float = 100.0) -> DiskUsage:
    return DiskUsage("/var/lib/ddp/runs/r", "/dev/sda1", int(size_gib * GiB), 0, int(avail_gib * GiB), "/")


@pytest.mark.parametrize(("avail", "status"), [(50, "PASS"), (19, "WARN"), (4, "FAIL")])
def test_disk_free_bands(avail: float, status: str) -> None:
    row = judge.judge_disk("node1", usage(avail), T)
    assert row.status == status and row.measured.endswith(f"({avail:.0f}%)")


def test_slope_needs_two_points_an_hour_apart() -> None:
    assert slope([(0.0, 10.0)]) is None
    assert slope([(0.0, 10.0), (60.0, 5.0)]) is None
    assert slope([(0.0, 10.0), (DAY, 8.0), (2 * DAY, 6.0)]) == pytest.approx(-2.0 / DAY)


@pytest.mark.parametrize(
    ("avail", "status", "text"), [(100, "PASS", "10.0 d"), (30, "WARN", "3.0 d"), (5, "FAIL", "12.0 h")]
)
def test_time_to_full_from_a_falling_trend(avail: float, status: str, text: str) -> None:
    trend = Trend(-10 * GiB / DAY, "test")
    row = judge.judge_trend("node1", usage(avail, 200), trend, "", T)
    assert row.status == status and row.measured == f"full in {text}"
    assert row.data["time_to_full_s"] == pytest.approx(avail / 10 * DAY)


def test_trend_not_filling_and_unknown() -> None:
    assert judge.judge_trend("node1", usage(10), Trend(1.0, "x"), "", T).measured == "not filling"
    row = judge.judge_trend("node1", usage(10), None, "first snapshot", T)
    assert (row.status, row.reason) == ("SKIP", "first snapshot")


def snapshot(ts: float, avail: float, inventory: str = "/inv", mount: str = "/") -> dict[str, Any]:
    return {"ts": ts, "inventory": inventory, "disk": {"node1": {"avail_bytes": avail, "mount": mount}}}


def test_daily_points_keep_the_last_snapshot_of_each_earlier_day() -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime(NOW))
    start_of_today = time.mktime(time.strptime(today, "%Y-%m-%d")) - time.timezone
    records = [
        snapshot(start_of_today - 2 * DAY + 100, 90),
        snapshot(start_of_today - 2 * DAY + 200, 80),  # the later one of that day wins
        snapshot(start_of_today - DAY + 100, 70),
        snapshot(start_of_today - DAY + 200, 1, inventory="/other"),
        snapshot(start_of_today - DAY + 300, 1, mount="/data"),
        snapshot(start_of_today + 10, 1),  # today: only the current measurement counts
        snapshot(NOW - 30 * DAY, 1),  # outside the window
        {"ts": "garbage", "inventory": "/inv"},
    ]
    points = daily_points(records, "/inv", "node1", "/", NOW, 14)
    assert points == [(start_of_today - 2 * DAY + 200, 80.0), (start_of_today - DAY + 100, 70.0)]


def test_trend_from_snapshots_gives_time_to_full() -> None:
    points = [(NOW - 2 * DAY, 50.0 * GiB), (NOW - DAY, 40.0 * GiB)]
    trend = from_snapshots(points, NOW, int(30 * GiB))
    assert trend is not None and "2 earlier daily snapshot(s) over 2.0 d" in trend.source
    assert trend.time_to_full_s(int(30 * GiB)) == pytest.approx(3 * DAY)
    assert from_snapshots([], NOW, int(30 * GiB)) is None


# --- checkpoints, network, thermal -----------------------------------------------------------------------


def ckpt(verdict: str, ok: bool = True, problem: str | None = None) -> CheckpointReport:
    checked = [CheckedFile("step-000000060.pt", 60, 2 * 1024 * 1024, NOW - 300, ok, problem)]
    return CheckpointReport(
        "/runs/r/checkpoints", verdict, 3, checked if verdict != "none" else [], problem, NOW
    )


def test_checkpoint_verdicts() -> None:
    good = judge.judge_checkpoint("node1", ckpt("ok"), NOW)
    assert good.status == "PASS" and good.measured == "step-000000060.pt" and "saved 5 min ago" in good.reason
    bad = judge.judge_checkpoint(
        "node1", ckpt("corrupt", False, "/runs/r/checkpoints/step-000000060.pt: sha256")
    )
    assert bad.status == "FAIL" and bad.measured == "step-000000060.pt corrupt"
    assert judge.judge_checkpoint("node2", ckpt("none", problem="no checkpoint yet")).status == "WARN"


def test_network_rows_per_endpoint() -> None:
    asked = [
        ProbeTarget("node2", "10.0.0.12", 22, "ssh"),
        ProbeTarget("node3", "10.0.0.13", 22, "ssh"),
        ProbeTarget("node1", "10.0.0.11", 29400, "rendezvous"),
        ProbeTarget("node4", "10.0.0.14", 22, "ssh"),
    ]
    report = ConnectivityReport(
        [
            Connect("node2", "10.0.0.12", 22, "ssh", True, 0.4),
            Connect("node3", "10.0.0.13", 22, "ssh", True, 12.0),
            Connect("node1", "10.0.0.11", 29400, "rendezvous", False, error="Connection refused"),
        ]
    )
    rows = judge.judge_network("node2", report, asked, T, {"node1": {22}})
    assert [r.status for r in rows] == ["PASS", "WARN", "FAIL", "FAIL"]
    assert (
        "-> node1 10.0.0.11:29400 (rendezvous): Connection refused; node1 does not listen on 29400"
        in rows[2].reason
    )
    assert "printed nothing" in rows[3].reason


def test_thermal_skip_warn_fail() -> None:
    none = judge.judge_thermal("node1", ThermalReport(), T)
    assert none.status == "SKIP" and "no readable /sys/class/thermal sensor" in none.reason
    broken = judge.judge_thermal("node1", ThermalReport(nvidia_smi=True, nvidia_error="driver not loaded"), T)
    assert broken.status == "WARN" and "driver not loaded" in broken.reason
    warm = judge.judge_thermal("node1", ThermalReport([Zone("z0", "x86_pkg_temp", 88.0)]), T)
    assert warm.status == "WARN" and "x86_pkg_temp at 88 C" in warm.reason
    cool_zone = [Zone("z0", "acpitz", 40.0)]
    assert judge.judge_thermal("node1", ThermalReport(cool_zone), T).status == "PASS"
    throttled = ThermalReport(cool_zone, [Gpu(0, "H100", 70.0, 0x0), Gpu(1, "H100", 75.0, 0x40)], True)
    row = judge.judge_thermal("node1", throttled, T)
    assert row.status == "FAIL" and "GPU1 HW thermal slowdown" in row.reason
    idle = ThermalReport(cool_zone, [Gpu(0, "H100", 40.0, 0x1)], True)  # GPU idle: not heat
    assert judge.judge_thermal("node1", idle, T).status == "PASS"


def test_overall_and_counts() -> None:
    rows = [Finding("h", "a", s, "", "", "") for s in ("PASS", "SKIP", "WARN")]
    assert judge.overall(rows) == "WARN"
    assert judge.overall([*rows, Finding("h", "b", "FAIL", "", "", "")]) == "FAIL"
    assert judge.overall([Finding("h", "a", "SKIP", "", "", "")]) == "SKIP"
    assert counts(rows) == {"PASS": 1, "WARN": 1, "FAIL": 0, "SKIP": 1}
