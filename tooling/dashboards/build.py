"""Render the dashboards to the JSON files the grafana role provisions, and list every query they run.

`python -m tooling.dashboards` rewrites roles/grafana/files/dashboards/; `--check` only compares (exit 1 on
drift), so a hand edit of the JSON is caught by the unit tests and by CI.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooling.dashboards.dashboards import all_dashboards
from tooling.dashboards.model import Dashboard, render_dashboard

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = ROOT / "roles" / "grafana" / "files" / "dashboards"

# What Grafana puts in place of its variables before a query reaches Prometheus, with values a test (or a
# check against a live Prometheus) can use: a phase key of tooling/phases.yml and "all nodes".
SAMPLE_VALUES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "phase": "2a",
    "node": ".+",
}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")

# node_exporter series the dashboards may read (names of node_exporter 1.5, Debian 12's package, and later).
NODE_EXPORTER_METRICS = frozenset(
    {
        "node_cpu_seconds_total",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
        "node_load1",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
    }
)


@dataclass(frozen=True)
class Query:
    """One PromQL expression a dashboard runs: a panel's target or a variable's series selector."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def promql(self) -> str:
        """The expression with Grafana's variables replaced by sample values: plain PromQL."""
        return substitute(self.expr)


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    table = {**SAMPLE_VALUES, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in table:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return table[name]

    return _VARIABLE.sub(replace, expr)


def render(dashboard: Dashboard) -> str:
    """The dashboard's file content: sorted keys and a trailing newline, byte-identical on every run."""
    return json.dumps(render_dashboard(dashboard), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    dashboards = all_dashboards()
    uids = [d.uid for d in dashboards]
    if len(set(uids)) != len(uids):
        raise ValueError(f"dashboard uids used twice: {uids}")
    return {d.file_name: render(d) for d in dashboards}


def queries() -> list[Query]:
    """Every (dashboard, panel title, expr) of the rendered dashboards, variables' selectors included."""
    found: list[Query] = []
    for dashboard in all_dashboards():
        rendered: dict[str, Any] = render_dashboard(dashboard)
        for variable in dashboard.variables:
            found.append(Query(dashboard.uid, f"variable ${variable.name}", "var", variable.selector))
        for panel in rendered["panels"]:
            for target in panel["targets"]:
                found.append(Query(dashboard.uid, panel["title"], target["refId"], target["expr"]))
    return found


def write(output_dir: Path = OUTPUT_DIR) -> list[Path]:
    """Write every dashboard and remove JSON files no dashboard produces; returns the files that changed."""
    output_dir.mkdir(parents=True, exist_ok=True)
    files = render_all()
    changed: list[Path] = []
    for name, content in sorted(files.items()):
        path = output_dir / name
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            changed.append(path)
    for stale in sorted(output_dir.glob("*.json")):
        if stale.name not in files:
            stale.unlink()
            changed.append(stale)
    return changed


def drift(output_dir: Path = OUTPUT_DIR) -> list[str]:
    """Differences between the committed files and the generator, one line each; empty when in step."""
    files = render_all()
    problems: list[str] = []
    for name, content in sorted(files.items()):
        path = output_dir / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text() != content:
            problems.append(f"{path}: differs from the generator")
    for extra in sorted(output_dir.glob("*.json")):
        if extra.name not in files:
            problems.append(f"{extra}: no dashboard produces it")
    return problems
