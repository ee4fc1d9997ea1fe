"""The project's dashboards: what each panel asks Prometheus.

Series names come from ddp/metrics.py (the trainer, scraped as job "trainer"), node_exporter (job "node") and
the recording rules in roles/prometheus/files/rules/ (`job:` series carry job and phase). Prometheus adds the
target labels phase, node and local_rank (trainer) or checkpoint_mountpoint (node) from file_sd.
"""

from __future__ import annotations

from tooling.dashboards.model import (
    GREEN,
    RED,
    YELLOW,
    Dashboard,
    Panel,
    Target,
    Threshold,
    Variable,
)

# Selectors shared by every dashboard: the phase picked at the top and the nodes picked next to it.
TRAINER = 'job="trainer", phase="$phase", node=~"$node"'
NODE = 'job="node", phase="$phase", node=~"$node"'
JOB = 'phase="$phase"'
JOB_NODE = 'job="node", phase="$phase"'

PHASE = Variable(name="phase", label="Phase", selector='up{job=~"trainer|node"}', label_name="phase")
NODES = Variable(
    name="node",
    label="Node",
    selector='up{job=~"trainer|node", phase="$phase"}',
    label_name="node",
    multi=True,
    include_all=True,
    all_value=".+",
)
VARIABLES = (PHASE, NODES)

RANK = "rank {{rank}} ({{node}})"
PERCENT = "percentunit"
SAMPLES = "suffix: samples/s"

# Limits the alerts in roles/prometheus/files/rules/ use; drawn on the panels so the viewer sees the margin.
MEMORY_STEPS = (Threshold(None, GREEN), Threshold(0.85, YELLOW), Threshold(0.90, RED))
DISK_FREE_STEPS = (Threshold(None, RED), Threshold(0.05, YELLOW), Threshold(0.40, GREEN))
CHECKPOINT_AGE_STEPS = (Threshold(None, GREEN), Threshold(1.5, YELLOW), Threshold(2, RED))
BALANCE_STEPS = (Threshold(None, GREEN), Threshold(1.2, YELLOW), Threshold(1.5, RED))
SYNC_STEPS = (Threshold(None, RED), Threshold(1, GREEN))
ZERO_GOOD = (Threshold(None, GREEN), Threshold(1, RED))
UP_MAPPINGS = ((0, "down", RED), (1, "up", GREEN))


def increase_by(labels: str, counter: str) -> str:
    """Per-step increase of a trainer counter, summed by `labels` (bars of events, e.g. failed writes)."""
    return f"sum by ({labels}) (increase({counter}{{{TRAINER}}}[$__rate_interval]))"


def in_range(counter: str) -> str:
    """How much a trainer counter rose over the dashboard's time range, all selected ranks."""
    return f"sum(increase({counter}{{{TRAINER}}}[$__range]))"


def small_stat(
    title: str,
    targets: tuple[Target, ...],
    description: str = "",
    *,
    unit: str = "short",
    decimals: int | None = None,
    thresholds: tuple[Threshold, ...] = (),
) -> Panel:
    """A 4x4 single-value tile of the overview's top rows."""
    return Panel(
        title,
        targets,
        description,
        kind="stat",
        unit=unit,
        width=4,
        height=4,
        decimals=decimals,
        thresholds=thresholds,
    )


