"""Reading the sandbox's monitoring host from a test: its addresses, Prometheus' HTTP API (Alertmanager's
answers pass through as they are) and waiting for something to show up there."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any

from tests.integration.sandbox_harness import Sandbox
from tooling.inventory import group_hosts, load_inventory


def monitor_url(box: Sandbox, port: int) -> str:
    inventory = load_inventory(box.inventory)
    host = group_hosts(inventory, "monitoring")[0]
    address = inventory["_meta"]["hostvars"][host]["ansible_host"]
    return f"http://{address}:{port}"


def prometheus_api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}{path}{query}", timeout=15) as response:
        body = json.loads(response.read().decode())
    if isinstance(body, dict) and "status" in body:
        assert body["status"] == "success", body
        return body["data"]
    return body


def instant_query(url: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = prometheus_api(url, "/api/v1/query", query=expr)["result"]
    return result


def wait_until(what: str, probe: Any, timeout: float, every: float = 5) -> Any:
    started = time.monotonic()
    deadline = started + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            print(f"[waited] {time.monotonic() - started:5.1f} s  {what}")
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not seen within {timeout:.0f} s (last answer: {last!r})")


def rank_down_alerts(url: str, *states: str) -> list[dict[str, Any]]:
    alerts = prometheus_api(url, "/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == "TrainerRankDown" and a["state"] in states]


def down_targets(url: str) -> dict[str, str]:
    """instance -> Prometheus' last scrape error, for each active target it holds down."""
    targets = prometheus_api(url, "/api/v1/targets", state="active")["activeTargets"]
    return {t["labels"]["instance"]: t["lastError"] for t in targets if t["health"] == "down"}


def wait_no_rank_down(url: str, timeout: float) -> None:
    """Until no TrainerRankDown is pending or firing: one raised while the ranks were still starting (or
    still down from an earlier test) is resolved only at the first rule evaluation after a good scrape."""
    try:
        wait_until(
            "no TrainerRankDown pending or firing",
            lambda: not rank_down_alerts(url, "pending", "firing"),
            timeout,
        )
    except AssertionError as late:
        active = [
            (a["labels"].get("instance"), a["state"], a["activeAt"])
            for a in rank_down_alerts(url, "pending", "firing")
        ]
        raise AssertionError(f"{late}; still active: {active}; down targets: {down_targets(url)}") from None
