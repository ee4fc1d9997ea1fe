"""The rank's metrics registry: GPU series exist only once a GPU figure is measured."""

from __future__ import annotations

import torch
from prometheus_client import generate_latest

from ddp.dist import DistEnv
from ddp.metrics import TrainerMetrics


def _exposition(metrics: TrainerMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_gpu_series_appear_only_when_measured() -> None:
    env = DistEnv(0, 0, 1, 1, "node1", 0, "gloo", torch.device("cpu"))
    metrics = TrainerMetrics(env, "run-1")
    before = _exposition(metrics)
    # Dashboards and the gate must see "no data" on CPU nodes, not a GPU at 0 %.
    assert "trainer_gpu_utilisation_ratio{" not in before
    assert "trainer_gpu_memory_pressure_ratio{" not in before
    assert 'trainer_memory_pressure_ratio{local_rank="0",node="node1",rank="0"} 0.0' in before

    metrics.gpu_utilisation.set(0.9)
    metrics.gpu_memory_pressure.set(0.5)
    after = _exposition(metrics)
    assert 'trainer_gpu_utilisation_ratio{local_rank="0",node="node1",rank="0"} 0.9' in after
    assert 'trainer_gpu_memory_pressure_ratio{local_rank="0",node="node1",rank="0"} 0.5' in after
