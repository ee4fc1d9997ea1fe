"""What every dashboard shares, on top of grafana-foundation-sdk's builders: the datasource, the phase and
node variables, the selectors built on them, the panel kinds with the project's options, and the dashboard
frame (links, time range, panel ids, grid check).

Series names come from ddp/metrics.py (the trainer, scraped as job "trainer"), node_exporter (job "node") and
the recording rules in roles/prometheus/files/rules/ (`job:` series carry job and phase). Prometheus adds the
target labels phase, node and local_rank (trainer) or checkpoint_mountpoint (node) from file_sd.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, TypeVar, Unpack

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

# The provisioned Prometheus datasource (roles/grafana/templates/datasource.yml.j2 gives it this uid). A fixed
# uid lets the dashboards name it directly instead of asking the viewer to pick one.
DATASOURCE_UID = "ddp-prometheus"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
GRID_WIDTH = 24

GREEN = "green"
YELLOW = "#EAB839"
RED = "red"

# Selectors shared by every dashboard: the phase picked at the top and the nodes picked next to it.
TRAINER = 'job="trainer", phase="$phase", node=~"$node"'
NODE = 'job="node", phase="$phase", node=~"$node"'
JOB = 'phase="$phase"'
JOB_NODE = 'job="node", phase="$phase"'

RANK = "rank {{rank}} ({{node}})"
PERCENT = "percentunit"
SAMPLES = "suffix: samples/s"

Steps = tuple[model.Threshold, ...]


def steps(*pairs: tuple[float | None, str]) -> Steps:
    """Colour steps from (value, colour) pairs: values from `value` upwards take the colour; the first
    pair's value is None (from -inf)."""
    return tuple(model.Threshold(value=value, color=color) for value, color in pairs)


# Limits the alerts in roles/prometheus/files/rules/ use; drawn on the panels so the viewer sees the margin.
MEMORY_STEPS = steps((None, GREEN), (0.85, YELLOW), (0.90, RED))
DISK_FREE_STEPS = steps((None, RED), (0.05, YELLOW), (0.40, GREEN))
CHECKPOINT_AGE_STEPS = steps((None, GREEN), (1.5, YELLOW), (2, RED))
BALANCE_STEPS = steps((None, GREEN), (1.2, YELLOW), (1.5, RED))
SYNC_STEPS = steps((None, RED), (1, GREEN))
ZERO_GOOD = steps((None, GREEN), (1, RED))
UP_STEPS = steps((None, RED), (1, GREEN))
UP_MAPPINGS = model.ValueMap(
    options={
        "0": model.ValueMappingResult(text="down", color=RED, index=0),
        "1": model.ValueMappingResult(text="up", color=GREEN, index=1),
    }
)


