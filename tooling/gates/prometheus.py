"""Gate measurements from Prometheus range queries over the run's time window (plain HTTP, no client lib).

Every trainer rank exports the same job-wide gauges (the heartbeat all-reduces them), so job-wide figures
take max() over ranks; per-rank figures (overhead, GPU utilisation) take avg(). Counters start at zero in
each trainer process, so their increase over the run counts from zero; node_exporter's counters live as
long as the machine, so only their change inside the window counts.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Sequence

from tooling.plan.measurements import Measurement, missing
from tooling.prometheus_api import PrometheusClient, Series

SRC = "prometheus"


def _one(series: list[Series]) -> Series:
    # Aggregated expressions return at most one series; an empty answer is "no data".
    return series[0] if series else []


def increase(points: Series, *, from_zero: bool) -> float | None:
    """Counter increase over the points, counting through resets (a restarted process starts at 0)."""
    if not points:
        return None
    total = points[0][1] if from_zero else 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        total += after - before if after >= before else after
    return total


def uptime(
    ranks_up: Series, progress: Series, expected_ranks: int, step: float, end: float
) -> tuple[float, int] | None:
    """Share of evaluation intervals with every rank scraped and the step count rising.

    Intervals run from the first evaluation that saw the job (start-up before the first scrape is not
    downtime) to the end of the window; an interval where the job had no series at all counts as down.
    """
    if not progress:
        return None
    # Evaluation times are start + k * step; milliseconds are what Prometheus keeps of them.
    count_at = {round(t, 3): v for t, v in ranks_up}
    steps_at = {round(t, 3): v for t, v in progress}
    first = min(steps_at)
    grid = [round(first + k * step, 3) for k in range(int((end - first) / step) + 1)]
    intervals = list(itertools.pairwise(grid))
    if not intervals:
        return None
    good = sum(
        1
        for before, after in intervals
        if count_at.get(after, 0) >= expected_ranks
        and after in steps_at
        and before in steps_at
        and steps_at[after] > steps_at[before]
    )
    return good / len(intervals), len(intervals)


def measure(
    client: PrometheusClient, start: float, end: float, expected_ranks: int, step: float | None = None
) -> tuple[dict[str, Measurement], float]:
    """Every figure Prometheus can give for the window; raises PrometheusError when it cannot answer."""
    interval = client.scrape_interval()
    # Two scrapes per evaluation step, so a rising counter is seen rising in every healthy interval.
    step = step or max(2 * interval, (end - start) / 10_000)

    def q(expr: str) -> Series:
        return _one(client.query_range(expr, start, end, step))

    out: dict[str, Measurement] = {}
    rates = [v for _, v in q("max(trainer_global_samples_per_second)") if v > 0]
    steady = rates[1:] if len(rates) > 1 else rates  # the first heartbeat carries start-up
    where = f"{len(steady)} samples at {step:g}s steps"
    out["throughput"] = (
        Measurement(statistics.fmean(steady), SRC, f"time-weighted mean, {where}")
        if steady
        else missing(SRC, "no trainer_global_samples_per_second in the window")
    )
    out["throughput_sigma"] = (
        Measurement(statistics.pstdev(steady), SRC, f"stddev, {where}")
        if len(steady) >= 2
        else missing(SRC, "fewer than 2 throughput samples in the window")
    )
    overhead = q("avg(trainer_comm_overhead_ratio)")
    out["comm_overhead"] = (
        Measurement(overhead[-1][1], SRC, "mean over ranks of the probe's running median, at the end")
        if overhead
        else missing(SRC, "no trainer_comm_overhead_ratio in the window")
    )
    gpu = [v for _, v in q("avg(trainer_gpu_utilisation_ratio)")]
    out["gpu_utilisation"] = (
        Measurement(statistics.fmean(gpu), SRC, "mean over ranks and time")
        if gpu and max(gpu) > 0
        else missing(SRC, "trainer_gpu_utilisation_ratio absent or never set")
    )
    host = [v for _, v in q("max(trainer_memory_pressure_ratio)")]
    gpu_mem = [v for _, v in q("max(trainer_gpu_memory_pressure_ratio)")]
    if gpu_mem and host and max(gpu_mem) > max(host):
        out["memory_pressure"] = Measurement(max(gpu_mem), SRC, "GPU memory, highest rank and time")
    elif host:
        out["memory_pressure"] = Measurement(max(host), SRC, "host RAM, highest rank and time")
    else:
        out["memory_pressure"] = missing(SRC, "no trainer_memory_pressure_ratio in the window")
    nonfinite = increase(q("max(trainer_nonfinite_loss_total)"), from_zero=True)
    out["nonfinite_losses"] = (
        Measurement(nonfinite, SRC, "increase of trainer_nonfinite_loss_total")
        if nonfinite is not None
        else missing(SRC, "no trainer_nonfinite_loss_total in the window")
    )
    checks = increase(q("max(trainer_grad_sync_checks_total)"), from_zero=True)
    mismatches = increase(q("max(trainer_grad_sync_mismatches_total)"), from_zero=True) or 0.0
    out["grad_sync_accuracy"] = (
        Measurement((checks - mismatches) / checks, SRC, f"{mismatches:g} mismatch(es) in {checks:g} checks")
        if checks
        else missing(SRC, "no trainer_grad_sync_checks_total increase in the window")
    )
    ranks_up = q("count(trainer_steps_total)")
    progress = q("max(trainer_steps_total)")
    seen = int(max((v for _, v in ranks_up), default=0))
    out["ranks_in_sync"] = Measurement(
        float(max(0, expected_ranks - seen) + mismatches),
        SRC,
        f"{seen} of {expected_ranks} ranks scraped, {mismatches:g} check(s) disagreed",
    )
    named = [v for _, v in q("sum(trainer_straggler)")]
    out["stragglers"] = (
        Measurement(max(named), SRC, "most ranks named stragglers at once (sum of trainer_straggler)")
        if named
        else missing(SRC, "no trainer_straggler in the window (run too short, or older trainer)")
    )
    share = uptime(ranks_up, progress, expected_ranks, step, end)
    out["uptime"] = (
        Measurement(
            share[0], SRC, f"{share[1]} intervals of {step:g}s with all {expected_ranks} ranks advancing"
        )
        if share
        else missing(SRC, "no trainer_steps_total in the window")
    )
    out.update(_node_health(q))
    return out, step


def _node_health(query: Callable[[str], Series]) -> dict[str, Measurement]:
    out: dict[str, Measurement] = {}
    nic = 'device!="lo"'
    drops = [
        increase(query(f"sum(node_network_{d}_drop_total{{{nic}}})"), from_zero=False)
        for d in ("receive", "transmit")
    ]
    packets = [
        increase(query(f"sum(node_network_{d}_packets_total{{{nic}}})"), from_zero=False)
        for d in ("receive", "transmit")
    ]
    if _known(packets) and sum(_known(packets)) > 0:
        total_drops = sum(_known(drops))
        total = sum(_known(packets))
        out["packet_loss"] = Measurement(
            total_drops / total, SRC, f"{total_drops:g} dropped of {total:g} packets (node_exporter)"
        )
    else:
        out["packet_loss"] = missing(SRC, "no node_exporter network counters in Prometheus for the window")
    throttles = increase(query("sum(node_cpu_core_throttles_total)"), from_zero=False)
    out["thermal_throttling"] = (
        Measurement(throttles, SRC, "increase of node_cpu_core_throttles_total (node_exporter)")
        if throttles is not None
        else missing(SRC, "no node_cpu_core_throttles_total in Prometheus (node_exporter absent or a VM)")
    )
    return out


def _known(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]
