"""Dashboards as code: the committed JSON is what the generator writes, and every query is valid PromQL.

- roles/grafana/files/dashboards/*.json equal `python -m tooling.dashboards` output (no hand-edited drift);
- every panel has a unique id, the provisioned datasource and at least one query; panels do not overlap;
- every expression (Grafana variables replaced by sample values) passes `promtool check rules`;
- every metric name an expression reads exists: the trainer's (ddp/metrics.py), the recording rules',
  node_exporter's or `up`.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tooling.dashboards import OUTPUT_DIR, common, drift, queries, render_all, substitute, write
from tooling.dashboards.__main__ import main
from tooling.dashboards.build import NODE_EXPORTER_METRICS
from tooling.dashboards.common import DATASOURCE_UID, GRID_WIDTH

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "roles" / "prometheus" / "files" / "rules"
GRAFANA_VARS = ROOT / "roles" / "grafana" / "vars" / "main.yml"
DASHBOARD_FILES = sorted(OUTPUT_DIR.glob("*.json"))


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARD_FILES}


# --- the metric names the dashboards may read ----------------------------------------------------------


def _trainer_metric_names() -> set[str]:
    """Series names ddp/metrics.py exposes, read from its source (importing it would pull in torch)."""
    tree = ast.parse((ROOT / "ddp" / "metrics.py").read_text())
    suffixes = {
        "gauge": ("",),
        "measured_gauge": ("",),
        "Gauge": ("",),
        "counter": ("_total",),
        "Counter": ("_total",),
        "Histogram": ("_bucket", "_sum", "_count"),
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        )
        first = node.args[0]
        if called in suffixes and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.update(first.value + suffix for suffix in suffixes[called])
    return names


def _recorded_names() -> set[str]:
    return {
        rule["record"]
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


KNOWN_METRICS = _trainer_metric_names() | _recorded_names() | NODE_EXPORTER_METRICS | {"up"}

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers left once strings, label matchers, ranges and
    grouping label lists are removed, other than function names and PromQL keywords."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (node, le) (rate(trainer_step_duration_seconds_bucket{job="trainer", node=~"a|b"}[5m]))'
        " / on (instance) group_left () count by (instance) (node_load1 offset 5m) and job:x:y > bool 0.8"
    )
    assert metric_names(expr) == {"trainer_step_duration_seconds_bucket", "node_load1", "job:x:y"}


def test_known_metrics_read_from_the_trainer() -> None:
    # Guards the source parsing: a counter gets _total, the histogram its three series.
    assert {
        "trainer_global_samples_per_second",
        "trainer_nonfinite_loss_total",
        "trainer_step_duration_seconds_bucket",
        "trainer_info",
    } <= KNOWN_METRICS


# --- the committed files ---------------------------------------------------------------------------------


def test_committed_dashboards_match_the_generator() -> None:
    problems = drift()
    assert not problems, "\n".join([*problems, "regenerate with: python -m tooling.dashboards"])


def test_generator_is_deterministic_and_check_mode_catches_drift(tmp_path: Path) -> None:
    assert render_all() == render_all()
    write(tmp_path)
    assert main(["--check", "--output", str(tmp_path)]) == 0
    first = sorted(tmp_path.glob("*.json"))[0]
    first.write_text(first.read_text().replace('"editable": false', '"editable": true'))
    (tmp_path / "hand-made.json").write_text("{}\n")
    assert main(["--check", "--output", str(tmp_path)]) == 1
    assert main(["--output", str(tmp_path)]) == 0
    assert drift(tmp_path) == []
    assert not (tmp_path / "hand-made.json").exists()


def test_expected_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARD_FILES} == {
        "ddp-overview",
        "ddp-performance",
        "ddp-resources",
        "ddp-training-health",
        "ddp-checkpoints",
        "ddp-ranks",
    }


@pytest.mark.parametrize("name", [p.name for p in DASHBOARD_FILES])
def test_panels_have_ids_datasource_and_queries(name: str) -> None:
    dashboard = _dashboards()[name]
    assert dashboard["uid"] == Path(name).stem
    panels = dashboard["panels"]
    assert panels, f"{name}: no panels"
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"{name}: panel ids repeat: {ids}"
    for panel in panels:
        where = f"{name}: panel {panel['title']!r}"
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
        assert panel["targets"], f"{where} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: refIds repeat"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{where}: empty expr"
            assert target["datasource"]["uid"] == DATASOURCE_UID, where
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"phase", "node"}, name
    for variable in variables.values():
        assert variable["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, name
        assert variable["query"]["query"].startswith("label_values("), f"{name}: ${variable['name']}"


@pytest.mark.parametrize("name", [p.name for p in DASHBOARD_FILES])
def test_panels_fit_the_grid_without_overlap(name: str) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in _dashboards()[name]["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_WIDTH, f"{name}: {panel['title']!r} off the grid"
        covered = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not covered & cells, f"{name}: {panel['title']!r} overlaps another panel"
        cells |= covered


def test_a_panel_past_the_grid_edge_is_refused() -> None:
    # The SDK lays panels out left to right but would place this one at columns 12-30 instead of wrapping.
    panels = [
        common.timeseries_panel(title, [common.query("up")], width=width)
        for title, width in (("a", 12), ("b", 18))
    ]
    with pytest.raises(ValueError, match=r"dashboard t: panel 'b' spans columns 12-30; the grid is 24 wide"):
        common.dashboard("t", "T", "", panels)


def test_repeated_panel_titles_are_refused() -> None:
    panels = [common.timeseries_panel("same", [common.query("up")]) for _ in range(2)]
    with pytest.raises(ValueError, match=r"dashboard t: panel titles used twice: \['same'\]"):
        common.dashboard("t", "T", "", panels)


def test_datasource_uid_matches_the_role() -> None:
    role_vars = yaml.safe_load(GRAFANA_VARS.read_text())
    assert role_vars["_grafana_datasource_uid"] == DATASOURCE_UID


# --- the queries -----------------------------------------------------------------------------------------


def test_queries_list_every_panel() -> None:
    listed = {(q.dashboard, q.panel) for q in queries()}
    for name, dashboard in _dashboards().items():
        for panel in dashboard["panels"]:
            assert (dashboard["uid"], panel["title"]) in listed, (
                f"{name}: {panel['title']!r} not in queries()"
            )
    exprs = {q.expr for q in queries()}
    committed = {t["expr"] for d in _dashboards().values() for p in d["panels"] for t in p["targets"]}
    assert committed <= exprs


def test_grafana_variables_are_substituted() -> None:
    assert substitute('rate(x{phase="$phase", node=~"${node}"}[$__rate_interval])') == (
        'rate(x{phase="2a", node=~".+"}[1m])'
    )
    with pytest.raises(KeyError, match=r"\$nope"):
        substitute('x{a="$nope"}')
    for query in queries():
        assert "$" not in query.promql, f"{query.dashboard} / {query.panel}: {query.promql}"


def test_every_query_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found on PATH: install the Debian package prometheus (scripts/bootstrap.sh)"
        )
    # `promtool check rules` parses each recording rule's expr with Prometheus' own PromQL parser.
    groups: dict[str, list[dict[str, str]]] = {}
    for i, query in enumerate(queries()):
        groups.setdefault(query.dashboard, []).append(
            {"record": f"dashboard:query_{i}:expr", "expr": query.promql}
        )
    rules = {"groups": [{"name": name, "rules": rules} for name, rules in sorted(groups.items())]}
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        # Point at the panel, not at a rule number in a temp file.
        by_record = {f"dashboard:query_{i}:expr": q for i, q in enumerate(queries())}
        named = [
            f"{q.dashboard} / {q.panel} / {q.ref_id}: {q.promql}"
            for r, q in by_record.items()
            if f'"{r}"' in result.stdout + result.stderr
        ]
        pytest.fail(f"promtool check rules failed:\n{result.stdout}\n{result.stderr}\n" + "\n".join(named))
    assert f"SUCCESS: {len(queries())} rules found" in result.stdout


def test_every_metric_name_exists() -> None:
    unknown = [
        f"{q.dashboard} / {q.panel} / {q.ref_id}: {sorted(metric_names(q.promql) - KNOWN_METRICS)}"
        for q in queries()
        if metric_names(q.promql) - KNOWN_METRICS
    ]
    assert not unknown, (
        "metric names that no trainer, recording rule or node_exporter provides:\n" + "\n".join(unknown)
    )
    for query in queries():
        assert metric_names(query.promql), f"{query.dashboard} / {query.panel}: reads no metric"


def test_the_asked_for_signals_are_on_a_dashboard() -> None:
    used = set().union(*(metric_names(q.promql) for q in queries()))
    required = {
        "job:trainer_global_samples_per_second:max",
        "job:trainer_throughput_stddev_samples_per_second:max",
        "instance:trainer_step_duration_seconds:mean1m",
        "job:trainer_step_duration_seconds:max_over_min",
        "trainer_comm_overhead_ratio",
        "trainer_cpu_utilisation_ratio",
        "trainer_gpu_utilisation_ratio",
        "trainer_memory_pressure_ratio",
        "trainer_gpu_memory_pressure_ratio",
        "trainer_loss",
        "trainer_nonfinite_loss_total",
        "trainer_grad_sync_accuracy_ratio",
        "trainer_checkpoint_age_seconds",
        "trainer_checkpoint_interval_seconds",
        "trainer_checkpoints_saved_total",
        "trainer_checkpoint_failures_total",
        "instance:node_checkpoint_filesystem_avail_bytes:current",
        "job:trainer_ranks_up:sum",
        "up",
    }
    assert not required - used, f"not on any dashboard: {sorted(required - used)}"
