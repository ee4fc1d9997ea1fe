"""The roll-out judged end to end, the way an operator runs it: `tooling deploy --phase 1` points node1's
trainer and Prometheus at phase 1, verifies and launches node1's four ranks (deploy's own provisioning,
site.yml for the phase, runs in test_05's fallback to phase 1: the cluster is provisioned already);
`tooling status` shows them, `tooling stop` ends the run with a final checkpoint and the gate judges it from
the live Prometheus; then ddp_trainer's own verify playbook runs on node1 (configured for phase 1 now);
phase 2a is soaked (`tooling soak`), its soak run gated (scaling against phase 1's decision, uptime from the
soak) and reported (PNGs of the run's real series); the soak's planned end fires no rank alert."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from matplotlib import pyplot as plt

from tests.integration.cluster.checks import run_role_verify
from tests.integration.sandbox_harness import ROOT, Sandbox, explain
from tests.integration.sandbox_jobs import (
    RUN_ROOT,
    SMALL_RUN,
    assert_no_straggler,
    forget_run,
    on_node,
    wait_for_summary,
)
from tests.integration.sandbox_monitor import instant_query, monitor_url, wait_until
from tooling.gates.records import latest_record
from tooling.report.build import phase_figures

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Scrapes of a rank (5 s apart) before phase 1 is stopped: several throughput points at the gate's step.
SCRAPES = 6
GATE_STEP_S = "10"  # two scrapes of the trainer's 5 s interval
SOAK_RUN = "rollout-soak-2a"
# How often Prometheus evaluates its rules, as the prometheus role configures it.
PROMETHEUS_DEFAULTS = yaml.safe_load((ROOT / "roles/prometheus/defaults/main.yml").read_text())
EVALUATION_S = int(PROMETHEUS_DEFAULTS["prometheus_evaluation_interval"].removesuffix("s"))


def _sets(*extra: str) -> list[str]:
    return [arg for s in [*SMALL_RUN, *extra] for arg in ("--set", s)]


def _fetch_summary(box: Sandbox, run_id: str, status: str) -> tuple[Path, dict[str, Any]]:
    summary = wait_for_summary(box, f"{RUN_ROOT}/{run_id}", status=status)
    assert summary["status"] == status, summary.get("reason")
    assert_no_straggler(summary)
    path = box.tmp / "rollout-runs" / run_id / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
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


def test_phase1_then_phase2a_are_deployed_gated_and_reported(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    prometheus = monitor_url(box, 9090)
    decisions = box.tmp / "rollout-decisions"
    soaks = box.tmp / "rollout-soaks"

    for run_id in ("rollout-phase1", SOAK_RUN):
        forget_run(box, run_id)
    # What an earlier session on a kept cluster (DDP_ITEST_KEEP_DIR) recorded would be judged again.
    for kept in (decisions, soaks):
        shutil.rmtree(kept, ignore_errors=True)
    # Phase 1 through deploy: node1's trainer role and Prometheus' targets for phase 1, pre-flight
    # verification, launch.
    deployed = box.tooling(
        "deploy", "--phase", "1", "--inventory", str(box.inventory), "--run-id", "rollout-phase1",
        "--skip-provision", *_sets("training.max_steps=1000000"),
    )  # fmt: skip
    assert deployed.returncode == 0 and "is up" in deployed.stdout, explain(deployed)
    shown = box.tooling("status", "--inventory", str(box.inventory))
    assert shown.returncode == 0 and "4/4 ranks reported" in shown.stdout, explain(shown)
    wait_until(
        "phase 1 training in Prometheus",
        lambda: instant_query(prometheus, 'trainer_global_samples_per_second{phase="1"} > 0'),
        240,
    )
    # Enough of the run in Prometheus for the gate's steady throughput and its spread (several points at
    # the gate's query step): polled, not slept.
    wait_until(
        f"{SCRAPES} scrapes of phase 1's throughput",
        lambda: instant_query(
            prometheus, f'count_over_time(trainer_global_samples_per_second{{phase="1"}}[5m]) >= {SCRAPES}'
        ),
        120,
        every=3,
    )
    stopped = box.tooling("stop", "--inventory", str(box.inventory))
    assert stopped.returncode == 0, explain(stopped)
    phase1_path, phase1 = _fetch_summary(box, "rollout-phase1", "stopped")
    assert phase1["world_size"] == 4
    assert phase1["checkpoints"]["last_step"] == phase1["steps"], "a clean stop writes a final checkpoint"
    first = _gate(box, "1", phase1_path, decisions, soaks)
    throughput = first["measurements"]["throughput"]
    # From the live Prometheus: its range queries cover the run.
    assert throughput["value"] and throughput["value"] > 0, throughput
    assert throughput["source"] == "prometheus", throughput

    # The role's own checks (unit, launcher, standalone and unit runs, refusal, clean stop, hand edits put
    # back) on the node `deploy` just converged for phase 1.
    verified = run_role_verify(box, ["ddp_trainer"], "node1")
    assert verified.returncode == 0, explain(verified)

    soaked = box.tooling(
        "soak", "--phase", "2a", "--inventory", str(box.inventory), "--duration", "30s", "--interval", "10s",
        "--run-id", SOAK_RUN, "--soak-dir", str(soaks), "--skip-provision", "--skip-verify",
        *_sets("training.max_steps=1000000"),
    )  # fmt: skip
    assert soaked.returncode == 0, explain(soaked)
    ended = time.time()
    soak = json.loads((soaks / SOAK_RUN / "soak.json").read_text())
    assert soak["status"] == "completed" and soak["world_size"] == 8, soak
    assert soak["restarts"]["count"] == 0 and soak["uptime"]["ratio"] > 0.5, soak["uptime"]
    assert soak["final"]["status"] == "stopped", soak["final"]

    # The soak's own run is phase 2a's run to judge: eight ranks, stopped as planned.
    phase2a_path, summary = _fetch_summary(box, SOAK_RUN, "stopped")
    assert (summary["world_size"], summary["nodes"]) == (8, 2), summary
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
    assert SOAK_RUN in (out / "report.md").read_text()

    # The soak ended the run as planned: each unit records a successful end, Prometheus scrapes that record,
    # and from then on TrainerRankDown cannot become true. Between a rank's last scrape and the next scrape
    # of its node's record (node_exporter's interval is longer than the ranks') an evaluation may see the
    # endpoint down with the run still expected: a pending alert, which Alertmanager never sees and which the
    # next evaluation after the record clears. What the operator must never get is the alert firing. So,
    # from Prometheus' own ALERTS series (written at every rule evaluation; stronger than polling the
    # alerts API, which misses what came and went between two polls): it never fired since the end, and
    # once the record is scraped it is not even pending.
    for host in ("node1", "node2"):
        wait_until(
            f"{host}'s unit recording a successful end",
            lambda host=host: re.search(
                r'ddp_trainer_job_expected\{[^}]*result="success"\} 0',
                on_node(box, host, "cat /var/lib/node_exporter/textfile/ddp-trainer.prom").stdout,
            ),
            timeout=90,
            every=3,
        )
    wait_until(
        "Prometheus scraping both nodes' successful end",
        lambda: len(instant_query(prometheus, 'ddp_trainer_job_expected{job="node"} == 0')) == 2,
        timeout=60,
        every=3,
    )
    wait_until(
        "no TrainerRankDown, not even pending, once the end is scraped",
        lambda: instant_query(prometheus, 'ALERTS{alertname="TrainerRankDown"}') == [],
        timeout=2 * EVALUATION_S + 5,
        every=3,
    )
    since = max(1, int(time.time() - ended) + 1)
    fired = instant_query(
        prometheus, f'max_over_time(ALERTS{{alertname="TrainerRankDown", alertstate="firing"}}[{since}s])'
    )
    assert fired == [], f"a run that ended as planned fired TrainerRankDown: {fired}"
    down = instant_query(prometheus, 'up{job="trainer", phase="2a"} == 0')
    assert len(down) == 8, "the endpoints of the ended run should be scraped as down"
