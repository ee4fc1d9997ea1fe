"""Dashboard ddp-training-health.

Is the job learning, and do the ranks agree: loss, non-finite steps, gradient sync.
"""

from __future__ import annotations

from tooling.dashboards.common import (
    JOB,
    PERCENT,
    RANK,
    SYNC_STEPS,
    TRAINER,
    ZERO_GOOD,
    AnyPanel,
    events_panel,
    in_range,
    increase_by,
    query,
    stat_panel,
    timeseries_panel,
)


def panels() -> tuple[AnyPanel, ...]:
    return (
        timeseries_panel(
            "Loss per rank",
            (query(f"trainer_loss{{{TRAINER}}}", RANK),),
            "Training loss of each rank's last step.",
        ),
        timeseries_panel(
            "Mean loss",
            (query(f"avg(trainer_loss{{{TRAINER}}})", "mean over ranks"),),
            "Ranks see different batches; their mean is the job's loss curve.",
        ),
        events_panel(
            "Non-finite losses",
            "trainer_nonfinite_loss_total",
            "node, rank",
            RANK,
            "Steps whose loss or gradients were NaN/inf; TrainerNonFiniteLoss pages on any.",
        ),
        events_panel(
            "Skipped steps",
            "trainer_skipped_steps_total",
            "node, rank",
            RANK,
            "Steps dropped by nonfinite_policy=skip.",
        ),
        stat_panel(
            "Non-finite losses in range",
            (query(in_range("trainer_nonfinite_loss_total"), instant=True),),
            width=6,
            decimals=0,
            thresholds=ZERO_GOOD,
        ),
        stat_panel(
            "Gradient-sync mismatches in range",
            (
                query(
                    in_range("trainer_grad_sync_mismatches_total"),
                    instant=True,
                ),
            ),
            width=6,
            decimals=0,
            thresholds=ZERO_GOOD,
        ),
        stat_panel(
            "Current step and epoch",
            (
                query(f"max(trainer_step{{{TRAINER}}})", "step", instant=True),
                query(f"max(trainer_epoch{{{TRAINER}}})", "epoch", instant=True),
            ),
            decimals=0,
        ),
        timeseries_panel(
            "Gradient-sync accuracy",
            (
                query(f"trainer_grad_sync_accuracy_ratio{{{TRAINER}}}", RANK),
                query(f"job:trainer_grad_sync_accuracy_ratio:min{{{JOB}}}", "job minimum"),
            ),
            "Share of cross-rank parameter checksum comparisons in agreement; must stay at 100%.",
            unit=PERCENT,
            max=1,
            thresholds=SYNC_STEPS,
            threshold_lines=True,
        ),
        timeseries_panel(
            "Gradient-sync checks and mismatches",
            (
                query(
                    f"sum(rate(trainer_grad_sync_checks_total{{{TRAINER}}}[$__rate_interval]))",
                    "checks/s",
                ),
                query(
                    increase_by("node, rank", "trainer_grad_sync_mismatches_total"),
                    "mismatches, " + RANK,
                ),
            ),
            "TrainerGradSyncMismatch pages on any mismatch.",
            min=0,
        ),
    )