def _label_values(selector: str, label: str) -> sdk_dashboard.QueryVariable:
    """A query variable filled from a label's values on the series `selector` picks."""
    query = f"label_values({selector}, {label})"
    return (
        sdk_dashboard.QueryVariable(label)
        .datasource(DATASOURCE)
        .query({"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .hide(model.VariableHide.DONT_HIDE)
        # A new phase brings new label values: read them again when the time range changes.
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .options([])
        .regex("")
    )


def variables() -> list[sdk_dashboard.QueryVariable]:
    """The phase picked at the top, then any of its nodes ("All" is every node: `node=~".+"`)."""
    phase = _label_values('up{job=~"trainer|node"}', "phase").label("Phase")
    node = (
        _label_values('up{job=~"trainer|node", phase="$phase"}', "node")
        .label("Node")
        .multi(True)
        .include_all(True)
        .all_value(".+")
    )
    return [phase, node]


def increase_by(labels: str, counter: str) -> str:
    """Per-step increase of a trainer counter, summed by `labels` (bars of events, e.g. failed writes)."""
    return f"sum by ({labels}) (increase({counter}{{{TRAINER}}}[$__rate_interval]))"


def in_range(counter: str) -> str:
    """How much a trainer counter rose over the dashboard's time range, all selected ranks."""
    return f"sum(increase({counter}{{{TRAINER}}}[$__range]))"


def query(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> prometheus.Dataquery:
    """One PromQL target. `instant` asks for the last value only (stat panels, tables); `table` returns the
    series' labels as columns. The panel assigns its refId."""
    target = (
        prometheus.Dataquery()
        .expr(expr)
        .datasource(DATASOURCE)
        .editor_mode(QueryEditorMode.CODE)
        .legend_format(legend or "__auto")
    )
    target = target.instant() if instant else target.range()
    if table:
        target = target.format(PromQueryFormat.TABLE)
    return target


def ref_ids(count: int) -> list[str]:
    """Grafana's query letters: A, B, ... (no panel here has more than 26 queries)."""
    if count > 26:
        raise ValueError(f"{count} queries in one panel; at most 26 are supported")
    return [chr(ord("A") + i) for i in range(count)]


_Panel = TypeVar("_Panel", timeseries.Panel, stat.Panel, statetimeline.Panel, table.Panel)


class FieldOptions(TypedDict, total=False):
    """What a caller may set of a panel's size and field config; `_Field` holds the defaults."""

    unit: str
    width: int
    height: int
    decimals: int | None
    thresholds: Steps


class RangeOptions(FieldOptions, total=False):
    """FieldOptions and the axis range, for the panel kinds that draw one."""

    min: float | None
    max: float | None


@dataclass(frozen=True)
class _Field:
    """Size and field config of a panel: what every panel kind sets the same way."""

    unit: str = "short"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: Steps = ()


def _panel(
    panel: _Panel,
    title: str,
    targets: Sequence[prometheus.Dataquery],
    description: str,
    field: _Field,
    color: model.FieldColorModeId,
) -> _Panel:
    """The options every panel kind shares: datasource, queries with their refIds, size and field config."""
    if not targets:
        raise ValueError(f"panel {title!r} has no query")
    for target, ref_id in zip(targets, ref_ids(len(targets)), strict=True):
        panel = panel.with_target(target.ref_id(ref_id))
    panel = (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(field.width)
        .height(field.height)
        .unit(field.unit)
        .mappings([])
        .color_scheme(sdk_dashboard.FieldColor().mode(color))
        .thresholds(
            sdk_dashboard.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps(list(field.thresholds or steps((None, GREEN))))
        )
    )
    if field.min is not None:
        panel = panel.min(field.min)
    if field.max is not None:
        panel = panel.max(field.max)
    if field.decimals is not None:
        panel = panel.decimals(field.decimals)
    return panel


def _legend(
    display: common_model.LegendDisplayMode, *, show: bool, calcs: Sequence[str] = ()
) -> sdk_common.VizLegendOptions:
    """A legend under the panel; `calcs` are the columns of a table legend (none for a list)."""
    legend = sdk_common.VizLegendOptions()
    if calcs:
        legend = legend.calcs(list(calcs))
    return legend.display_mode(display).placement(common_model.LegendPlacement.BOTTOM).show_legend(show)


def _tooltip(
    mode: common_model.TooltipDisplayMode, sort: common_model.SortOrder
) -> sdk_common.VizTooltipOptions:
    return sdk_common.VizTooltipOptions().mode(mode).sort(sort)


def timeseries_panel(
    title: str,
    targets: Sequence[prometheus.Dataquery],
    description: str = "",
    *,
    threshold_lines: bool = False,
    bars: bool = False,
    **field: Unpack[RangeOptions],
) -> timeseries.Panel:
    """Lines (or `bars` of per-step counts) with a table legend of mean, max and last value.
    `threshold_lines` draws the thresholds as limits the viewer compares the series against."""
    panel = _panel(
        timeseries.Panel(),
        title,
        targets,
        description,
        _Field(**field),
        model.FieldColorModeId.PALETTE_CLASSIC,
    )
    return (
        panel.draw_style(common_model.GraphDrawStyle.BARS if bars else common_model.GraphDrawStyle.LINE)
        .fill_opacity(60 if bars else 10)
        .line_width(1)
        .show_points(common_model.VisibilityMode.NEVER)
        .span_nulls(False)
        .thresholds_style(
            sdk_common.GraphThresholdsStyleConfig().mode(
                common_model.GraphThresholdsStyleMode.LINE
                if threshold_lines
                else common_model.GraphThresholdsStyleMode.OFF
            )
        )
        .legend(
            _legend(common_model.LegendDisplayMode.TABLE, show=True, calcs=("mean", "max", "lastNotNull"))
        )
        .tooltip(_tooltip(common_model.TooltipDisplayMode.MULTI, common_model.SortOrder.DESCENDING))
    )


def events_panel(
    title: str, counter: str, labels: str, legend: str, description: str = "", *, thresholds: Steps = ()
) -> timeseries.Panel:
    """Bars of a trainer counter's per-step increase summed by `labels`: whole events, from zero."""
    targets = (query(increase_by(labels, counter), legend),)
    return timeseries_panel(title, targets, description, bars=True, min=0, decimals=0, thresholds=thresholds)


def stat_panel(
    title: str, targets: Sequence[prometheus.Dataquery], description: str = "", **field: Unpack[FieldOptions]
) -> stat.Panel:
    """The last value of each query, coloured by the thresholds; named when there is more than one."""
    panel = _panel(
        stat.Panel(), title, targets, description, _Field(**field), model.FieldColorModeId.THRESHOLDS
    )
    return (
        panel.color_mode(common_model.BigValueColorMode.VALUE)
        .graph_mode(common_model.BigValueGraphMode.AREA)
        .justify_mode(common_model.BigValueJustifyMode.AUTO)
        .orientation(common_model.VizOrientation.AUTO)
        .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .text_mode(
            common_model.BigValueTextMode.VALUE_AND_NAME
            if len(targets) > 1
            else common_model.BigValueTextMode.VALUE
        )
    )


def state_timeline_panel(
    title: str,
    targets: Sequence[prometheus.Dataquery],
    description: str = "",
    *,
    thresholds: Steps = UP_STEPS,
    mappings: Sequence[model.ValueMap] = (UP_MAPPINGS,),
) -> statetimeline.Panel:
    """One coloured band per series over time, its values named by `mappings` (e.g. up/down)."""
    field = _Field(thresholds=thresholds)
    panel = _panel(
        statetimeline.Panel(), title, targets, description, field, model.FieldColorModeId.THRESHOLDS
    )
    return (
        panel.mappings(list(mappings))
        .fill_opacity(80)
        .line_width(0)
        .align_value(common_model.TimelineValueAlignment.CENTER)
        .merge_values(True)
        .row_height(0.9)
        .show_value(common_model.VisibilityMode.NEVER)
        .legend(_legend(common_model.LegendDisplayMode.LIST, show=False))
        .tooltip(_tooltip(common_model.TooltipDisplayMode.SINGLE, common_model.SortOrder.NONE))
    )


def table_panel(
    title: str, targets: Sequence[prometheus.Dataquery], description: str = "", *, width: int = 12
) -> table.Panel:
    """One row per series, the labels as columns; the value column is the sample itself."""
    field = _Field(width=width)
    panel = _panel(table.Panel(), title, targets, description, field, model.FieldColorModeId.PALETTE_CLASSIC)
    return (
        panel.cell_height(common_model.TableCellHeight.SM)
        .show_header(True)
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True, "__name__": True}}
            )
        )
    )


