"""The report's figures read right: a bar's colour is its own criterion's verdict, every time axis is
seconds since the run's start, restart markers only for real restarts, one percent format throughout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from matplotlib import pyplot as plt
from matplotlib.colors import to_rgba
from typer.testing import CliRunner

from ddp.atomic import atomic_write_json
from tests.unit.fixtures.gates.recorded import FIXTURES, recorded, run_gate
from tooling.cli import app
from tooling.gates.display import fmt_percent
from tooling.gates.records import record_stem
from tooling.plan.phases import load_phases
from tooling.report import plots
from tooling.report.build import phase_figures
from tooling.report.data import phase_rows

TIME_PLOTS = ("throughput.png", "loss.png", "checkpoints.png")


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


def _decide(decisions: Path, phase: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Gate the summary for the phase and file the record where `tooling gate` would."""
    record = run_gate(phase, summary).record(load_phases())
    atomic_write_json(decisions / f"{record_stem(phase, record['decided_at'])}.json", record)
    return record


def _verdict(record: dict[str, Any], criterion: str) -> str:
    return str(next(r["verdict"] for r in record["criteria"] if r["criterion"] == criterion))


def _bar_colours(decisions: Path) -> list[tuple[float, ...]]:
    fig = plots.phase_comparison(phase_rows(load_phases(), decisions))
    return [tuple(bar.get_facecolor()) for bar in fig.axes[0].patches]


def test_a_no_go_whose_throughput_passed_keeps_a_green_throughput_bar(tmp_path: Path) -> None:
    record = _decide(tmp_path, "1", recorded("phase1_4rank_cpu"))
    # The recorded run is NO-GO for other criteria (communication overhead) while its throughput passes.
    assert record["decision"] == "NO-GO" and _verdict(record, "throughput") == "PASS"
    colours = _bar_colours(tmp_path)
    assert colours[0] == to_rgba("tab:green")
    assert colours[1:] == [to_rgba(plots.UNMEASURED_COLOUR)] * (len(colours) - 1)  # not gated yet


@pytest.mark.parametrize(
    ("rate", "verdict", "colour"),
    [(260.0, "WARN", "tab:orange"), (240.0, "FAIL", "tab:red")],
)
def test_the_throughput_bar_takes_the_throughput_verdict(
    tmp_path: Path, rate: float, verdict: str, colour: str
) -> None:
    summary = recorded("phase1_4rank_cpu")
    summary["throughput"]["global_samples_per_second_mean"] = rate  # phase 1: minimum 250, target 270
    record = _decide(tmp_path, "1", summary)
    assert _verdict(record, "throughput") == verdict
    assert _bar_colours(tmp_path)[0] == to_rgba(colour)


def test_a_throughput_without_data_is_grey_whatever_the_decision() -> None:
    rows = [
        {
            "phase": "1",
            "throughput": None,
            "target": 270.0,
            "decision": "GO",
            "verdicts": {"throughput": "NO DATA"},
        }
    ]
    fig = plots.phase_comparison(rows)
    assert fig.axes[0].patches[0].get_facecolor() == to_rgba(plots.UNMEASURED_COLOUR)


def _long_run(summary: dict[str, Any], stretch: float) -> dict[str, Any]:
    """The recorded run with its clock slowed down `stretch` times (a run of minutes, not seconds)."""
    start = summary["incarnations"][0]["started_at"]
    for point in summary["timeline"]:
        point[0] = start + (point[0] - start) * stretch
    return summary


@pytest.mark.parametrize("stretch", [1.0, 60.0])
def test_every_time_axis_is_seconds_since_the_run_start(stretch: float) -> None:
    summary = _long_run(recorded("phase1_4rank_cpu"), stretch)
    start = summary["incarnations"][0]["started_at"]  # before the first heartbeat
    seconds = [p[0] - start for p in summary["timeline"]]
    assert seconds[0] > 0
    record = run_gate("1", summary).record(load_phases())
    figures = {name: fig for _, name, fig in phase_figures(summary, record)}
    for name in TIME_PLOTS:
        ax = figures[name].axes[0]
        assert [float(x) for x in ax.lines[0].get_xdata()] == pytest.approx(seconds), name
        assert ax.get_xlim()[0] == 0.0, name
        assert ax.get_xlabel() == "seconds since the run's start", name
    # The series plotted against that axis are still the timeline's own columns.
    assert [float(y) for y in figures["throughput.png"].axes[0].lines[0].get_ydata()] == [
        p[2] for p in summary["timeline"]
    ]
    assert [float(y) for y in figures["loss.png"].axes[0].lines[0].get_ydata()] == [
        p[3] for p in summary["timeline"]
    ]


def _restart_markers(summary: dict[str, Any]) -> list[float]:
    ax = plots.checkpoint_timeline(summary).axes[0]
    # Everything after the progress line is a vertical marker at one x.
    markers = ax.lines[1:]
    for line in markers:
        xs = [float(x) for x in line.get_xdata()]
        assert len(set(xs)) == 1, xs
    return [float(line.get_xdata()[0]) for line in markers]


