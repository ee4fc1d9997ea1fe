"""The gate's Prometheus reader against a real Prometheus scraping a real 4-rank trainer run on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.integration.trainer_harness import ROOT, free_port_block
from tooling.cli import app
from tooling.prometheus_api import PrometheusClient, PrometheusError

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
RANKS = 4
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="the prometheus binary is not installed"),
]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process we started (and its children, started in its own session) by its id."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited early: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"prometheus not ready at {url}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def scraped_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("gate-prometheus")
    prom_port = free_port_block(1)
    metrics_base = free_port_block(RANKS)
    targets = ", ".join(f"'127.0.0.1:{metrics_base + r}'" for r in range(RANKS))
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: trainer\n    static_configs:\n      - targets: [{targets}]\n"
    )
    url = f"http://127.0.0.1:{prom_port}"
    prom_log = tmp / "prometheus.log"
    started: list[subprocess.Popen[bytes]] = []
    try:
        with prom_log.open("wb") as log:
            prom = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(prom)
        _wait_ready(url, prom, prom_log)
        env = {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "PYTHONPATH": str(ROOT)}
        sets = [
            f"run.output_dir={tmp / 'runs'}",
            "training.max_steps=900",
            "workload.hidden_dim=256",
            "checkpoint.every_steps=300",
            "metrics.bind_address=127.0.0.1",
            f"metrics.base_port={metrics_base}",
            "metrics.sync_check_every_steps=50",
            "metrics.comm_probe_every_steps=50",
        ]
        with (tmp / "trainer.log").open("wb") as log:
            trainer = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "torch.distributed.run",
                    "--standalone",
                    f"--nproc-per-node={RANKS}",
                    "-m",
                    "ddp.real_ddp_trainer",
                    "--config",
                    str(ROOT / "ddp/configs/phase1.yaml"),
                    *(arg for s in sets for arg in ("--set", s)),
                ],
                cwd=tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(trainer)
        assert trainer.wait(timeout=300) == 0, (tmp / "trainer.log").read_text()[-3000:]
        time.sleep(2)  # let Prometheus notice the endpoints are gone (stale markers)
        yield url, tmp / "runs" / "phase1"
    finally:
        for proc in reversed(started):
            _stop(proc)


def test_gate_reads_the_run_from_prometheus(scraped_run: tuple[str, Path], tmp_path: Path) -> None:
    url, run = scraped_run
    summary = json.loads((run / "summary.json").read_text())
    result = CliRunner().invoke(
        app,
        ["gate", "-p", "1", "--run", str(run), "--prometheus", url, "--decisions", str(tmp_path), "--json"],
    )
    assert result.exit_code in (0, 1), result.output
    record = json.loads(result.output)
    assert record["sources"]["prometheus_error"] is None
    assert record["sources"]["prometheus_step_s"] == 2.0  # two 1 s scrapes per evaluation step
    assert {"throughput", "uptime", "grad_sync_accuracy"} <= set(record["sources"]["prometheus_figures"])
    m = record["measurements"]
    for name in (
        "throughput",
        "throughput_sigma",
        "comm_overhead",
        "memory_pressure",
        "nonfinite_losses",
        "grad_sync_accuracy",
        "uptime",
        "ranks_in_sync",
    ):
        assert m[name]["source"] == "prometheus", (name, m[name])
    # The same run seen two ways: Prometheus samples the heartbeat gauge, the summary averages heartbeats.
    assert m["throughput"]["value"] == pytest.approx(
        summary["throughput"]["global_samples_per_second_mean"], rel=0.5
    )
    assert m["grad_sync_accuracy"]["value"] == 1.0
    assert m["nonfinite_losses"]["value"] == 0
    assert m["ranks_in_sync"]["value"] == 0  # all 4 ranks scraped, no disagreement
    assert 0.0 < m["uptime"]["value"] <= 1.0
    assert m["memory_pressure"]["value"] == pytest.approx(summary["memory_pressure_ratio_max"], abs=0.1)
    # No node_exporter here: the hardware figures are missing, not passed.
    rows = {r["criterion"]: r for r in record["criteria"]}
    assert rows["packet_loss"]["verdict"] == "NO DATA" and "node_exporter" in rows["packet_loss"]["note"]
    assert rows["thermal_throttling"]["verdict"] == "NO DATA"
    assert record["decision"] == "NO-GO"


def test_prometheus_errors_name_the_url(scraped_run: tuple[str, Path]) -> None:
    url, _ = scraped_run
    client = PrometheusClient(url)
    now = time.time()
    with pytest.raises(PrometheusError, match=rf"{url}: HTTP 400 for /api/v1/query_range: .*parse error"):
        client.query_range("max(", now - 60, now, 1)
    assert client.scrape_interval() == 1.0


def test_down_endpoints_come_with_prometheus_own_scrape_error(scraped_run: tuple[str, Path]) -> None:
    """The run has ended: every rank's endpoint is down, and Prometheus says why (what `tooling check` adds
    to an alert on a down endpoint)."""
    url, _ = scraped_run
    client = PrometheusClient(url)

    def all_down() -> dict[str, str]:
        errors = client.scrape_errors()
        return errors if len(errors) == RANKS else {}

    deadline = time.monotonic() + 10
    while not (errors := all_down()):
        assert time.monotonic() < deadline, client.scrape_errors()
        time.sleep(0.5)
    assert all("connection refused" in error for error in errors.values()), errors
    assert all(instance.startswith("127.0.0.1:") for instance in errors)
