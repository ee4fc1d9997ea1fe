"""Small builders for Grafana dashboard JSON: plain dataclasses rendered to plain dicts.

Only the parts of Grafana's dashboard model the project's dashboards use are modelled. Panel ids and grid
positions are assigned from the order panels are declared in, so a dashboard renders the same JSON every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The provisioned Prometheus datasource (roles/grafana/templates/datasource.yml.j2 gives it this uid). A fixed
# uid lets the dashboards name it directly instead of asking the viewer to pick one.
DATASOURCE_UID = "ddp-prometheus"
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}

# Grafana 10.4 / 11 dashboard schema; older servers migrate it on load.
SCHEMA_VERSION = 39
GRID_WIDTH = 24

GREEN = "green"
YELLOW = "#EAB839"
RED = "red"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel. `instant` asks for the last value only (stat panels, tables)."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass(frozen=True)
class Threshold:
    """A colour step: values from `value` upwards take `color` (the first step starts at -inf)."""

    value: float | None
    color: str


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[Target, ...]
    description: str = ""
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: tuple[Threshold, ...] = ()
    # Draw the thresholds as lines on a time series (limits the viewer should compare against).
    threshold_lines: bool = False
    # Value-to-text mappings, e.g. {0: ("down", RED)} for `up`.
    mappings: tuple[tuple[int, str, str], ...] = ()
    bars: bool = False


@dataclass(frozen=True)
class Variable:
    """A query variable filled from label values; `selector` is the PromQL series selector it reads."""

    name: str
    label: str
    selector: str
    label_name: str
    multi: bool = False
    include_all: bool = False
    # Value that "All" stands for in a regex matcher (`node=~"$node"`).
    all_value: str | None = None

    @property
    def query(self) -> str:
        return f"label_values({self.selector}, {self.label_name})"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = ("ddp",)
    refresh: str = "30s"
    time_from: str = "now-1h"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"


def _thresholds(panel: Panel) -> dict[str, Any]:
    steps = panel.thresholds or (Threshold(None, GREEN),)
    return {
        "mode": "absolute",
        "steps": [{"color": step.color, "value": step.value} for step in steps],
    }


def _mappings(panel: Panel) -> list[dict[str, Any]]:
    if not panel.mappings:
        return []
    options = {
        str(value): {"color": color, "index": index, "text": text}
        for index, (value, text, color) in enumerate(panel.mappings)
    }
    return [{"options": options, "type": "value"}]


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "color": {"mode": "thresholds" if panel.kind in ("stat", "state-timeline") else "palette-classic"},
        "mappings": _mappings(panel),
        "thresholds": _thresholds(panel),
        "unit": panel.unit,
    }
    for key in ("min", "max", "decimals"):
        value = getattr(panel, key)
        if value is not None:
            defaults[key] = value
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if panel.bars else "line",
            "fillOpacity": 60 if panel.bars else 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "thresholdsStyle": {"mode": "line" if panel.threshold_lines else "off"},
        }
    elif panel.kind == "state-timeline":
        defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0}
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "stat":
        return {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name" if len(panel.targets) > 1 else "value",
        }
    if panel.kind == "state-timeline":
        return {
            "alignValue": "center",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "mergeValues": True,
            "rowHeight": 0.9,
            "showValue": "never",
            "tooltip": {"mode": "single", "sort": "none"},
        }
    if panel.kind == "table":
        return {"cellHeight": "sm", "showHeader": True}
    return {
        "legend": {
            "calcs": ["mean", "max", "lastNotNull"],
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _target(target: Target, ref_id: str) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "datasource": dict(DATASOURCE),
        "editorMode": "code",
        "expr": target.expr,
        "instant": target.instant,
        "legendFormat": target.legend or "__auto",
        "range": not target.instant,
        "refId": ref_id,
    }
    if target.table:
        rendered["format"] = "table"
    return rendered


def ref_ids(count: int) -> list[str]:
    """Grafana's query letters: A, B, ... (no panel here has more than 26 queries)."""
    if count > 26:
        raise ValueError(f"{count} queries in one panel; at most 26 are supported")
    return [chr(ord("A") + i) for i in range(count)]


def _layout(panels: tuple[Panel, ...]) -> list[dict[str, int]]:
    """Left to right, wrapping at the grid width; each row is as tall as its tallest panel."""
    positions: list[dict[str, int]] = []
    x = y = row_height = 0
    for panel in panels:
        if panel.width > GRID_WIDTH:
            raise ValueError(f"panel {panel.title!r} is {panel.width} wide; the grid is {GRID_WIDTH}")
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        positions.append({"h": panel.height, "w": panel.width, "x": x, "y": y})
        x += panel.width
        row_height = max(row_height, panel.height)
    return positions


def render_panel(panel: Panel, panel_id: int, grid_pos: dict[str, int]) -> dict[str, Any]:
    if not panel.targets:
        raise ValueError(f"panel {panel.title!r} has no query")
    rendered: dict[str, Any] = {
        "datasource": dict(DATASOURCE),
        "description": panel.description,
        "fieldConfig": _field_config(panel),
        "gridPos": grid_pos,
        "id": panel_id,
        "options": _options(panel),
        "targets": [
            _target(t, ref) for t, ref in zip(panel.targets, ref_ids(len(panel.targets)), strict=True)
        ],
        "title": panel.title,
        "type": panel.kind,
    }
    if panel.kind == "table":
        # One row per series, the labels as columns; the value column is the sample itself.
        rendered["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True}}}
        ]
    return rendered


def render_variable(variable: Variable) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "current": {},
        "datasource": dict(DATASOURCE),
        "definition": variable.query,
        "hide": 0,
        "includeAll": variable.include_all,
        "label": variable.label,
        "multi": variable.multi,
        "name": variable.name,
        "options": [],
        "query": {
            "qryType": 1,
            "query": variable.query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        # 2: refresh the values when the time range changes (a new phase brings new label values).
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }
    if variable.all_value is not None:
        rendered["allValue"] = variable.all_value
    return rendered


def render_dashboard(dashboard: Dashboard) -> dict[str, Any]:
    titles = [panel.title for panel in dashboard.panels]
    duplicates = sorted({t for t in titles if titles.count(t) > 1})
    if duplicates:
        raise ValueError(f"dashboard {dashboard.uid}: panel titles used twice: {duplicates}")
    positions = _layout(dashboard.panels)
    return {
        "annotations": {"list": []},
        "description": dashboard.description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": ["ddp"],
                "title": "DDP dashboards",
                "type": "dashboards",
            }
        ],
        "panels": [
            render_panel(panel, index, pos)
            for index, (panel, pos) in enumerate(zip(dashboard.panels, positions, strict=True), start=1)
        ],
        "refresh": dashboard.refresh,
        "schemaVersion": SCHEMA_VERSION,
        "tags": list(dashboard.tags),
        "templating": {"list": [render_variable(v) for v in dashboard.variables]},
        "time": {"from": dashboard.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": dashboard.title,
        "uid": dashboard.uid,
        # Provisioned from files: Grafana keeps its own version counter; the file's stays fixed.
        "version": 1,
        **dashboard.extra,
    }
