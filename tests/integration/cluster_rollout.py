"""The roll-out judged end to end on the sandbox: phase 1 is deployed, run and gated from the live
Prometheus; phase 2a is soaked (`tooling soak` on the cluster), then run and gated, measuring its scaling
against phase 1's decision and its uptime from the soak; then the 2a report, whose PNGs must exist and plot
the run's real series.

Imported by test_cluster_phase2a.py so it shares its provisioned cluster (one module per xdist worker)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from matplotlib import pyplot as plt

from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import RUN_ROOT, SMALL_RUN, deploy_run, wait_for_summary
from tests.integration.sandbox_monitor import instant_query, monitor_url, wait_until
from tooling.gates.records import latest_record
from tooling.report.build import phase_figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Long enough for Prometheus to hold several throughput samples of the run at the gate's query step.
RUN_S = 50
GATE_STEP_S = "10"  # two scrapes of the trainer's 5 s interval


def _run_and_fetch(box: Sandbox, phase: str, run_id: str, local_runs: Path) -> tuple[Path, dict[str, Any]]:
    """Run the phase for RUN_S seconds of training, stop it cleanly, and copy its summary here."""
    deploy_run(box, phase, run_id, [*SMALL_RUN, "training.max_steps=1000000"], "--skip-verify")
    prometheus = monitor_url(box, 9090)
    wait_until(
        f"phase {phase} training in Prometheus",
        lambda: instant_query(prometheus, f'trainer_global_samples_per_second{{phase="{phase}"}} > 0'),
        240,
    )
    time.sleep(RUN_S)
    stopped = box.tooling("stop", "--inventory", str(box.inventory))
    assert stopped.returncode == 0, explain(stopped)
    summary = wait_for_summary(box, f"{RUN_ROOT}/{run_id}", status="stopped")
    assert summary["status"] == "stopped", summary.get("reason")
    path = local_runs / run_id / "summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(summary))
    return path, summary


def _gate(box: Sandbox, phase: str, summary: Path, decisions: Path, soaks: Path) -> dict[str, Any]:
    judged = box.tooling(
        "gate", "--phase", phase, "--run", str(summary), "--prometheus", monitor_url(box, 9090),
        "--prometheus-step", GATE_STEP_S, "--decisions", str(decisions), "--soak-dir", str(soaks),
    )  # fmt: skip
    # A CPU sandbox misses the plan's throughput targets: NO-GO (1) is the honest answer, but it is judged.
    assert judged.returncode in (0, 1), explain(judged)
    assert ("NO-GO" in judged.stdout) == (judged.returncode == 1), judged.stdout
    record = latest_record(decisions, phase)
    assert record is not None and record["run"]["run_id"] == summary.parent.name
    assert list(decisions.glob(f"phase{phase}-*.md")), "the decision's Markdown is missing"
    return record


def test_phase1_then_phase2a_are_gated_and_reported(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    local_runs = box.tmp / "rollout-runs"
    decisions = box.tmp / "rollout-decisions"
    soaks = box.tmp / "rollout-soaks"

    phase1_path, _ = _run_and_fetch(box, "1", "rollout-phase1", local_runs)
    first = _gate(box, "1", phase1_path, decisions, soaks)
    throughput = first["measurements"]["throughput"]
    # From the live Prometheus: its range queries cover the run.
    assert throughput["value"] and throughput["value"] > 0, throughput
    assert throughput["source"] == "prometheus", throughput

    soaked = box.tooling(
        "soak", "--phase", "2a", "--inventory", str(box.inventory), "--duration", "60s", "--interval", "10s",
        "--run-id", "rollout-soak-2a", "--soak-dir", str(soaks), "--skip-provision", "--skip-verify",
        *[a for s in [*SMALL_RUN, "training.max_steps=1000000"] for a in ("--set", s)],
    )  # fmt: skip
    assert soaked.returncode == 0, explain(soaked)
    soak = json.loads((soaks / "rollout-soak-2a" / "soak.json").read_text())
    assert soak["status"] == "completed" and soak["world_size"] == 8, soak
    assert soak["restarts"]["count"] == 0 and soak["uptime"]["ratio"] > 0.5, soak["uptime"]
    assert soak["final"]["status"] == "stopped", soak["final"]

    phase2a_path, summary = _run_and_fetch(box, "2a", "rollout-phase2a", local_runs)
    second = _gate(box, "2a", phase2a_path, decisions, soaks)
    uptime = second["measurements"]["uptime"]
    assert uptime["source"] == "soak" and uptime["value"] == soak["uptime"]["ratio"], uptime
    scaling = second["scaling"]
    assert scaling["baseline"]["source"].startswith("decision record "), scaling
    assert scaling["baseline"]["throughput"] == throughput["value"]
    assert scaling["efficiency"] is not None and scaling["efficiency"] > 0, scaling

    out = box.tmp / "rollout-report"
    reported = box.tooling(
        "report",
        "--phase",
        "2a",
        "--run",
        str(phase2a_path),
        "--decisions",
        str(decisions),
        "--out",
        str(out),
    )
    assert reported.returncode == 0, explain(reported)
    assert (out / "report.md").is_file() and (out / "report.html").is_file(), sorted(
        p.name for p in out.iterdir()
    )
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 6, pngs
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, f"{png.name}: {len(data)} bytes"
    # The figures behind those files carry this run's own series, not a template's.
    figures = {name: figure for _, name, figure in phase_figures(summary, second)}
    timeline = summary["timeline"]
    assert len(timeline) >= 3
    throughput_line = figures["throughput.png"].axes[0].lines[0]
    assert [float(y) for y in throughput_line.get_ydata()] == [p[2] for p in timeline]
    loss_line = figures["loss.png"].axes[0].lines[0]
    assert [float(y) for y in loss_line.get_ydata()] == [p[3] for p in timeline]
    plt.close("all")
    assert "rollout-phase2a" in (out / "report.md").read_text()
    assert json.loads(phase2a_path.read_text())["world_size"] == 8
