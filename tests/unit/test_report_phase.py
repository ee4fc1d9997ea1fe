"""`tooling report`: the PNGs exist and plot the run's real series; Markdown/HTML carry the gate table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib import pyplot as plt
from typer.testing import CliRunner

from tests.unit.fixtures.gates.recorded import FIXTURES, recorded, run_gate
from tests.unit.panel_text import squeezed
from tests.unit.tls_prometheus import PASSWORD, USER, make_pki, serve
from tooling.cli import app
from tooling.plan.phases import load_phases
from tooling.report import plots
from tooling.report.build import phase_figures

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _xs(line: Any) -> list[float]:
    return [float(v) for v in line.get_xdata()]


def _ys(line: Any) -> list[float]:
    return [float(v) for v in line.get_ydata()]


def _heights(ax: Any) -> list[float]:
    return [float(bar.get_height()) for bar in ax.patches]


def test_figures_plot_the_recorded_series() -> None:
    summary = recorded("phase1_4rank_cpu")
    record = run_gate("1", summary).record(load_phases())
    figures = {name: fig for _, name, fig in phase_figures(summary, record)}
    timeline = summary["timeline"]

    line = figures["throughput.png"].axes[0].lines[0]
    assert _ys(line) == [p[2] for p in timeline]
    limits = [_ys(ln)[0] for ln in figures["throughput.png"].axes[0].lines[1:]]
    assert limits == [270.0, 250.0]  # target and minimum from tooling/phases.yml

    loss = figures["loss.png"].axes[0].lines[0]
    start = summary["incarnations"][0]["started_at"]
    assert _xs(loss) == [p[0] - start for p in timeline]
    assert _ys(loss) == [p[3] for p in timeline]

    assert _heights(figures["step_balance.png"].axes[0]) == [
        m * 1000 for m in summary["step_time"]["per_rank_mean_seconds"]
    ]
    overhead = _heights(figures["comm_overhead.png"].axes[0])
    assert [round(h, 9) for h in overhead] == [
        round(r["comm_overhead_ratio"] * 100, 9) for r in summary["ranks"]
    ]
    steps = figures["checkpoints.png"].axes[0].lines[0]
    assert _ys(steps) == [p[1] for p in timeline]
    plt.close("all")


def test_phase_comparison_uses_the_decision_records() -> None:
    rows: list[dict[str, Any]] = [
        {"phase": "1", "throughput": 300.0, "target": 270.0, "decision": "GO"},
        {"phase": "2a", "throughput": None, "target": 500.0, "decision": None},
    ]
    fig = plots.phase_comparison(rows)
    assert _heights(fig.axes[0]) == [300.0, 0.0]
    plt.close(fig)


def test_report_command_writes_markdown_html_and_pngs(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "phase1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text((FIXTURES / "phase1_4rank_cpu.json").read_text())
    decisions = tmp_path / "decisions"
    gate = runner.invoke(app, ["gate", "-p", "1", "--run", str(run), "--decisions", str(decisions), "--json"])
    assert gate.exit_code == 1

    out = tmp_path / "report"
    result = runner.invoke(
        app, ["report", "--phase", "1", "--run", str(run), "--decisions", str(decisions), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "checkpoints.png",
        "comm_overhead.png",
        "loss.png",
        "memory_pressure.png",
        "phase_comparison.png",
        "step_balance.png",
        "throughput.png",
    ]
    for png in out.glob("*.png"):
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    markdown = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name in pngs:
        assert f"]({name})" in markdown and f'src="{name}"' in html
    assert "## Gate: NO-GO" in markdown and "| throughput |" in markdown
    assert "| 1 | 1 x 4 | NO-GO |" in markdown  # the comparison row from the decision record
    assert "<td>communication overhead</td>" in html
    assert "the decision of record" in markdown  # the run was gated: its record is the table shown


def test_weekly_briefing(tmp_path: Path) -> None:
    decisions = tmp_path / "decisions"
    decisions.mkdir()
    record = {
        "phase": "1",
        "decision": "GO",
        "decided_at": 1_700_000_000.0,
        "criteria": [
            {
                "criterion": "throughput",
                "label": "throughput",
                "measured": 300.0,
                "verdict": "PASS",
                "note": "",
            },
            {
                "criterion": "uptime",
                "label": "uptime",
                "measured": None,
                "verdict": "NO DATA",
                "note": "waived",
            },
        ],
    }
    (decisions / "phase1-20231114T221320Z.json").write_text(json.dumps(record))
    out = tmp_path / "weekly"
    result = runner.invoke(app, ["report", "--weekly", "--decisions", str(decisions), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "weekly.md").read_text()
    assert "phase 1 passed its gate; phase 2a (2 x 4) is next and not yet gated" in text
    assert "| 1 | 1 x 4 | GO |" in text and "300.0 samples/s" in text
    assert "uptime: NO DATA" in text
    assert "1. Deploy and gate phase 2a" in text
    assert (out / "weekly.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "phase_comparison.png").read_bytes().startswith(PNG_MAGIC)


def test_report_needs_a_phase_or_weekly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--decisions", str(tmp_path)])
    assert result.exit_code == 2 and "--phase" in result.output


def test_report_on_an_ungated_run_evaluates_the_gate_itself(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "phase2a"
    run.mkdir(parents=True)
    (run / "summary.json").write_text((FIXTURES / "phase2a_8rank_cpu.json").read_text())
    out = tmp_path / "report"
    result = runner.invoke(
        app, ["report", "-p", "2a", "--run", str(run), "--decisions", str(tmp_path / "d"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    markdown = (out / "report.md").read_text()
    assert "evaluated for this report only" in markdown
    assert "| scaling efficiency |" in markdown and "gate the previous phase first" in markdown
    assert not (tmp_path / "d").exists()  # a report never writes decisions


def test_report_reads_a_prometheus_behind_basic_auth_and_tls(tmp_path: Path) -> None:
    """`report` takes `gate`'s Prometheus options: with the CA and the password its gate table is evaluated
    from Prometheus' figures; a refused password stops it (exit 2) instead of a report from the summary
    alone; the password is in no output and no file it wrote."""
    pki = make_pki(tmp_path / "pki")
    run = tmp_path / "runs" / "phase1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text((FIXTURES / "phase1_4rank_cpu.json").read_text())
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(PASSWORD + "\n")
    wrong.write_text("guess\n")
    decisions = ["--decisions", str(tmp_path / "decisions")]
    with serve(pki) as url:
        args = ["report", "--phase", "1", "--run", str(run), *decisions, "--prometheus", url]
        trusted = [*args, "--prometheus-user", USER, "--prometheus-ca", str(pki.ca)]
        ok = runner.invoke(
            app, [*trusted, "--prometheus-password-file", str(right), "--out", str(tmp_path / "ok")]
        )
        refused = runner.invoke(
            app, [*trusted, "--prometheus-password-file", str(wrong), "--out", str(tmp_path / "refused")]
        )
    assert ok.exit_code == 0, ok.output
    markdown = (tmp_path / "ok" / "report.md").read_text()
    assert f"Prometheus {url}: range queries at" in markdown, markdown
    assert "unavailable" not in markdown and "warning" not in ok.output, ok.output
    # The throughput row is Prometheus' range query (the summary's own figure has no query step).
    throughput = next(line for line in markdown.splitlines() if line.startswith("| throughput |"))
    assert "samples at 10s steps" in throughput, throughput
    assert refused.exit_code == 2, refused.output
    assert squeezed(f"user '{USER}' and the password in {wrong} were refused") in squeezed(refused.output)
    assert not (tmp_path / "refused").exists()
    written = [p for p in (tmp_path / "ok").rglob("*") if p.is_file()]
    for text in [ok.output, refused.output, *(p.read_bytes().decode(errors="replace") for p in written)]:
        assert PASSWORD not in text


def test_report_json_is_the_paths_written_and_the_verdict(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "phase1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text((FIXTURES / "phase1_4rank_cpu.json").read_text())
    decisions, out = tmp_path / "decisions", tmp_path / "report"
    args = [
        "report",
        "-p",
        "1",
        "--run",
        str(run),
        "--decisions",
        str(decisions),
        "--out",
        str(out),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # "report: ..." went to stderr
    assert document["report"] == "phase" and document["phase"] == "1"
    assert document["markdown"] == str(out / "report.md") and document["html"] == str(out / "report.html")
    assert sorted(Path(f).name for f in document["figures"]) == sorted(p.name for p in out.glob("*.png"))
    assert document["decision"] == "NO-GO" and document["run_summary"] == str(run / "summary.json")
    assert {"criterion", "measured", "verdict"} <= set(document["criteria"][0])
    assert "gate table: evaluated for this report only" in " ".join(document["gate_table_from"])
    # rich wraps a long path anywhere (the temporary directory's length varies): compare without spaces
    assert squeezed(f"report: {out / 'report.md'}") in squeezed(result.stderr)

    weekly = runner.invoke(app, ["report", "--weekly", "--decisions", str(decisions), "--json"])
    assert weekly.exit_code == 0, weekly.output
    briefing = json.loads(weekly.stdout)
    assert briefing["report"] == "weekly" and briefing["decisions"]["1"] is None
