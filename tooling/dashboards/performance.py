"""Dashboard ddp-performance.

Throughput and its spread, per-rank step-time balance and the cost of gradient sync.
"""

from __future__ import annotations

from tooling.dashboards.common import (
    BALANCE_STEPS,
    JOB,
    NODE,
    PERCENT,
    RANK,
    SAMPLES,
    TRAINER,
    AnyPanel,
    query,
    timeseries_panel,
)


def panels() -> tuple[AnyPanel, ...]:
    return (
        timeseries_panel(
            "Job-wide throughput",
            (
                query(f"job:trainer_global_samples_per_second:max{{{JOB}}}", "trainer (global)"),
                query(f"job:trainer_samples_per_second:sum{{{JOB}}}", "sum of the ranks' rates"),
                query(
                    f"job:trainer_global_samples_per_second:avg30m_offset10m{{{JOB}}}",
                    "baseline (mean of the 30m before the last 10m)",
                ),
                query(
                    f"0.8 * job:trainer_global_samples_per_second:avg30m_offset10m{{{JOB}}}",
                    "drop alert level (80% of baseline)",
                ),
            ),
            "The trainer's own job-wide rate, cross-checked by the sum of the per-rank rates.",
            unit=SAMPLES,
            min=0,
        ),
        timeseries_panel(
            "Throughput sigma",
            (
                query(f"job:trainer_throughput_stddev_samples_per_second:max{{{JOB}}}", "sigma"),
                query(
                    f"job:trainer_throughput_stddev_samples_per_second:max{{{JOB}}}"
                    f" / job:trainer_global_samples_per_second:max{{{JOB}}}",
                    "sigma / throughput",
                ),
            ),
            "Standard deviation of the job-wide rate over the trainer's window (absolute and relative).",
            min=0,
        ),
        timeseries_panel(
            "Samples/s per rank",
            (query(f"trainer_samples_per_second{{{TRAINER}}}", RANK),),
            unit=SAMPLES,
            min=0,
        ),
        timeseries_panel(
            "Optimizer steps per second",
            (query(f"job:trainer_steps:rate1m{{{JOB}}}", "steps/s"),),
            "Steps per second of the fastest rank over the last minute (all ranks step together).",
            min=0,
        ),
        timeseries_panel(
            "Mean step time per rank (1m)",
            (query(f"instance:trainer_step_duration_seconds:mean1m{{{TRAINER}}}", RANK),),
            "A rank far above the others is the straggler the whole job waits for.",
            unit="s",
            min=0,
        ),
        timeseries_panel(
            "Step-time balance: slowest / fastest rank",
            (query(f"job:trainer_step_duration_seconds:max_over_min{{{JOB}}}", "slowest / fastest"),),
            unit="short",
            min=1,
            thresholds=BALANCE_STEPS,
            threshold_lines=True,
        ),
        timeseries_panel(
            "Step time p95",
            (
                query(f"job:trainer_step_duration_seconds:p95_5m{{{JOB}}}", "job (5m)"),
                query(
                    "histogram_quantile(0.95, sum by (node, le) "
                    f"(rate(trainer_step_duration_seconds_bucket{{{TRAINER}}}[$__rate_interval])))",
                    "{{node}}",
                ),
            ),
            unit="s",
            min=0,
        ),
        timeseries_panel(
            "Communication overhead per rank",
            (
                query(f"trainer_comm_overhead_ratio{{{TRAINER}}}", RANK),
                query(f"job:trainer_comm_overhead_ratio:avg{{{JOB}}}", "job average"),
            ),
            "Share of a step spent on the gradient all-reduce (measured with a no_sync probe).",
            unit=PERCENT,
            min=0,
            max=1,
        ),
        timeseries_panel(
            "Step with and without gradient sync",
            (
                query(f"trainer_sync_step_seconds{{{TRAINER}}}", "with sync, " + RANK),
                query(f"trainer_nosync_step_seconds{{{TRAINER}}}", "no_sync, " + RANK),
            ),
            "Forward+backward with the all-reduce and under no_sync(); the gap is the cost of the sync.",
            unit="s",
            min=0,
        ),
        timeseries_panel(
            "Network traffic per node",
            (
                query(
                    "sum by (node) (rate(node_network_transmit_bytes_total"
                    f'{{{NODE}, device!="lo"}}[$__rate_interval]))',
                    "{{node}} sent",
                ),
                query(
                    "sum by (node) (rate(node_network_receive_bytes_total"
                    f'{{{NODE}, device!="lo"}}[$__rate_interval]))',
                    "{{node}} received",
                ),
            ),
            "All interfaces but loopback: the gradient all-reduce is most of it during training.",
            unit="Bps",
            min=0,
        ),
    )
