"""The trainer under torchrun on this machine (Gloo, CPU): correctness against a single process, resume,
non-finite policies, a killed rank, the metrics endpoint and convergence on a real dataset."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from prometheus_client.parser import text_string_to_metric_families
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ddp.sync_check import check_in_sync, finish_sync_check, start_sync_check
from tests.integration.trainer_harness import (
    explain,
    final_params,
    free_port_block,
    run_dir,
    run_trainer,
    summary,
    torchrun_command,
    trainer_env,
    write_config,
)

pytestmark = pytest.mark.slow


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=atol), (
            f"{key}: max difference {(a[key] - b[key]).abs().max().item():.3g}"
        )


@pytest.mark.parametrize(("batch", "accum"), [(16, 1), (8, 2)], ids=["2x16", "2x8-accum2"])
def test_ddp_equals_single_process_with_the_global_batch(tmp_path: Path, batch: int, accum: int) -> None:
    """N ranks with per-rank batch b (x accumulation) train the same model as 1 process with batch N*b."""
    ref = write_config(tmp_path, "ref", {"training": {"batch_size": 32}})
    ddp = write_config(
        tmp_path, "ddp", {"training": {"batch_size": batch}, "ddp": {"grad_accum_steps": accum}}
    )
    for config, nproc in ((ref, 1), (ddp, 2)):
        proc = run_trainer(config, nproc)
        assert proc.returncode == 0, explain(proc)
    reference, distributed = final_params(tmp_path, "ref"), final_params(tmp_path, "ddp")
    assert_same_params(reference, distributed, atol=1e-5)
    # The runs really trained: parameters moved away from their shared initialisation.
    assert summary(tmp_path, "ddp")["steps"] == 30
    assert summary(tmp_path, "ddp")["grad_sync"] == {"checks": 3, "mismatches": 0, "accuracy_ratio": 1.0}
    # Step 5 was a communication probe (ddp/comm_probe.py): without accumulation its gradients were
    # averaged by the probe's own all-reduce, with it the first micro-batch was timed; the same weights.
    assert summary(tmp_path, "ddp")["comm_overhead_ratio"] is not None


def test_resume_matches_uninterrupted_run_and_skips_corrupt_newest(tmp_path: Path) -> None:
    whole = write_config(tmp_path, "whole")
    proc = run_trainer(whole, 2)
    assert proc.returncode == 0, explain(proc)

    first_leg = write_config(tmp_path, "legs", {"training": {"max_steps": 20}})
    proc = run_trainer(first_leg, 2)
    assert proc.returncode == 0, explain(proc)
    ckpts = run_dir(tmp_path, "legs") / "checkpoints"
    newest = ckpts / "step-000000020.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a torn write the manifest does not know about

    second_leg = write_config(tmp_path, "legs")
    proc = run_trainer(second_leg, 2)
    assert proc.returncode == 0, explain(proc)
    log = (run_dir(tmp_path, "legs") / "logs" / "rank0.ndjson").read_text()
    assert "skipping checkpoint" in log and "step-000000020.pt" in log
    result = summary(tmp_path, "legs")
    assert result["incarnations"][-1]["resumed_from_step"] == 10
    assert len(result["incarnations"]) == 2
    assert_same_params(final_params(tmp_path, "whole"), final_params(tmp_path, "legs"), atol=0)


NAN_WORKLOAD = {
    "workload": {
        "kind": "import",
        "model": "tests.fixtures.workloads:tiny_model",
        "dataset": "tests.fixtures.workloads:dataset_with_nan",
    },
    "training": {"max_steps": 10, "batch_size": 16},
}


def test_nonfinite_skip_counts_and_keeps_parameters_finite(tmp_path: Path) -> None:
    training = {**NAN_WORKLOAD["training"], "nonfinite_policy": "skip", "max_steps": 16}
    config = write_config(tmp_path, "skip", {**NAN_WORKLOAD, "training": training})
    proc = run_trainer(config, 2)
    assert proc.returncode == 0, explain(proc)
    result = summary(tmp_path, "skip")
    # 256 samples / 2 ranks / 16 = 8 batches per epoch: 16 steps meet the poisoned sample twice.
    assert result["nonfinite_loss_count"] == 2
    assert result["skipped_steps"] == 2
    assert all(torch.isfinite(t).all() for t in final_params(tmp_path, "skip").values())
    assert math.isfinite(result["loss"]["last"])


def test_nonfinite_stop_fails_clearly(tmp_path: Path) -> None:
    config = write_config(tmp_path, "stop", NAN_WORKLOAD)
    proc = run_trainer(config, 2)
    assert proc.returncode != 0
    # Found by both ranks together at the heartbeat after the NaN (the last step's here), never saved.
    assert "non-finite loss or parameters at step" in proc.stderr
    result = summary(tmp_path, "stop")
    assert result["status"] == "failed"
    assert "nonfinite_policy=stop" in result["reason"]


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm pool"])
def test_killed_rank_restarts_and_resumes_from_checkpoint(
    tmp_path: Path, warm: bool, request: pytest.FixtureRequest
) -> None:
    """Warm: the ranks are forked from the run's warm pool (ddp/warm_pool.py) at the launch and at the
    restart; the kill, the restart and the resume are the same."""
    env = trainer_env()
    if warm:
        runtime = tempfile.mkdtemp(prefix="warm-")  # short: the pool's socket path must fit 107 bytes
        request.addfinalizer(lambda: shutil.rmtree(runtime, ignore_errors=True))
        env |= {"XDG_RUNTIME_DIR": runtime}
    config = write_config(
        tmp_path,
        "kill",
        {
            "workload": {
                "kind": "synthetic",
                "input_dim": 128,
                "hidden_dim": 512,
                "num_layers": 3,
                "num_samples": 8192,
            },
            "training": {"max_steps": 400, "batch_size": 32},
            "checkpoint": {"every_steps": 25},
            "metrics": {"status_every_steps": 5},
        },
    )
    # Warm: torchrun under the supervisor, as ddp-launch runs it with the role's ddp_trainer_warm_start.
    supervisor = [sys.executable, "-m", "ddp.warm_supervisor"] if warm else []
    proc = subprocess.Popen(
        [*supervisor, *torchrun_command(config, 2, max_restarts=2)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    status_file = run_dir(tmp_path, "kill") / "status" / "rank1.json"
    killed_at = None
    restarted_by: list[str] = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = json.loads(status_file.read_text())
            except (FileNotFoundError, ValueError):
                status = {}
            if status.get("step", 0) >= 60:
                killed_at, launcher_pid = status["step"], status["launcher_pid"]
                os.kill(status["pid"], signal.SIGKILL)
                break
            time.sleep(0.05)
        assert killed_at is not None, "rank 1 never reached step 60"
        while time.monotonic() < deadline and proc.poll() is None and not restarted_by:
            with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
                status = json.loads(status_file.read_text())
                if status.get("restart_count") == 1:
                    restarted_by = psutil.Process(status["pid"]).parent().cmdline()
            time.sleep(0.05)
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-5000:]
    # torchrun names the process it started, which the status file records as the launcher (warm: not
    # the rank's own pid): what `tooling soak` matches its failure lines with.
    assert f"local_rank: 1 (pid: {launcher_pid})" in output, output[-5000:]
    result = summary(tmp_path, "kill")
    assert result["status"] == "completed" and result["steps"] == 400
    assert result["restarts"] >= 1
    resumed = result["incarnations"][-1]["resumed_from_step"]
    assert resumed is not None and killed_at - 25 - 5 <= resumed <= killed_at + 5, (killed_at, resumed)
    assert result["grad_sync"]["checks"] and not result["grad_sync"]["mismatches"], result["grad_sync"]
    # Who started the restarted rank: the pool, or torchrun's agent itself.
    assert ("ddp.warm_pool" in restarted_by) == warm, restarted_by
    # Every incarnation of every rank computed with the one thread torchrun gives each of several ranks on
    # a node (OMP_NUM_THREADS=1), forked from the pool or not: the pool imported torch in its own environment.
    starts = [
        record["trainer"]
        for log in (run_dir(tmp_path, "kill") / "logs").glob("rank*.ndjson")
        for record in map(json.loads, log.read_text().splitlines())
        if record.get("trainer", {}).get("event") == "start"
    ]
    assert len(starts) >= 4 and {start["threads"] for start in starts} == {1}, starts


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_metrics_endpoint_scraped_during_run_and_digits_converges(tmp_path: Path) -> None:
    base = free_port_block(2)
    config = write_config(
        tmp_path,
        "digits",
        {
            "workload": {"kind": "digits", "hidden_dim": 64},
            "training": {"max_steps": 600, "batch_size": 32},
            "optimizer": {"lr": 0.1},
            "checkpoint": {"every_steps": 200},
            "metrics": {"enabled": True, "base_port": base, "bind_address": "127.0.0.1"},
        },
    )
    proc = subprocess.Popen(
        torchrun_command(config, 2),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=trainer_env(),
        cwd=tmp_path,
    )
    scraped: dict[int, dict[str, list]] = {}
    try:
        deadline = time.monotonic() + 120
        while len(scraped) < 2 and time.monotonic() < deadline and proc.poll() is None:
            for local_rank in (0, 1):
                try:
                    families = scrape(base + local_rank)
                except OSError:
                    continue
                steps = families.get("trainer_step", [])
                if steps and steps[0].value >= 20 and "trainer_global_samples_per_second" in families:
                    scraped[local_rank] = families
            time.sleep(0.1)
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-5000:]
    assert set(scraped) == {0, 1}, "both ranks' endpoints must answer during the run"
    for local_rank, families in scraped.items():
        for name in (
            "trainer_steps",
            "trainer_samples",
            "trainer_step_duration_seconds",
            "trainer_loss",
            "trainer_samples_per_second",
            "trainer_memory_pressure_ratio",
            "trainer_comm_overhead_ratio",
            "trainer_grad_sync_accuracy_ratio",
            "trainer_checkpoint_age_seconds",
            "trainer_nonfinite_loss",
            "trainer_compute_seconds",
            "trainer_collective_wait_seconds",
            "trainer_compute_ratio_to_median",
            "trainer_straggler",
        ):
            assert name in families, f"{name} missing on local rank {local_rank}"
        labels = families["trainer_loss"][0].labels
        assert (
            labels["rank"] == str(local_rank) and labels["local_rank"] == str(local_rank) and labels["node"]
        )
        assert families["trainer_global_samples_per_second"][0].value > 0
    result = summary(tmp_path, "digits")
    assert result["loss"]["last"] < 0.3, result["loss"]
    assert result["loss"]["first"] > 1.0
    assert result["nonfinite_loss_count"] == 0
    assert result["grad_sync"]["accuracy_ratio"] == 1.0
    assert result["throughput"]["global_samples_per_second_mean"] > 0
    assert 0.0 <= result["comm_overhead_ratio"] <= 1.0


def test_ddp_options_all_on(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "opts",
        {
            "ddp": {
                "fp16_compression": True,
                "static_graph": True,
                "grad_accum_steps": 2,
                "bucket_cap_mb": 1,
                "gradient_as_bucket_view": False,
            },
            "optimizer": {"name": "adamw", "lr": 0.003},
            "schedule": {"kind": "cosine", "warmup_steps": 5},
            "training": {"max_steps": 40},
        },
    )
    proc = run_trainer(config, 2)
    assert proc.returncode == 0, explain(proc)
    result = summary(tmp_path, "opts")
    assert result["grad_sync"]["mismatches"] == 0
    assert result["loss"]["last"] < result["loss"]["first"]
    # The clock wraps the fp16 compression hook: both ranks split their steps.
    assert all(r["compute_seconds_mean"] > 0 for r in result["ranks"]), result["ranks"]
    assert all(r["collective_wait_seconds_mean"] is not None for r in result["ranks"]), result["ranks"]


def _sync_worker(rank: int, world: int, port: int, results: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = DDP(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)))
        before = check_in_sync(model.module, torch.device("cpu"))
        # Begun, then read after the next step (as the trainer does): it compares the parameters of the
        # step it was begun at, whatever that next step changes.
        pending = start_sync_check(model.module, torch.device("cpu"), step=7)
        if rank == 1:
            with torch.no_grad():
                model.module[0].weight[0, 0] += 1e-3  # a replica drifting by a rounding-sized amount
        begun = finish_sync_check(pending)
        after = check_in_sync(model.module, torch.device("cpu"))
        results[rank] = (before.agree, (begun.agree, begun.step), after.agree)
    finally:
        dist.destroy_process_group()


def test_sync_check_agrees_under_ddp_and_detects_planted_divergence() -> None:
    port = free_port_block(1)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_sync_worker, args=(2, port, results), nprocs=2, join=True)
        assert dict(results) == {0: (True, (True, 7), False), 1: (True, (True, 7), False)}
