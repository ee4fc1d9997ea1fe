"""Grafana dashboards as code: `python -m tooling.dashboards` writes roles/grafana/files/dashboards/*.json."""

from tooling.dashboards.build import OUTPUT_DIR, Query, drift, queries, render_all, substitute, write

__all__ = ["OUTPUT_DIR", "Query", "drift", "queries", "render_all", "substitute", "write"]
