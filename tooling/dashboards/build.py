"""Render the dashboards to the JSON files the grafana role provisions, and list every query they run.

`python -m tooling.dashboards` rewrites roles/grafana/files/dashboards/; `--check` only compares (exit 1 on
drift), so a hand edit of the JSON is caught by the unit tests and by CI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tooling.dashboards import checkpoints, overview, performance, ranks, resources, training_health
from tooling.dashboards.common import AnyPanel, dashboard

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = ROOT / "roles" / "grafana" / "files" / "dashboards"


@dataclass(frozen=True)
class Board:
    """One dashboard: its uid (also its file name), title and description, and its module's panels."""

    uid: str
    title: str
    description: str
    panels: Callable[[], Sequence[AnyPanel]]

    def build(self) -> Dashboard:
        return dashboard(self.uid, self.title, self.description, self.panels())


# One module per dashboard, in the order of the dashboards menu.
BOARDS: tuple[Board, ...] = (
    Board(
        "ddp-overview",
        "DDP cluster overview",
        "One phase at a glance: ranks, throughput, balance, correctness, checkpoints, memory.",
        overview.panels,
    ),
    Board(
        "ddp-performance",
        "DDP throughput, step time and communication",
        "Throughput and its spread, per-rank step-time balance and the cost of gradient sync.",
        performance.panels,
    ),
    Board(
        "ddp-resources",
        "DDP CPU, GPU and memory",
        "Utilisation and memory pressure of the ranks and their nodes.",
        resources.panels,
    ),
    Board(
        "ddp-training-health",
        "DDP loss and gradient sync",
        "Is the job learning, and do the ranks agree: loss, non-finite steps, gradient sync.",
        training_health.panels,
    ),
    Board(
        "ddp-checkpoints",
        "DDP checkpoints",
        "Checkpoint age against the expected interval, writes and failures, and their disk.",
        checkpoints.panels,
    ),
    Board(
        "ddp-ranks",
        "DDP ranks",
        "Which ranks and nodes answer, restarts, progress and the run each rank belongs to.",
        ranks.panels,
    ),
)

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
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _built() -> dict[str, Dashboard]:
    """Every dashboard by its file name; a uid used twice would make one file overwrite another."""
    dashboards = [board.build() for board in BOARDS]
    uids = [d.uid for d in dashboards]
    if len(set(uids)) != len(uids):
        raise ValueError(f"dashboard uids used twice: {uids}")
    return {f"{d.uid}.json": d for d in dashboards}


def render_all() -> dict[str, str]:
    return {name: render(dashboard) for name, dashboard in _built().items()}


# A query variable's PromQL: `label_values(<series selector>, <label>)`.
_LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)")


def _variable_selector(dashboard: str, variable: dict[str, Any]) -> str:
    text = variable["query"]["query"]
    match = _LABEL_VALUES.fullmatch(text)
    if match is None:
        raise ValueError(
            f"dashboard {dashboard}: variable ${variable['name']}: query {text!r}, "
            "expected label_values(<selector>, <label>)"
        )
    return match.group("selector")


def queries() -> list[Query]:
    """Every (dashboard, panel title, expr) of the rendered dashboards, variables' selectors included."""
    found: list[Query] = []
    for content in render_all().values():
        rendered: dict[str, Any] = json.loads(content)
        uid = rendered["uid"]
        for variable in rendered["templating"]["list"]:
            selector = _variable_selector(uid, variable)
            found.append(Query(uid, f"variable ${variable['name']}", "var", selector))
        for panel in rendered["panels"]:
            for target in panel["targets"]:
                found.append(Query(uid, panel["title"], target["refId"], target["expr"]))
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