AnyPanel = timeseries.Panel | stat.Panel | statetimeline.Panel | table.Panel


def dashboard(uid: str, title: str, description: str, panels: Sequence[AnyPanel]) -> model.Dashboard:
    """A read-only dashboard of `panels`, numbered and laid out left to right in the order given, with the
    phase and node variables and a menu of the other DDP dashboards."""
    titles = [panel.build().title for panel in panels]
    duplicates = sorted({t for t in titles if t is not None and titles.count(t) > 1})
    if duplicates:
        raise ValueError(f"dashboard {uid}: panel titles used twice: {duplicates}")
    builder = (
        sdk_dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["ddp"])
        .readonly()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        # Provisioned from files: Grafana keeps its own version counter; the file's stays fixed.
        .version(1)
        # Grafana's loader reads annotations.list; without this the SDK writes a bare {}.
        .annotations([])
        .link(
            sdk_dashboard.DashboardLink("DDP dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["ddp"])
            .as_dropdown(True)
            .icon("external link")
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in variables():
        builder = builder.with_variable(variable)
    for panel_id, panel in enumerate(panels, start=1):
        builder = builder.with_panel(panel.id(panel_id))
    built = builder.build()
    _check_grid(built)
    return built


def _check_grid(built: model.Dashboard) -> None:
    """The SDK places panels left to right but lets a panel run past the right edge: refuse that layout."""
    for panel in built.panels or []:
        pos = panel.grid_pos
        if pos is not None and pos.x + pos.w > GRID_WIDTH:
            raise ValueError(
                f"dashboard {built.uid}: panel {panel.title!r} spans columns {pos.x}-{pos.x + pos.w}; "
                f"the grid is {GRID_WIDTH} wide (reorder or resize the panels of that row)"
            )
