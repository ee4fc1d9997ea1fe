"""Dashboard ddp-resources.

CPU, GPU and memory of the ranks and their nodes.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.prometheus import Dataquery

from tooling.dashboards.common import (
    JOB,
    MEMORY_STEPS,
    NODE,
    PERCENT,
    RANK,
    TRAINER,
    AnyPanel,
    query,
    timeseries_panel,
)


def _memory_panel(title: str, targets: tuple[Dataquery, ...], description: str) -> timeseries.Panel:
    """A used/total ratio against the memory alerts' limits (roles/prometheus/files/rules/: 85% and 90%)."""
    return timeseries_panel(
        title, targets, description, unit=PERCENT, min=0, max=1, thresholds=MEMORY_STEPS, threshold_lines=True
    )


def _pressure_per_rank(title: str, ratio: str, description: str) -> timeseries.Panel:
    """A trainer's per-rank pressure ratio with the job maximum its recording rule keeps."""
    targets = (query(f"{ratio}{{{TRAINER}}}", RANK), query(f"job:{ratio}:max{{{JOB}}}", "job maximum"))
    return _memory_panel(title, targets, description)


def panels() -> tuple[AnyPanel, ...]:
    return (
        timeseries_panel(
            "Trainer CPU utilisation per rank",
            (query(f"trainer_cpu_utilisation_ratio{{{TRAINER}}}", RANK),),
            "Process CPU time over the CPUs the rank may use.",
            unit=PERCENT,
            min=0,
        ),
        timeseries_panel(
            "Node CPU busy",
            (
                query(
                    "1 - avg by (node) "
                    f'(rate(node_cpu_seconds_total{{{NODE}, mode="idle"}}[$__rate_interval]))',
                    "{{node}}",
                ),
            ),
            "Share of the node's CPU time not idle, all processes.",
            unit=PERCENT,
            min=0,
            max=1,
        ),
        timeseries_panel(
            "GPU utilisation per rank",
            (query(f"trainer_gpu_utilisation_ratio{{{TRAINER}}}", RANK),),
            "Reported by CUDA runs only; empty on CPU-only runs.",
            unit=PERCENT,
            min=0,
            max=1,
        ),
        timeseries_panel(
            "Node load per CPU",
            (
                query(
                    f"node_load1{{{NODE}}} / on (instance) group_left () "
                    f'count by (instance) (node_cpu_seconds_total{{{NODE}, mode="idle"}})',
                    "{{node}}",
                ),
            ),
            "1-minute load average over the CPU count; above 1 means runnable work waits for a CPU.",
            min=0,
        ),
        _pressure_per_rank(
            "Host memory pressure per rank",
            "trainer_memory_pressure_ratio",
            "Host RAM in use / total; TrainerMemoryPressure warns above 85% and pages above 90%.",
        ),
        _pressure_per_rank(
            "GPU memory pressure per rank",
            "trainer_gpu_memory_pressure_ratio",
            "GPU memory in use / total; TrainerGPUMemoryPressure warns above 85% and pages above 90%.",
        ),
        _memory_panel(
            "Node memory used",
            (
                query(
                    f"1 - node_memory_MemAvailable_bytes{{{NODE}}} / node_memory_MemTotal_bytes{{{NODE}}}",
                    "{{node}}",
                ),
            ),
            "What node_exporter sees, the trainer's own processes included.",
        ),
        timeseries_panel(
            "Node memory available",
            (query(f"node_memory_MemAvailable_bytes{{{NODE}}}", "{{node}}"),),
            unit="bytes",
            min=0,
        ),
    )
