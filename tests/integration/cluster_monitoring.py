"""Monitoring on the sandbox cluster: Prometheus on the monitor host scrapes a phase-2a run (every rank and
both nodes), every dashboard panel's PromQL returns data from it, a killed node's ranks fire TrainerRankDown
through to Alertmanager, and a run that ends as planned raises no rank alert.

Imported by test_cluster_phase2a.py so they share its provisioned cluster (one module per xdist worker)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from tests.integration.sandbox_harness import Sandbox
from tests.integration.sandbox_jobs import SMALL_RUN, deploy_run, on_node, wait_for_summary
from tests.integration.sandbox_monitor import instant_query, monitor_url, prometheus_api, wait_until
from tooling.dashboards.build import queries

PHASE = "2a"
NODES = ("node1", "node2")
RANKS = 8
# Grafana's own placeholders, as Grafana would fill them for a 5-minute view of this phase.
PANEL_VARIABLES = {
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$phase": PHASE,
    "$node": ".*",
}


def _rank_down_alerts(url: str, state: str) -> list[dict[str, Any]]:
    alerts = prometheus_api(url, "/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == "TrainerRankDown" and a["state"] == state]


def _rfc3339(text: str) -> float:
    """Prometheus' activeAt (RFC 3339, nanoseconds, Z) as Unix time."""
    whole, _, rest = text.rstrip("Z").partition(".")
    fraction = float("0." + "".join(c for c in rest if c.isdigit())) if rest else 0.0
    return datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp() + fraction


def _panel_expr(expr: str) -> str:
    for name, value in PANEL_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr.replace("$1", ""), f"unfilled dashboard variable in {expr}"
    return expr


def test_phase2a_run_is_scraped_charted_and_alerted(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    prometheus = monitor_url(box, 9090)
    deploy_run(box, PHASE, "monitored-2a", [*SMALL_RUN, "training.max_steps=1000000"])

    # Every rank of the phase and both nodes, as Prometheus' HTTP API reports them.
    def all_ranks() -> list[dict[str, Any]]:
        series = instant_query(prometheus, f'trainer_step{{job="trainer", phase="{PHASE}"}} > 0')
        return series if len(series) == RANKS else []

    ranks = wait_until("8 ranks stepping in Prometheus", all_ranks, timeout=240)
    assert sorted(int(s["metric"]["rank"]) for s in ranks) == list(range(RANKS))
    per_node = {n: sum(1 for s in ranks if s["metric"]["node"] == n) for n in NODES}
    assert per_node == {"node1": 4, "node2": 4}, per_node
    nodes = instant_query(prometheus, f'node_memory_MemAvailable_bytes{{job="node", phase="{PHASE}"}}')
    assert sorted(s["metric"]["node"] for s in nodes) == list(NODES)
    targets = prometheus_api(prometheus, "/api/v1/targets", state="active")["activeTargets"]
    scraped = sorted((t["labels"]["job"], t["labels"]["node"]) for t in targets if "node" in t["labels"])
    expected = [("node", n) for n in NODES] + [("trainer", n) for n in NODES for _ in range(4)]
    assert scraped == sorted(expected), "Prometheus must scrape exactly phase 2a's nodes and ranks"

    # Rates over 1m windows and the per-rank step-time means need a little history.
    time.sleep(75)
    empty: list[str] = []
    gpu_only: list[str] = []
    for query in queries():
        expr = _panel_expr(query.expr)
        answer = instant_query(prometheus, expr)
        if "gpu" in expr:
            # CPU nodes export no GPU series: those panels must stay empty here, not show made-up zeros.
            gpu_only.append(expr)
            assert answer == [], f"{query.dashboard} / {query.panel}: GPU data on CPU nodes: {answer[:2]}"
        elif not answer:
            empty.append(f"{query.dashboard} / {query.panel}: {expr}")
    assert empty == [], "dashboard queries with no data from the live Prometheus:\n" + "\n".join(empty)
    assert len(gpu_only) <= 6, gpu_only  # only the GPU panels are excused

    # A node's training processes die and stay dead: its four ranks alert, in Prometheus and Alertmanager.
    killed = on_node(box, "node2", "systemctl kill --signal=SIGKILL ddp-trainer.service")
    assert killed.rc == 0, killed

    def node2_firing() -> list[dict[str, Any]]:
        firing = [a for a in _rank_down_alerts(prometheus, "firing") if a["labels"]["node"] == "node2"]
        return firing if len(firing) == 4 else []

    firing = wait_until("TrainerRankDown firing for node2's 4 ranks", node2_firing, timeout=240)
    assert sorted(a["labels"]["local_rank"] for a in firing) == ["0", "1", "2", "3"]
    assert all(a["labels"]["phase"] == PHASE and a["labels"]["severity"] == "critical" for a in firing)

    alertmanager = monitor_url(box, 9093)

    def in_alertmanager() -> list[dict[str, Any]]:
        alerts = prometheus_api(alertmanager, "/api/v2/alerts")
        wanted = {"alertname": "TrainerRankDown", "node": "node2"}
        return [a for a in alerts if wanted.items() <= a["labels"].items()]

    received = wait_until("TrainerRankDown in Alertmanager", in_alertmanager, timeout=60)
    assert received[0]["status"]["state"] == "active"


def test_run_that_ends_as_planned_raises_no_rank_alert(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    prometheus = monitor_url(box, 9090)
    deploy_run(box, PHASE, "monitored-2a-short", [*SMALL_RUN, "training.max_steps=40"])
    summary = wait_for_summary(box, "/var/lib/ddp/runs/monitored-2a-short")
    assert summary["status"] == "completed", summary
    # The summary is written before torchrun and the unit finish; the unit records its end when it stops.
    for host in NODES:
        wait_until(
            f"{host}'s unit recording a successful end",
            lambda host=host: re.search(
                r'ddp_trainer_job_expected\{[^}]*result="success"\} 0',
                on_node(box, host, "cat /var/lib/node_exporter/textfile/ddp-trainer.prom").stdout,
            ),
            timeout=90,
            every=3,
        )

    # The endpoints are gone now; TrainerRankDown waits 1 minute before firing, so watch a little longer.
    # Alerts still firing from the killed run of the test before resolve on their own; only one that became
    # active after this run ended would be a false alarm.
    ended = time.time()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        raised = [
            a
            for a in _rank_down_alerts(prometheus, "firing") + _rank_down_alerts(prometheus, "pending")
            if _rfc3339(a["activeAt"]) > ended + 20
        ]
        assert raised == [], f"a finished run raised TrainerRankDown: {raised}"
        time.sleep(5)
    down = instant_query(prometheus, f'up{{job="trainer", phase="{PHASE}"}} == 0')
    assert len(down) == RANKS, "the endpoints of the finished run should be scraped as down"
