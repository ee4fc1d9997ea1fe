"""Dashboard ddp-checkpoints.

Checkpoint age against the expected interval, writes and failures, and their disk.
"""

from __future__ import annotations

from tooling.dashboards.common import (
    CHECKPOINT_AGE_STEPS,
    DISK_FREE_STEPS,
    NODE,
    PERCENT,
    TRAINER,
    ZERO_GOOD,
    AnyPanel,
    events_panel,
    in_range,
    query,
    stat_panel,
    timeseries_panel,
)


def panels() -> tuple[AnyPanel, ...]:
    return (
        timeseries_panel(
            "Checkpoint age vs interval",
            (
                query(f"max by (node) (trainer_checkpoint_age_seconds{{{TRAINER}}})", "age, {{node}}"),
                query(f"max(trainer_checkpoint_interval_seconds{{{TRAINER}}})", "expected interval"),
                query(
                    f"2 * max(trainer_checkpoint_interval_seconds{{{TRAINER}}})",
                    "stale alert level (2 x interval)",
                ),
            ),
            "Seconds since the last good checkpoint; TrainerCheckpointStale fires above 2 x interval.",
            unit="s",
            min=0,
        ),
        stat_panel(
            "Age / interval",
            (
                query(
                    f"max(trainer_checkpoint_age_seconds{{{TRAINER}}}"
                    f" / trainer_checkpoint_interval_seconds{{{TRAINER}}})",
                    instant=True,
                ),
            ),
            width=6,
            decimals=2,
            thresholds=CHECKPOINT_AGE_STEPS,
        ),
        stat_panel(
            "Last good checkpoint",
            (
                query(
                    f"max(trainer_checkpoint_last_success_timestamp_seconds{{{TRAINER}}}) * 1000",
                    instant=True,
                ),
            ),
            width=6,
            unit="dateTimeFromNow",
        ),
        events_panel(
            "Checkpoints saved",
            "trainer_checkpoints_saved_total",
            "node",
            "{{node}}",
        ),
        events_panel(
            "Checkpoint write failures",
            "trainer_checkpoint_failures_total",
            "node",
            "{{node}}",
            "TrainerCheckpointWriteFailures warns on any failed write in 15 minutes.",
            thresholds=ZERO_GOOD,
        ),
        stat_panel(
            "Saved and failed in range",
            (
                query(
                    in_range("trainer_checkpoints_saved_total"),
                    "saved",
                    instant=True,
                ),
                query(
                    in_range("trainer_checkpoint_failures_total"),
                    "failed",
                    instant=True,
                ),
            ),
            decimals=0,
        ),
        timeseries_panel(
            "Checkpoint disk available",
            (
                query(
                    f"instance:node_checkpoint_filesystem_avail_bytes:current{{{NODE}}}",
                    "{{node}} {{mountpoint}}",
                ),
                query(
                    "predict_linear("
                    f"instance:node_checkpoint_filesystem_avail_bytes:current{{{NODE}}}[1h], 6 * 3600)",
                    "{{node}} in 6h at the last hour's rate",
                ),
            ),
            "node_filesystem_avail_bytes of the filesystem holding the checkpoint directory "
            "(the node target's checkpoint_mountpoint label).",
            unit="bytes",
        ),
        timeseries_panel(
            "Checkpoint disk free",
            (
                query(
                    f"instance:node_checkpoint_filesystem_avail_bytes:current{{{NODE}}}"
                    f" / instance:node_checkpoint_filesystem_size_bytes:current{{{NODE}}}",
                    "{{node}} {{mountpoint}}",
                ),
            ),
            "CheckpointDiskFillingUp warns below 40% free when the disk fills within 6h; "
            "CheckpointDiskAlmostFull pages below 5%.",
            unit=PERCENT,
            min=0,
            max=1,
            thresholds=DISK_FREE_STEPS,
            threshold_lines=True,
        ),
    )
