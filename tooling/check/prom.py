"""The Prometheus questions of the daily checks, over the HTTP API client the gates use too (same errors,
same URL handling): alerts firing now, alert history, and the checkpoint filesystem's slope per node."""

from __future__ import annotations

from typing import Any

from tooling.check.parsers import Alert, parse_alerts, parse_vector
from tooling.prometheus_api import PrometheusAccessError, PrometheusClient, PrometheusError

__all__ = ["CheckPrometheus", "PrometheusAccessError", "PrometheusError"]

# The recording rule of roles/prometheus keeps only the filesystem that holds each node's checkpoints.
CHECKPOINT_AVAIL = "instance:node_checkpoint_filesystem_avail_bytes:current"


def history_query(hours: float) -> str:
    # A 1-minute subquery: each sample is one minute the alert was firing, whatever the rule interval.
    return f'count_over_time(ALERTS{{alertstate="firing"}}[{hours:g}h:1m])'


def slope_query(hours: float) -> str:
    # deriv() is the least-squares slope predict_linear() extrapolates with.
    return f"deriv({CHECKPOINT_AVAIL}[{hours:g}h])"


class CheckPrometheus(PrometheusClient):
    def alerts(self) -> list[Alert]:
        return parse_alerts(self._get("/api/v1/alerts"))

    def instant(self, expr: str) -> list[tuple[dict[str, str], float]]:
        return parse_vector(self._get("/api/v1/query", {"query": expr}))

    def alert_history(self, hours: float) -> list[tuple[dict[str, str], float]]:
        return self.instant(history_query(hours))

    def disk_slopes(self, hours: float) -> dict[str, float]:
        """node -> bytes per second of the checkpoint filesystem's free space (negative: filling)."""
        out: dict[str, Any] = {}
        for labels, value in self.instant(slope_query(hours)):
            node = labels.get("node")
            if node:
                out[node] = value
        return out
