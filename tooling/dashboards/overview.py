"""Dashboard ddp-overview.

One phase at a glance (ranks, throughput, balance, correctness, checkpoints, memory).
"""

from __future__ import annotations

from functools import partial

from grafana_foundation_sdk.builders import stat

from tooling.dashboards.common import (
    BALANCE_STEPS,
    CHECKPOINT_AGE_STEPS,
    DISK_FREE_STEPS,
    GREEN,
    JOB,
    JOB_NODE,
    MEMORY_STEPS,
    PERCENT,
    RED,
    SAMPLES,
    SYNC_STEPS,
    TRAINER,
    YELLOW,
    ZERO_GOOD,
    AnyPanel,
    Steps,
    query,
    stat_panel,
    state_timeline_panel,
    steps,
    timeseries_panel,
)

# The 4x4 single-value tiles of the top rows.
small_stat = partial(stat_panel, width=4, height=4)


def _job_tile(
    title: str,
    series: str,
    description: str,
    *,
    unit: str = "short",
    decimals: int | None = None,
    thresholds: Steps = (),
) -> stat.Panel:
    """A tile of one job-wide recording rule's last value for the picked phase."""
    targets = (query(f"{series}{{{JOB}}}", instant=True),)
    return small_stat(title, targets, description, unit=unit, decimals=decimals, thresholds=thresholds)


def panels() -> tuple[AnyPanel, ...]:
    return (
        small_stat(
            "Ranks up",
            (
                query(f"job:trainer_ranks_up:sum{{{JOB}}}", "up", instant=True),
                query(f"job:trainer_ranks:count{{{JOB}}}", "expected", instant=True),
            ),
            "Rank endpoints scraped successfully, and how many the phase's targets list.",
        ),
        small_stat(
            "Node exporters up",
            (
                query(f"job:node_exporters_up:sum{{{JOB}}}", "up", instant=True),
                query(f"count(up{{{JOB_NODE}}})", "expected", instant=True),
            ),
            "node_exporter endpoints of the phase's nodes scraped successfully.",
        ),
        _job_tile(
            "Global throughput",
            "job:trainer_global_samples_per_second:max",
            "Job-wide samples/s as the trainer computes it at each heartbeat.",
            unit=SAMPLES,
        ),
        small_stat(
            "Throughput vs baseline",
            (
                query(
                    f"job:trainer_global_samples_per_second:max{{{JOB}}}"
                    f" / job:trainer_global_samples_per_second:avg30m_offset10m{{{JOB}}}",
                    instant=True,
                ),
            ),
            "Global throughput over its mean in the 30 minutes before the last 10; "
            "TrainerThroughputDrop fires below 80%.",
            unit=PERCENT,
            thresholds=steps((None, RED), (0.8, YELLOW), (0.95, GREEN)),
        ),
        _job_tile(
            "Step-time balance",
            "job:trainer_step_duration_seconds:max_over_min",
            "Mean step time of the slowest rank over the fastest (1.0 = balanced).",
            decimals=2,
            thresholds=BALANCE_STEPS,
        ),
        _job_tile(
            "Communication overhead",
            "job:trainer_comm_overhead_ratio:avg",
            "Share of a step spent on the gradient all-reduce, averaged over ranks.",
            unit=PERCENT,
        ),
        _job_tile(
            "Gradient-sync accuracy",
            "job:trainer_grad_sync_accuracy_ratio:min",
            "Share of cross-rank parameter checks in agreement, worst rank; below 100% is a bug.",
            unit=PERCENT,
            thresholds=SYNC_STEPS,
        ),
        small_stat(
            "Non-finite losses (1h)",
            (query(f"sum(increase(trainer_nonfinite_loss_total{{{TRAINER}}}[1h]))", instant=True),),
            "Steps whose loss or gradients were NaN/inf in the last hour, all ranks.",
            decimals=0,
            thresholds=ZERO_GOOD,
        ),
        small_stat(
            "Checkpoint age / interval",
            (
                query(
                    f"max(trainer_checkpoint_age_seconds{{{TRAINER}}}"
                    f" / trainer_checkpoint_interval_seconds{{{TRAINER}}})",
                    instant=True,
                ),
            ),
            "Oldest checkpoint relative to the expected interval; TrainerCheckpointStale fires above 2.",
            decimals=2,
            thresholds=CHECKPOINT_AGE_STEPS,
        ),
        small_stat(
            "Checkpoint disk free",
            (
                query(
                    f"min(instance:node_checkpoint_filesystem_avail_bytes:current{{{JOB_NODE}}}"
                    f" / instance:node_checkpoint_filesystem_size_bytes:current{{{JOB_NODE}}})",
                    instant=True,
                ),
            ),
            "Free share of the fullest node's checkpoint filesystem.",
            unit=PERCENT,
            thresholds=DISK_FREE_STEPS,
        ),
        _job_tile(
            "Host memory pressure",
            "job:trainer_memory_pressure_ratio:max",
            "Host RAM in use / total on the worst node.",
            unit=PERCENT,
            thresholds=MEMORY_STEPS,
        ),
        _job_tile(
            "GPU memory pressure",
            "job:trainer_gpu_memory_pressure_ratio:max",
            "GPU memory in use / total on the worst rank (no value on CPU-only runs).",
            unit=PERCENT,
            thresholds=MEMORY_STEPS,
        ),
        timeseries_panel(
            "Global throughput over time",
            (
                query(f"job:trainer_global_samples_per_second:max{{{JOB}}}", "throughput"),
                query(
                    f"job:trainer_global_samples_per_second:avg30m_offset10m{{{JOB}}}",
                    "baseline (mean of the 30m before the last 10m)",
                ),
            ),
            unit=SAMPLES,
            min=0,
        ),
        state_timeline_panel(
            "Rank endpoints",
            (query(f"up{{{TRAINER}}}", "{{node}} local rank {{local_rank}}"),),
            "Each rank's metrics endpoint: scraped (up) or not (down).",
        ),
    )