def _restarted(summary: dict[str, Any], after_steps: list[int]) -> dict[str, Any]:
    """The recorded run as the trainer records restarts: one more incarnation per restart, resumed from
    the checkpoint at the step given and started just after that step's heartbeat."""
    times = {int(p[1]): p[0] for p in summary["timeline"]}
    for n, step in enumerate(after_steps, start=1):
        summary["incarnations"].append(
            {"restart_count": n, "resumed_from_step": step, "started_at": times[step] + 0.25, "world_size": 4}
        )
    summary["restarts"] = len(after_steps)
    return summary


def test_a_run_that_never_restarted_has_no_restart_marker() -> None:
    summary = recorded("phase1_4rank_cpu")
    assert len(summary["incarnations"]) == 1 and summary["restarts"] == 0
    assert _restart_markers(summary) == []
    assert plots.checkpoint_timeline(summary).axes[0].get_title() == "Progress and checkpoints (no restart)"


def test_each_restart_has_one_marker_at_its_start() -> None:
    summary = _restarted(recorded("phase1_4rank_cpu"), [60, 140])
    start = summary["incarnations"][0]["started_at"]
    expected = [i["started_at"] - start for i in summary["incarnations"][1:]]
    assert _restart_markers(summary) == pytest.approx(expected)
    assert plots.checkpoint_timeline(summary).axes[0].get_title().endswith("2 restart(s)")


def test_restarts_before_the_first_checkpoint_are_counted_not_placed() -> None:
    # A group that restarted twice before any checkpoint starts afresh: one incarnation, restart count 2.
    summary = recorded("phase1_4rank_cpu")
    summary["incarnations"][0]["restart_count"] = 2
    summary["restarts"] = 2
    assert _restart_markers(summary) == [0.0]  # the incarnation the summary knows began with a restart
    title = plots.checkpoint_timeline(summary).axes[0].get_title()
    assert title.endswith("2 restart(s), 1 without a recorded time"), title


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(0.9995, "99.95 %"), (0.1, "10 %"), (1.0, "100 %"), (0.0005, "0.05 %"), (0.0, "0 %"), (-1e-9, "0 %")],
)
def test_one_percent_format(ratio: float, text: str) -> None:
    assert fmt_percent(ratio) == text


def test_percent_axes_and_limits_use_the_percent_format() -> None:
    summary = recorded("phase1_4rank_cpu")
    record = run_gate("1", summary).record(load_phases())
    figures = {name: fig for _, name, fig in phase_figures(summary, record)}
    # phase 1's bounds in tooling/phases.yml: overhead "<= 10%" / "<= 15%", memory "< 85%" / "< 90%".
    for name, limits in (
        ("comm_overhead.png", ["target ≤ 10 %", "minimum ≤ 15 %"]),
        ("memory_pressure.png", ["target < 85 %", "minimum < 90 %"]),
    ):
        ax = figures[name].axes[0]
        figures[name].canvas.draw()
        ticks = [(t.get_text(), float(t.get_position()[1])) for t in ax.get_yticklabels()]
        assert ticks and all(text == fmt_percent(points / 100) for text, points in ticks), ticks
        assert [line.get_label() for line in ax.lines] == limits


# A number glued to "%", or more digits than fmt_percent writes, is some other percent format.
OTHER_PERCENT = re.compile(r"\d%|\d\.\d{4,} ?%")
PERCENT = re.compile(r"\d+(?:\.\d{1,3})? %")


def test_the_report_text_prints_percentages_one_way_and_colours_values_by_verdict(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    decisions = tmp_path / "decisions"
    for phase, fixture in (("1", "phase1_4rank_cpu"), ("2a", "phase2a_8rank_cpu")):
        (runs / f"phase{phase}").mkdir(parents=True)
        (runs / f"phase{phase}" / "summary.json").write_text((FIXTURES / f"{fixture}.json").read_text())
    gated = CliRunner().invoke(
        app, ["gate", "-p", "1", "--run", str(runs / "phase1"), "--decisions", str(decisions)]
    )
    assert gated.exit_code == 1, gated.output
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "report",
            "-p",
            "2a",
            "--run",
            str(runs / "phase2a"),
            "--decisions",
            str(decisions),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "ceiling " in text  # the scaling note, written by the gate, carries a percentage too
        assert len(PERCENT.findall(text)) >= 3, name
        assert OTHER_PERCENT.findall(text) == [], name
    # The comparison table colours phase 1's values by their own verdicts, beside its NO-GO decision.
    html = (out / "report.html").read_text()
    row = next(line for line in html.splitlines() if line.startswith("<tr><td>1</td>"))
    assert '<td class="NO-GO">NO-GO</td>' in row and '<td class="PASS">11,271.0 samples/s</td>' in row, row
    assert '<td class="FAIL">76.36 %</td>' in row, row  # communication overhead, 10 % at most
