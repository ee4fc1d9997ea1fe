"""Prometheus's HTTP API (plain urllib, no client library): range queries and the scrape interval.

The gates measure runs with it and the daily checks ask their questions over it; every failure is a
PrometheusError naming the URL and the reason.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

Series = list[tuple[float, float]]
DEFAULT_SCRAPE_INTERVAL_S = 15.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class PrometheusError(Exception):
    """Prometheus could not answer: the message names the URL and the reason."""


def parse_duration(text: str) -> float | None:
    parts = _DURATION.findall(text or "")
    return sum(float(n) * _SECONDS[u] for n, u in parts) if parts else None


@dataclass
class PrometheusClient:
    url: str
    timeout_s: float = 10.0

    def _get(self, path: str, params: dict[str, str] | None = None) -> object:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        address = f"{self.url.rstrip('/')}{path}{query}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout_s) as response:
                body = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc)
            raise PrometheusError(f"{self.url}: HTTP {exc.code} for {path}: {detail}") from None
        except urllib.error.URLError as exc:
            raise PrometheusError(f"{self.url}: cannot be reached ({exc.reason})") from None
        except (TimeoutError, OSError) as exc:
            raise PrometheusError(f"{self.url}: cannot be reached ({exc})") from None
        except ValueError:
            raise PrometheusError(
                f"{self.url}: {path} did not answer with JSON (is this Prometheus?)"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else body
            raise PrometheusError(f"{self.url}: {path} failed: {error}")
        return body.get("data")

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        result = data.get("result", []) if isinstance(data, dict) else []
        return [
            [(float(t), float(v)) for t, v in item.get("values", []) if math.isfinite(float(v))]
            for item in result
        ]

    def scrape_interval(self) -> float:
        """The longest scrape interval among the active targets (older servers: the default 15 s)."""
        data = self._get("/api/v1/targets", {"state": "active"})
        targets = data.get("activeTargets", []) if isinstance(data, dict) else []
        intervals = [parse_duration(str(t.get("scrapeInterval", ""))) for t in targets]
        known = [i for i in intervals if i]
        return max(known) if known else DEFAULT_SCRAPE_INTERVAL_S


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read().decode("utf-8"))
        return str(body.get("error") or exc.reason)
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)
