"""Verdicts of the daily checks: pure functions from parsed measurements to findings (tooling.findings) of
host / check / PASS|WARN|FAIL|SKIP / measured / expected / reason.

A check that could not be done (node unreachable, Prometheus down, tool missing) is never a PASS: it is
a FAIL when the node itself is the problem, a WARN when the check could not look, a SKIP when the check
does not apply (no GPU, no run yet).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tooling.check.checkpoint_outlook import Listing, outlook
from tooling.check.commands import ProbeTarget
from tooling.check.parsers import Alert, CheckpointReport, ConnectivityReport, DiskUsage, ThermalReport
from tooling.check.schedules import Thresholds
from tooling.check.trend import Trend
from tooling.findings import CLUSTER, Finding, FindingsView
from tooling.job.status import NodeReport, job_state
from tooling.verdicts import Status

PROMETHEUS = "(prometheus)"

# nvidia-smi clocks_throttle_reasons bits that mean heat (or a board forcing clocks down).
GPU_FAIL_BITS = {0x40: "HW thermal slowdown", 0x08: "HW slowdown"}
GPU_WARN_BITS = {0x20: "SW thermal slowdown", 0x80: "HW power brake slowdown"}


def overall(rows: Iterable[Finding]) -> Status:
    """The worst verdict; nothing but SKIP stays SKIP (a check run that could look at nothing)."""
    statuses = {r.status for r in rows}
    for status in ("FAIL", "WARN", "PASS"):
        if status in statuses:
            return status  # type: ignore[return-value]
    return "SKIP"


# The check's findings as people and machines see them; "detail" is the reason's name in its JSON.
VIEW = FindingsView(overall=overall, reason_key="detail")


def fmt_bytes(value: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def fmt_duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def unreachable(check: str, host: str, reason: str) -> Finding:
    return Finding(host, check, "FAIL", "unreachable", "node answers over SSH", reason)


def command_failed(check: str, host: str, what: str, reason: str, expected: str) -> Finding:
    return Finding(host, check, "FAIL", f"{what} failed", expected, reason)


def no_run(check: str, host: str, note: str) -> Finding:
    return Finding(host, check, "SKIP", "no run", "an active run", note)


# --- job and ranks ---------------------------------------------------------------------------------------


def _steps(ranks: Sequence[dict[str, Any]]) -> list[int]:
    return [int(r["step"]) for r in ranks if isinstance(r.get("step"), int)]


def _rank_label(rank: dict[str, Any]) -> str:
    return f"rank {rank.get('rank')} ({rank.get('node', '?')})"


def judge_job(run_id: str, reports: Sequence[NodeReport], world_size: int) -> Finding:
    state = job_state(list(reports), world_size)
    ranks = [r for report in reports for r in report.ranks]
    measured = f"{state}, {len(ranks)}/{world_size} ranks"
    expected = "running (or completed), every rank reporting"
    steps = _steps(ranks)
    progress = f"step {max(steps)}/{ranks[0].get('max_steps')}" if steps else "no step yet"
    data = {"state": state, "ranks": len(ranks), "world_size": world_size, "run": run_id}
    if state == "partial":
        down = "; ".join(f"{r.host}: {r.error}" for r in reports if r.error)
        return Finding(CLUSTER, "job", "FAIL", measured, expected, f"run {run_id}: cannot read {down}", data)
    if state == "failed":
        failed = [r for r in ranks if r.get("state") == "failed"]
        why = "; ".join(f"{_rank_label(r)}: {r.get('error') or 'failed'}" for r in failed[:3])
        return Finding(CLUSTER, "job", "FAIL", measured, expected, f"run {run_id} failed: {why}", data)
    status: Status = "PASS" if state in ("running", "completed") else "WARN"
    if state == "starting":
        detail = f"run {run_id}: only {len(ranks)} of {world_size} ranks have reported ({progress})"
    elif state == "stopped":
        detail = f"run {run_id} was stopped at {progress}; nothing is training"
    else:
        detail = f"run {run_id} {state}, {progress}"
    return Finding(CLUSTER, "job", status, measured, expected, detail, data)


def judge_ranks(report: NodeReport, nproc: int, state: str, stale_s: float) -> Finding:
    host = report.host
    expected = f"{nproc} ranks reporting, none silent > {stale_s:g} s"
    if report.error:
        return unreachable("ranks", host, report.error)
    ranks = report.ranks
    present = {r.get("local_rank") for r in ranks}
    missing = sorted(set(range(nproc)) - present)
    failed = [r for r in ranks if r.get("state") == "failed"]
    stale = []
    for rank in ranks:
        updated = rank.get("updated_at")
        if rank.get("state") == "running" and report.node_time and isinstance(updated, int | float):
            age = report.node_time - updated
            if age > stale_s:
                stale.append(f"{_rank_label(rank)} silent for {age:.0f} s")
    problems = [f"{_rank_label(r)} failed: {r.get('error') or 'see its log'}" for r in failed] + stale
    if missing:
        problems.append(f"no status from local rank(s) {', '.join(map(str, missing))}")
    measured = f"{len(ranks)}/{nproc} ranks"
    data = {"reported": len(ranks), "expected": nproc, "missing_local_ranks": missing}
    states = sorted({str(r.get("state")) for r in ranks})
    if failed or stale or (missing and state in ("running", "partial", "failed")):
        return Finding(host, "ranks", "FAIL", measured, expected, "; ".join(problems), data)
    if missing:
        return Finding(
            host, "ranks", "WARN", measured, expected, f"job {state}: " + "; ".join(problems), data
        )
    if "stopped" in states:
        return Finding(host, "ranks", "WARN", measured, expected, "ranks are stopped, not training", data)
    steps = _steps(ranks)
    where = ""
    if steps:
        low, high = min(steps), max(steps)
        where = f", step {low}" if low == high else f", step {low}-{high}"
    return Finding(host, "ranks", "PASS", measured, expected, f"{'/'.join(states)}{where}", data)


def step_times(reports: Sequence[NodeReport]) -> tuple[list[tuple[dict[str, Any], float]], str]:
    """(rank, seconds per step) for every rank that reports one, and where the figure came from.

    A rank's own work per step (its compute: the step less its wait in the all-reduce,
    ddp/collective_clock.py) tells the ranks apart. Step time and throughput do so only where ranks do
    not wait for each other: in DDP every rank waits for the slowest in each all-reduce, so they are the
    fallback for trainers that publish no compute. Ranks share one batch size, so 1 / samples-per-second
    ranks them as step time does."""
    ranks = [r for report in reports for r in report.ranks if r.get("state") in ("running", "completed")]
    compute = [(r, float(r["compute_seconds"])) for r in ranks if (r.get("compute_seconds") or 0) > 0]
    if len(compute) >= 2:
        return compute, "per-rank compute (the step less its wait in the all-reduce)"
    direct = [(r, float(r["step_seconds"])) for r in ranks if (r.get("step_seconds") or 0) > 0]
    if len(direct) >= 2:
        return direct, "per-rank step time"
    derived = [
        (r, 1.0 / float(r["samples_per_second"])) for r in ranks if (r.get("samples_per_second") or 0) > 0
    ]
    return derived, "per-rank samples/s (same batch on every rank)"


def judge_balance(reports: Sequence[NodeReport], t: Thresholds) -> Finding:
    expected = f"slowest/fastest < {t.balance_warn_ratio:g} (fail >= {t.balance_fail_ratio:g})"
    times, source = step_times(reports)
    if len(times) < 2:
        return Finding(CLUSTER, "balance", "SKIP", "-", expected, "fewer than 2 ranks report a step rate yet")
    slowest = max(times, key=lambda item: item[1])
    fastest = min(times, key=lambda item: item[1])
    ratio = slowest[1] / fastest[1]
    status: Status = (
        "FAIL" if ratio >= t.balance_fail_ratio else "WARN" if ratio >= t.balance_warn_ratio else "PASS"
    )
    spread = (
        "all equal"
        if slowest[1] == fastest[1]
        else f"slowest {_rank_label(slowest[0])}, fastest {_rank_label(fastest[0])}"
    )
    detail = f"{spread}; {len(times)} ranks, from {source}"
    return Finding(
        CLUSTER, "balance", status, f"{ratio:.2f}", expected, detail, {"ratio": ratio, "ranks": len(times)}
    )


# --- alerts ----------------------------------------------------------------------------------------------


def judge_alerts_now(
    alerts: Sequence[Alert], scrape_errors: Mapping[str, str] | None = None, now: float | None = None
) -> Finding:
    """`scrape_errors`: instance -> the last scrape error of each target Prometheus holds down, so an alert
    on a down endpoint says why it is down (refused, timed out, an HTTP error) and not only that it is.
    `now`: the check's time; each firing alert then says how long it has been active (its oldest series),
    which tells a start-up blip from an outage."""
    expected = "no alert firing"
    errors = scrape_errors or {}
    firing = [a for a in alerts if a.state == "firing"]
    pending = [a for a in alerts if a.state == "pending"]
    critical = [a for a in firing if a.severity == "critical"]

    def names(items: Sequence[Alert]) -> str:
        starts: dict[tuple[str, str], list[float]] = defaultdict(list)
        for a in items:
            group, started = starts[(a.name, a.where)], a.active_since()
            if started is not None:
                group.append(started)
        shown = []
        for (name, where), known in sorted(starts.items()):
            notes = [n for n in (where, _active_for(min(known, default=None), now)) if n]
            shown.append(f"{name} ({', '.join(notes)})" if notes else name)
        return ", ".join(shown)

    def described(a: Alert) -> dict[str, str | None]:
        instance = a.labels.get("instance", "")
        return {"name": a.name, "state": a.state, "where": a.where, "instance": instance or None,
                "active_at": a.active_at, "scrape_error": errors.get(instance)}  # fmt: skip

    data = {
        "firing": [a.name for a in firing],
        "pending": [a.name for a in pending],
        "alerts": [described(a) for a in firing + pending],
    }
    detail = names(firing) if firing else "none firing"
    if pending:
        detail += f"; pending: {names(pending)}"
    down = sorted(
        {
            (a.labels["instance"], errors[a.labels["instance"]])
            for a in firing
            if a.labels.get("instance") in errors
        }
    )
    if down:
        detail += "; scrapes failing: " + "; ".join(f"{instance}: {error}" for instance, error in down)
    measured = f"{len(firing)} firing" + (f" ({len(critical)} critical)" if critical else "")
    status: Status = "FAIL" if critical else "WARN" if firing else "PASS"
    return Finding(PROMETHEUS, "alerts", status, measured, expected, detail, data)


def _active_for(started: float | None, now: float | None) -> str:
    return "" if started is None or now is None else f"active {fmt_duration(max(0.0, now - started))}"


def judge_alert_history(series: Sequence[tuple[dict[str, str], float]], hours: float) -> Finding:
    """`series`: count_over_time(ALERTS{alertstate="firing"}[H:1m]) per alert series (minutes firing)."""
    expected = f"no alert fired in the last {hours:g} h"
    minutes: dict[str, float] = defaultdict(float)
    for labels, value in series:
        where = labels.get("node") or labels.get("instance") or labels.get("phase") or ""
        minutes[f"{labels.get('alertname', '?')}{f' ({where})' if where else ''}"] += value
    if not minutes:
        return Finding(PROMETHEUS, "alerts.history", "PASS", "0 fired", expected, "quiet")
    listed = sorted(minutes.items(), key=lambda item: -item[1])
    detail = "; ".join(f"{name} ~{value:.0f} min" for name, value in listed[:8])
    if len(listed) > 8:
        detail += f" (+{len(listed) - 8} more)"
    return Finding(
        PROMETHEUS,
        "alerts.history",
        "WARN",
        f"{len(listed)} fired",
        expected,
        f"review: {detail}",
        {"minutes_firing": dict(minutes)},
    )


def prometheus_unavailable(check: str, reason: str, configured: bool) -> Finding:
    """Not looked at is not the same as quiet: WARN when Prometheus should be there, SKIP when none is."""
    status: Status = "WARN" if configured else "SKIP"
    return Finding(PROMETHEUS, check, status, "not checked", "Prometheus answers", reason)


# --- disk ------------------------------------------------------------------------------------------------


def judge_disk(host: str, usage: DiskUsage, t: Thresholds) -> Finding:
    ratio = usage.free_ratio
    status: Status = (
        "FAIL" if ratio < t.disk_free_fail_ratio else "WARN" if ratio < t.disk_free_warn_ratio else "PASS"
    )
    return Finding(
        host,
        "disk",
        status,
        f"{fmt_bytes(usage.avail_bytes)} free ({ratio:.0%})",
        f"free >= {t.disk_free_warn_ratio:.0%} (fail < {t.disk_free_fail_ratio:.0%})",
        f"{usage.mount} ({usage.filesystem}, {fmt_bytes(usage.size_bytes)}) holding {usage.path}",
        {"avail_bytes": usage.avail_bytes, "size_bytes": usage.size_bytes, "mount": usage.mount},
    )


def judge_trend(host: str, usage: DiskUsage, trend: Trend | None, why_none: str, t: Thresholds) -> Finding:
    warn, fail = fmt_duration(t.time_to_full_warn_h * 3600), fmt_duration(t.time_to_full_fail_h * 3600)
    expected = f"full in > {warn} (fail < {fail})"
    if trend is None:
        return Finding(host, "disk.trend", "SKIP", "-", expected, why_none)
    ttf = trend.time_to_full_s(usage.avail_bytes)
    rate = f"{fmt_bytes(abs(trend.slope_bytes_per_s) * 86400)}/day"
    data = {"slope_bytes_per_s": trend.slope_bytes_per_s, "time_to_full_s": ttf}
    if ttf is None:
        return Finding(
            host, "disk.trend", "PASS", "not filling", expected, f"free space +{rate}; {trend.source}", data
        )
    status: Status = (
        "FAIL"
        if ttf < t.time_to_full_fail_h * 3600
        else "WARN"
        if ttf < t.time_to_full_warn_h * 3600
        else "PASS"
    )
    return Finding(
        host,
        "disk.trend",
        status,
        f"full in {fmt_duration(ttf)}",
        expected,
        f"using {rate}; {trend.source}",
        data,
    )


# --- checkpoints -----------------------------------------------------------------------------------------


def judge_checkpoint(host: str, report: CheckpointReport, now: float | None = None) -> Finding:
    now = time.time() if now is None else now
    expected = "newest checkpoint matches its sha256 and loads"
    data: dict[str, Any] = {"verdict": report.verdict, "files": [c.file for c in report.checked]}
    if report.verdict == "none":
        return Finding(
            host, "checkpoint", "WARN", "no checkpoint", expected, report.problem or report.directory, data
        )
    if report.verdict != "ok" or not report.checked:
        bad = [c for c in report.checked if not c.ok]
        measured = f"{bad[0].file} corrupt" if bad else "manifest broken"
        why = report.problem or f"verdict {report.verdict!r} names no checked file"
        return Finding(host, "checkpoint", "FAIL", measured, expected, why, data)
    newest = report.checked[0]
    age = fmt_duration(max(0.0, now - newest.saved_at))
    others = f" (+{len(report.checked) - 1} older verified)" if len(report.checked) > 1 else ""
    detail = (
        f"{report.directory}/{newest.file}: step {newest.step}, {fmt_bytes(newest.bytes)}, saved {age} ago; "
        f"sha256 ok, torch.load ok{others}"
    )
    return Finding(host, "checkpoint", "PASS", newest.file, expected, detail, data)


def judge_checkpoint_outlook(
    host: str, listing: Listing, usage: DiskUsage, trend: Trend | None, now: float
) -> Finding:
    """Tomorrow's checkpoints and the disk they leave (tooling/check/checkpoint_outlook.py): WARN when the
    disk would fill before this time tomorrow."""
    check, expected = "checkpoint.tomorrow", "room for tomorrow's checkpoints"
    if not listing.entries:
        return Finding(host, check, "SKIP", "no checkpoint", expected, f"{listing.directory} lists none yet")
    seen = outlook(listing, usage.avail_bytes, trend, now)
    if seen is None:
        why = f"{listing.directory} lists one checkpoint: no interval to extrapolate yet"
        return Finding(host, check, "SKIP", "1 checkpoint", expected, why)
    kept = f"{seen.kept_tomorrow} kept" + (f" (keep_last {listing.keep_last})" if listing.keep_last else "")
    which = f"the filesystem's trend ({trend.source})" if seen.by_trend and trend else "the checkpoints alone"
    detail = (
        f"one every {fmt_duration(seen.interval_s)}, {fmt_bytes(seen.checkpoint_bytes)} each: "
        f"{seen.new_checkpoints} more by this time tomorrow ({fmt_bytes(seen.bytes_written)} written), "
        f"{kept}; "
        f"{fmt_bytes(seen.avail_tomorrow)} free then, by {which}"
    )
    measured = f"{seen.new_checkpoints} new, {fmt_bytes(seen.avail_tomorrow)} left"
    if seen.fills:
        detail += (
            f"; a save needs {fmt_bytes(seen.checkpoint_bytes)} free before it prunes: the disk would fill"
        )
    return Finding(host, check, "WARN" if seen.fills else "PASS", measured, expected, detail, seen.as_dict())


# --- network ---------------------------------------------------------------------------------------------


def judge_network(
    source: str,
    report: ConnectivityReport,
    asked: Sequence[ProbeTarget],
    t: Thresholds,
    listeners: dict[str, set[int] | None] | None = None,
) -> list[Finding]:
    """One row per endpoint this node was asked to reach; `listeners`: what each target listens on."""
    expected = f"connects in < {t.latency_warn_ms:g} ms"
    by_key = {(c.host, c.port): c for c in report.connects}
    rows = []
    for target in asked:
        where = f"-> {target.host} {target.address}:{target.port} ({target.label})"
        probe = by_key.get((target.host, target.port))
        if probe is None:
            rows.append(
                Finding(
                    source, "network", "FAIL", "no answer", expected, f"{where}: the probe printed nothing"
                )
            )
            continue
        if not probe.ok:
            hint = ""
            listening = (listeners or {}).get(target.host)
            if listening is not None and target.port not in listening:
                hint = f"; {target.host} does not listen on {target.port}"
            rows.append(
                Finding(
                    source,
                    "network",
                    "FAIL",
                    "no connect",
                    expected,
                    f"{where}: {probe.error}{hint}",
                    {"target": target.host},
                )
            )
            continue
        ms = probe.ms or 0.0
        status: Status = "WARN" if ms >= t.latency_warn_ms else "PASS"
        rows.append(
            Finding(
                source, "network", status, f"{ms:.2f} ms", expected, where, {"target": target.host, "ms": ms}
            )
        )
    return rows


# --- thermal ---------------------------------------------------------------------------------------------


def _bits(mask: int, names: dict[int, str]) -> list[str]:
    return [name for bit, name in names.items() if mask & bit]


def judge_thermal(host: str, report: ThermalReport, t: Thresholds) -> Finding:
    expected = f"CPU < {t.cpu_temp_warn_c:g} C, GPU < {t.gpu_temp_warn_c:g} C, no thermal throttling"
    if not report.zones and not report.gpus:
        why = "no readable /sys/class/thermal sensor"
        why += (
            f" and nvidia-smi failed: {report.nvidia_error}"
            if report.nvidia_error
            else (
                " and no GPU (nvidia-smi absent)"
                if not report.nvidia_smi
                else " and nvidia-smi listed no GPU"
            )
        )
        status: Status = "WARN" if report.nvidia_error else "SKIP"
        return Finding(host, "thermal", status, "-", expected, f"{why} (a container or VM exposes none)")
    fails: list[str] = []
    warns: list[str] = []
    parts: list[str] = []
    data: dict[str, Any] = {}
    if report.zones:
        hottest = max(report.zones, key=lambda z: z.celsius)
        data["zone_max_c"] = hottest.celsius
        parts.append(f"sensors max {hottest.celsius:.0f} C ({hottest.kind})")
        if hottest.celsius >= t.cpu_temp_fail_c:
            fails.append(f"{hottest.kind} at {hottest.celsius:.0f} C")
        elif hottest.celsius >= t.cpu_temp_warn_c:
            warns.append(f"{hottest.kind} at {hottest.celsius:.0f} C")
    for gpu in report.gpus:
        label = f"GPU{gpu.index}"
        if gpu.celsius is not None:
            data[f"gpu{gpu.index}_c"] = gpu.celsius
            parts.append(f"{label} {gpu.celsius:.0f} C")
            if gpu.celsius >= t.gpu_temp_fail_c:
                fails.append(f"{label} at {gpu.celsius:.0f} C")
            elif gpu.celsius >= t.gpu_temp_warn_c:
                warns.append(f"{label} at {gpu.celsius:.0f} C")
        if gpu.throttle_mask:
            fails += [f"{label} {name}" for name in _bits(gpu.throttle_mask, GPU_FAIL_BITS)]
            warns += [f"{label} {name}" for name in _bits(gpu.throttle_mask, GPU_WARN_BITS)]
    hottest_text = parts[0] if parts else "-"
    measured = hottest_text if not report.gpus else f"{len(report.gpus)} GPU(s), " + hottest_text
    detail = "; ".join(fails + warns) or ", ".join(parts)
    status = "FAIL" if fails else "WARN" if warns else "PASS"
    return Finding(host, "thermal", status, measured, expected, detail, data)