def overview() -> Dashboard:
    return Dashboard(
        uid="ddp-overview",
        title="DDP cluster overview",
        description="One phase at a glance: ranks, throughput, balance, correctness, checkpoints, memory.",
        variables=VARIABLES,
        panels=(
            small_stat(
                "Ranks up",
                (
                    Target(f"job:trainer_ranks_up:sum{{{JOB}}}", "up", instant=True),
                    Target(f"job:trainer_ranks:count{{{JOB}}}", "expected", instant=True),
                ),
                "Rank endpoints scraped successfully, and how many the phase's targets list.",
            ),
            small_stat(
                "Node exporters up",
                (
                    Target(f"job:node_exporters_up:sum{{{JOB}}}", "up", instant=True),
                    Target(f"count(up{{{JOB_NODE}}})", "expected", instant=True),
                ),
                "node_exporter endpoints of the phase's nodes scraped successfully.",
            ),
            small_stat(
                "Global throughput",
                (Target(f"job:trainer_global_samples_per_second:max{{{JOB}}}", instant=True),),
                "Job-wide samples/s as the trainer computes it at each heartbeat.",
                unit=SAMPLES,
            ),
            small_stat(
                "Throughput vs baseline",
                (
                    Target(
                        f"job:trainer_global_samples_per_second:max{{{JOB}}}"
                        f" / job:trainer_global_samples_per_second:avg30m_offset10m{{{JOB}}}",
                        instant=True,
                    ),
                ),
                "Global throughput over its mean in the 30 minutes before the last 10; "
                "TrainerThroughputDrop fires below 80%.",
                unit=PERCENT,
                thresholds=(Threshold(None, RED), Threshold(0.8, YELLOW), Threshold(0.95, GREEN)),
            ),
            small_stat(
                "Step-time balance",
                (Target(f"job:trainer_step_duration_seconds:max_over_min{{{JOB}}}", instant=True),),
                "Mean step time of the slowest rank over the fastest (1.0 = balanced).",
                decimals=2,
                thresholds=BALANCE_STEPS,
            ),
            small_stat(
                "Communication overhead",
                (Target(f"job:trainer_comm_overhead_ratio:avg{{{JOB}}}", instant=True),),
                "Share of a step spent on the gradient all-reduce, averaged over ranks.",
                unit=PERCENT,
            ),
            small_stat(
                "Gradient-sync accuracy",
                (Target(f"job:trainer_grad_sync_accuracy_ratio:min{{{JOB}}}", instant=True),),
                "Share of cross-rank parameter checks in agreement, worst rank; below 100% is a bug.",
                unit=PERCENT,
                thresholds=SYNC_STEPS,
            ),
            small_stat(
                "Non-finite losses (1h)",
                (Target(f"sum(increase(trainer_nonfinite_loss_total{{{TRAINER}}}[1h]))", instant=True),),
                "Steps whose loss or gradients were NaN/inf in the last hour, all ranks.",
                decimals=0,
                thresholds=ZERO_GOOD,
            ),
            small_stat(
                "Checkpoint age / interval",
                (
                    Target(
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
                    Target(
                        f"min(instance:node_checkpoint_filesystem_avail_bytes:current{{{JOB_NODE}}}"
                        f" / instance:node_checkpoint_filesystem_size_bytes:current{{{JOB_NODE}}})",
                        instant=True,
                    ),
                ),
                "Free share of the fullest node's checkpoint filesystem.",
                unit=PERCENT,
                thresholds=DISK_FREE_STEPS,
            ),
            small_stat(
                "Host memory pressure",
                (Target(f"job:trainer_memory_pressure_ratio:max{{{JOB}}}", instant=True),),
                "Host RAM in use / total on the worst node.",
                unit=PERCENT,
                thresholds=MEMORY_STEPS,
            ),
            small_stat(
                "GPU memory pressure",
                (Target(f"job:trainer_gpu_memory_pressure_ratio:max{{{JOB}}}", instant=True),),
                "GPU memory in use / total on the worst rank (no value on CPU-only runs).",
                unit=PERCENT,
                thresholds=MEMORY_STEPS,
            ),
            Panel(
                "Global throughput over time",
                (
                    Target(f"job:trainer_global_samples_per_second:max{{{JOB}}}", "throughput"),
                    Target(
                        f"job:trainer_global_samples_per_second:avg30m_offset10m{{{JOB}}}",
                        "baseline (mean of the 30m before the last 10m)",
                    ),
                ),
                unit=SAMPLES,
                min=0,
            ),
            Panel(
                "Rank endpoints",
                (Target(f"up{{{TRAINER}}}", "{{node}} local rank {{local_rank}}"),),
                "Each rank's metrics endpoint: scraped (up) or not (down).",
                kind="state-timeline",
                mappings=UP_MAPPINGS,
                thresholds=(Threshold(None, RED), Threshold(1, GREEN)),
            ),
        ),
    )


def performance() -> Dashboard:
    return Dashboard(
        uid="ddp-performance",
        title="DDP throughput, step time and communication",
        description="Throughput and its spread, per-rank step-time balance and the cost of gradient sync.",
        variables=VARIABLES,
        panels=(
            Panel(
                "Job-wide throughput",
                (
                    Target(f"job:trainer_global_samples_per_second:max{{{JOB}}}", "trainer (global)"),
                    Target(f"job:trainer_samples_per_second:sum{{{JOB}}}", "sum of the ranks' rates"),
                    Target(
                        f"job:trainer_global_samples_per_second:avg30m_offset10m{{{JOB}}}",
                        "baseline (mean of the 30m before the last 10m)",
                    ),
                    Target(
                        f"0.8 * job:trainer_global_samples_per_second:avg30m_offset10m{{{JOB}}}",
                        "drop alert level (80% of baseline)",
                    ),
                ),
                "The trainer's own job-wide rate, cross-checked by the sum of the per-rank rates.",
                unit=SAMPLES,
                min=0,
            ),
            Panel(
                "Throughput sigma",
                (
                    Target(f"job:trainer_throughput_stddev_samples_per_second:max{{{JOB}}}", "sigma"),
                    Target(
                        f"job:trainer_throughput_stddev_samples_per_second:max{{{JOB}}}"
                        f" / job:trainer_global_samples_per_second:max{{{JOB}}}",
                        "sigma / throughput",
                    ),
                ),
                "Standard deviation of the job-wide rate over the trainer's window (absolute and relative).",
                min=0,
            ),
            Panel(
                "Samples/s per rank",
                (Target(f"trainer_samples_per_second{{{TRAINER}}}", RANK),),
                unit=SAMPLES,
                min=0,
            ),
            Panel(
                "Optimizer steps per second",
                (Target(f"job:trainer_steps:rate1m{{{JOB}}}", "steps/s"),),
                "Steps per second of the fastest rank over the last minute (all ranks step together).",
                min=0,
            ),
            Panel(
                "Mean step time per rank (1m)",
                (Target(f"instance:trainer_step_duration_seconds:mean1m{{{TRAINER}}}", RANK),),
                "A rank far above the others is the straggler the whole job waits for.",
                unit="s",
                min=0,
            ),
            Panel(
                "Step-time balance: slowest / fastest rank",
                (Target(f"job:trainer_step_duration_seconds:max_over_min{{{JOB}}}", "slowest / fastest"),),
                unit="short",
                min=1,
                thresholds=BALANCE_STEPS,
                threshold_lines=True,
            ),
            Panel(
                "Step time p95",
                (
                    Target(f"job:trainer_step_duration_seconds:p95_5m{{{JOB}}}", "job (5m)"),
                    Target(
                        "histogram_quantile(0.95, sum by (node, le) "
                        f"(rate(trainer_step_duration_seconds_bucket{{{TRAINER}}}[$__rate_interval])))",
                        "{{node}}",
                    ),
                ),
                unit="s",
                min=0,
            ),
            Panel(
                "Communication overhead per rank",
                (
                    Target(f"trainer_comm_overhead_ratio{{{TRAINER}}}", RANK),
                    Target(f"job:trainer_comm_overhead_ratio:avg{{{JOB}}}", "job average"),
                ),
                "Share of a step spent on the gradient all-reduce (measured with a no_sync probe).",
                unit=PERCENT,
                min=0,
                max=1,
            ),
            Panel(
                "Step with and without gradient sync",
                (
                    Target(f"trainer_sync_step_seconds{{{TRAINER}}}", "with sync, " + RANK),
                    Target(f"trainer_nosync_step_seconds{{{TRAINER}}}", "no_sync, " + RANK),
                ),
                "Forward+backward with the all-reduce and under no_sync(); the gap is the cost of the sync.",
                unit="s",
                min=0,
            ),
            Panel(
                "Network traffic per node",
                (
                    Target(
                        "sum by (node) (rate(node_network_transmit_bytes_total"
                        f'{{{NODE}, device!="lo"}}[$__rate_interval]))',
                        "{{node}} sent",
                    ),
                    Target(
                        "sum by (node) (rate(node_network_receive_bytes_total"
                        f'{{{NODE}, device!="lo"}}[$__rate_interval]))',
                        "{{node}} received",
                    ),
                ),
                "All interfaces but loopback: the gradient all-reduce is most of it during training.",
                unit="Bps",
                min=0,
            ),
        ),
    )


def resources() -> Dashboard:
    return Dashboard(
        uid="ddp-resources",
        title="DDP CPU, GPU and memory",
        description="Utilisation and memory pressure of the ranks and their nodes.",
        variables=VARIABLES,
        panels=(
            Panel(
                "Trainer CPU utilisation per rank",
                (Target(f"trainer_cpu_utilisation_ratio{{{TRAINER}}}", RANK),),
                "Process CPU time over the CPUs the rank may use.",
                unit=PERCENT,
                min=0,
            ),
            Panel(
                "Node CPU busy",
                (
                    Target(
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
            Panel(
                "GPU utilisation per rank",
                (Target(f"trainer_gpu_utilisation_ratio{{{TRAINER}}}", RANK),),
                "Reported by CUDA runs only; empty on CPU-only runs.",
                unit=PERCENT,
                min=0,
                max=1,
            ),
            Panel(
                "Node load per CPU",
                (
                    Target(
                        f"node_load1{{{NODE}}} / on (instance) group_left () "
                        f'count by (instance) (node_cpu_seconds_total{{{NODE}, mode="idle"}})',
                        "{{node}}",
                    ),
                ),
                "1-minute load average over the CPU count; above 1 means runnable work waits for a CPU.",
                min=0,
            ),
            Panel(
                "Host memory pressure per rank",
                (
                    Target(f"trainer_memory_pressure_ratio{{{TRAINER}}}", RANK),
                    Target(f"job:trainer_memory_pressure_ratio:max{{{JOB}}}", "job maximum"),
                ),
                "Host RAM in use / total; TrainerMemoryPressure warns above 85% and pages above 90%.",
                unit=PERCENT,
                min=0,
                max=1,
                thresholds=MEMORY_STEPS,
                threshold_lines=True,
            ),
            Panel(
                "GPU memory pressure per rank",
                (
                    Target(f"trainer_gpu_memory_pressure_ratio{{{TRAINER}}}", RANK),
                    Target(f"job:trainer_gpu_memory_pressure_ratio:max{{{JOB}}}", "job maximum"),
                ),
                "GPU memory in use / total; TrainerGPUMemoryPressure warns above 85% and pages above 90%.",
                unit=PERCENT,
                min=0,
                max=1,
                thresholds=MEMORY_STEPS,
                threshold_lines=True,
            ),
            Panel(
                "Node memory used",
                (
                    Target(
                        f"1 - node_memory_MemAvailable_bytes{{{NODE}}}"
                        f" / node_memory_MemTotal_bytes{{{NODE}}}",
                        "{{node}}",
                    ),
                ),
                "What node_exporter sees, the trainer's own processes included.",
                unit=PERCENT,
                min=0,
                max=1,
                thresholds=MEMORY_STEPS,
                threshold_lines=True,
            ),
            Panel(
                "Node memory available",
                (Target(f"node_memory_MemAvailable_bytes{{{NODE}}}", "{{node}}"),),
                unit="bytes",
                min=0,
            ),
        ),
    )


def training_health() -> Dashboard:
    return Dashboard(
        uid="ddp-training-health",
        title="DDP loss and gradient sync",
        description="Is the job learning, and do the ranks agree: loss, non-finite steps, gradient sync.",
        variables=VARIABLES,
        panels=(
            Panel(
                "Loss per rank",
                (Target(f"trainer_loss{{{TRAINER}}}", RANK),),
                "Training loss of each rank's last step.",
            ),
            Panel(
                "Mean loss",
                (Target(f"avg(trainer_loss{{{TRAINER}}})", "mean over ranks"),),
                "Ranks see different batches; their mean is the job's loss curve.",
            ),
            Panel(
                "Non-finite losses",
                (
                    Target(
                        increase_by("node, rank", "trainer_nonfinite_loss_total"),
                        RANK,
                    ),
                ),
                "Steps whose loss or gradients were NaN/inf; TrainerNonFiniteLoss pages on any.",
                bars=True,
                min=0,
                decimals=0,
            ),
            Panel(
                "Skipped steps",
                (
                    Target(
                        increase_by("node, rank", "trainer_skipped_steps_total"),
                        RANK,
                    ),
                ),
                "Steps dropped by nonfinite_policy=skip.",
                bars=True,
                min=0,
                decimals=0,
            ),
            Panel(
                "Non-finite losses in range",
                (Target(in_range("trainer_nonfinite_loss_total"), instant=True),),
                kind="stat",
                width=6,
                decimals=0,
                thresholds=ZERO_GOOD,
            ),
            Panel(
                "Gradient-sync mismatches in range",
                (
                    Target(
                        in_range("trainer_grad_sync_mismatches_total"),
                        instant=True,
                    ),
                ),
                kind="stat",
                width=6,
                decimals=0,
                thresholds=ZERO_GOOD,
            ),
            Panel(
                "Current step and epoch",
                (
                    Target(f"max(trainer_step{{{TRAINER}}})", "step", instant=True),
                    Target(f"max(trainer_epoch{{{TRAINER}}})", "epoch", instant=True),
                ),
                kind="stat",
                decimals=0,
            ),
            Panel(
                "Gradient-sync accuracy",
                (
                    Target(f"trainer_grad_sync_accuracy_ratio{{{TRAINER}}}", RANK),
                    Target(f"job:trainer_grad_sync_accuracy_ratio:min{{{JOB}}}", "job minimum"),
                ),
                "Share of cross-rank parameter checksum comparisons in agreement; must stay at 100%.",
                unit=PERCENT,
                max=1,
                thresholds=SYNC_STEPS,
                threshold_lines=True,
            ),
            Panel(
                "Gradient-sync checks and mismatches",
                (
                    Target(
                        f"sum(rate(trainer_grad_sync_checks_total{{{TRAINER}}}[$__rate_interval]))",
                        "checks/s",
                    ),
                    Target(
                        increase_by("node, rank", "trainer_grad_sync_mismatches_total"),
                        "mismatches, " + RANK,
                    ),
                ),
                "TrainerGradSyncMismatch pages on any mismatch.",
                min=0,
            ),
        ),
    )


def checkpoints() -> Dashboard:
    return Dashboard(
        uid="ddp-checkpoints",
        title="DDP checkpoints",
        description="Checkpoint age against the expected interval, writes and failures, and their disk.",
        variables=VARIABLES,
        panels=(
            Panel(
                "Checkpoint age vs interval",
                (
                    Target(f"max by (node) (trainer_checkpoint_age_seconds{{{TRAINER}}})", "age, {{node}}"),
                    Target(f"max(trainer_checkpoint_interval_seconds{{{TRAINER}}})", "expected interval"),
                    Target(
                        f"2 * max(trainer_checkpoint_interval_seconds{{{TRAINER}}})",
                        "stale alert level (2 x interval)",
                    ),
                ),
                "Seconds since the last good checkpoint; TrainerCheckpointStale fires above 2 x interval.",
                unit="s",
                min=0,
            ),
            Panel(
                "Age / interval",
                (
                    Target(
                        f"max(trainer_checkpoint_age_seconds{{{TRAINER}}}"
                        f" / trainer_checkpoint_interval_seconds{{{TRAINER}}})",
                        instant=True,
                    ),
                ),
                kind="stat",
                width=6,
                decimals=2,
                thresholds=CHECKPOINT_AGE_STEPS,
            ),
            Panel(
                "Last good checkpoint",
                (
                    Target(
                        f"max(trainer_checkpoint_last_success_timestamp_seconds{{{TRAINER}}}) * 1000",
                        instant=True,
                    ),
                ),
                kind="stat",
                width=6,
                unit="dateTimeFromNow",
            ),
            Panel(
                "Checkpoints saved",
                (
                    Target(
                        increase_by("node", "trainer_checkpoints_saved_total"),
                        "{{node}}",
                    ),
                ),
                bars=True,
                min=0,
                decimals=0,
            ),
            Panel(
                "Checkpoint write failures",
                (
                    Target(
                        increase_by("node", "trainer_checkpoint_failures_total"),
                        "{{node}}",
                    ),
                ),
                "TrainerCheckpointWriteFailures warns on any failed write in 15 minutes.",
                bars=True,
                min=0,
                decimals=0,
                thresholds=ZERO_GOOD,
            ),
            Panel(
                "Saved and failed in range",
                (
                    Target(
                        in_range("trainer_checkpoints_saved_total"),
                        "saved",
                        instant=True,
                    ),
                    Target(
                        in_range("trainer_checkpoint_failures_total"),
                        "failed",
                        instant=True,
                    ),
                ),
                kind="stat",
                decimals=0,
            ),
            Panel(
                "Checkpoint disk available",
                (
                    Target(
                        f"instance:node_checkpoint_filesystem_avail_bytes:current{{{NODE}}}",
                        "{{node}} {{mountpoint}}",
                    ),
                    Target(
                        "predict_linear("
                        f"instance:node_checkpoint_filesystem_avail_bytes:current{{{NODE}}}[1h], 6 * 3600)",
                        "{{node}} in 6h at the last hour's rate",
                    ),
                ),
                "node_filesystem_avail_bytes of the filesystem holding the checkpoint directory "
                "(the node target's checkpoint_mountpoint label).",
                unit="bytes",
            ),
            Panel(
                "Checkpoint disk free",
                (
                    Target(
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
        ),
    )


def ranks() -> Dashboard:
    return Dashboard(
        uid="ddp-ranks",
        title="DDP ranks",
        description="Which ranks and nodes answer, restarts, progress and the run each rank belongs to.",
        variables=VARIABLES,
        panels=(
            Panel(
                "Rank endpoints up",
                (Target(f"up{{{TRAINER}}}", "{{node}} local rank {{local_rank}}"),),
                "TrainerRankDown pages when an endpoint is not scraped for 1m.",
                kind="state-timeline",
                mappings=UP_MAPPINGS,
                thresholds=(Threshold(None, RED), Threshold(1, GREEN)),
            ),
            Panel(
                "Node exporters up",
                (Target(f"up{{{NODE}}}", "{{node}}"),),
                "NodeDown pages when a node's exporter is not scraped for 2m.",
                kind="state-timeline",
                mappings=UP_MAPPINGS,
                thresholds=(Threshold(None, RED), Threshold(1, GREEN)),
            ),
            Panel(
                "Ranks up / expected",
                (
                    Target(f"job:trainer_ranks_up:sum{{{JOB}}}", "up"),
                    Target(f"job:trainer_ranks:count{{{JOB}}}", "expected"),
                    Target(f"job:node_exporters_up:sum{{{JOB}}}", "node exporters up"),
                ),
                min=0,
                decimals=0,
            ),
            Panel(
                "Worker group restarts",
                (Target(f"max by (node) (trainer_restart_count{{{TRAINER}}})", "{{node}}"),),
                "torchrun restarts of each node's worker group since the run started.",
                min=0,
                decimals=0,
            ),
            Panel(
                "Current step per rank",
                (Target(f"trainer_step{{{TRAINER}}}", RANK),),
                "A flat line while the others climb is a stalled rank (TrainerStalled after 10m).",
                decimals=0,
            ),
            Panel(
                "Worker uptime",
                (Target(f"time() - trainer_start_time_seconds{{{TRAINER}}}", RANK),),
                unit="s",
                min=0,
            ),
            Panel(
                "Run of each rank",
                (Target(f"trainer_info{{{TRAINER}}}", instant=True, table=True),),
                "Run name, backend and world size each rank reports; all rows should agree.",
                kind="table",
                width=24,
            ),
        ),
    )


def all_dashboards() -> tuple[Dashboard, ...]:
    return (overview(), performance(), resources(), training_health(), checkpoints(), ranks())
