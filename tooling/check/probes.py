"""The daily checks themselves: each asks the nodes (tooling/check/commands.py through NodeShell) or
Prometheus, reads the answers with tooling/check/parsers.py and judges them with tooling/check/judge.py.

A Session carries what one check run learns and later checks reuse: the rank statuses (job, ranks,
balance, and whether the rendezvous port should be open), the nodes that did not answer, whether
Prometheus answers, and the disk figures the snapshot keeps for tomorrow's trend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tooling.check import commands, judge
from tooling.check.cluster import Cluster
from tooling.check.nodes import NodeShell
from tooling.check.parsers import (
    DiskUsage,
    ParseError,
    parse_checkpoint_listing,
    parse_checkpoint_verdict,
    parse_connectivity,
    parse_df,
    parse_thermal,
)
from tooling.check.prom import CheckPrometheus, PrometheusAccessError, PrometheusError
from tooling.check.schedules import Thresholds
from tooling.check.trend import Trend, daily_points, from_snapshots
from tooling.findings import CLUSTER, Finding
from tooling.job.status import NodeReport, job_state, parse_status_output
from tooling.remote import RemoteResult


@dataclass
class Session:
    cluster: Cluster
    thresholds: Thresholds
    shell: NodeShell
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier snapshot records
    now: float = field(default_factory=time.time)
    prometheus: CheckPrometheus | None = None
    prometheus_error: str | None = None
    reports: list[NodeReport] | None = None
    disk: dict[str, DiskUsage] = field(default_factory=dict)
    _slopes: dict[str, float] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, cluster: Cluster, thresholds: Thresholds, **kwargs: Any) -> Session:
        session = cls(cluster, thresholds, NodeShell(cluster.nodes), **kwargs)
        if cluster.prometheus_url is None:
            session.prometheus_error = cluster.prometheus_source
        else:
            session.prometheus = CheckPrometheus(
                cluster.prometheus_url, timeout_s=thresholds.ssh_timeout_s, access=cluster.prometheus_access
            )
        return session

    def each(
        self, command: Callable[[str], str] | str, timeout_s: float | None = None
    ) -> dict[str, RemoteResult]:
        per_host = {h: command(h) if callable(command) else command for h in self.cluster.hosts}
        return self.shell.run(per_host, timeout_s or self.thresholds.ssh_timeout_s)

    def rank_reports(self) -> list[NodeReport]:
        if self.reports is None:
            assert self.cluster.run is not None
            results = self.each(commands.rank_status(self.cluster.run.run_dir))
            reports = []
            for host, result in results.items():
                if result.error is not None or result.rc not in (0, None):
                    reason = (
                        result.error or f"status command exited {result.rc}: {result.stderr.strip()[:200]}"
                    )
                    reports.append(NodeReport(host, [], None, reason))
                else:
                    reports.append(parse_status_output(host, result.stdout))
            self.reports = reports
        return self.reports

    def job_runs(self) -> bool:
        """Ranks are (or should be) training, so the rendezvous port must be open."""
        if self.cluster.run is None:
            return False
        states = {r.get("state") for report in self.rank_reports() for r in report.ranks}
        return "running" in states

    def prometheus_ready(self) -> bool:
        return self.prometheus is not None and self.prometheus_error is None

    def prometheus_failed(self, exc: PrometheusError | ParseError) -> None:
        """Prometheus did not answer: the checks that need it say so. One that turned our credentials or
        our TLS trust away stops the run (PrometheusAccessError): the operator's to fix, not a finding."""
        if isinstance(exc, PrometheusAccessError):
            raise exc
        self.prometheus_error = str(exc)

    def disk_slopes(self) -> dict[str, float]:
        if self._slopes is None:
            self._slopes = {}
            if self.prometheus_ready():
                assert self.prometheus is not None
                try:
                    self._slopes = self.prometheus.disk_slopes(self.thresholds.trend_range_h)
                except (PrometheusError, ParseError) as exc:
                    self.prometheus_failed(exc)
        return self._slopes


def check_job(s: Session) -> list[Finding]:
    if s.cluster.run is None:
        note = f"{s.cluster.run_note}; start one with `tooling deploy --phase {s.cluster.phase}`"
        return [Finding(CLUSTER, "job", "WARN", "no run", f"a run of phase {s.cluster.phase}", note)]
    return [judge.judge_job(s.cluster.run.run_id, s.rank_reports(), s.cluster.world_size)]


def check_ranks(s: Session) -> list[Finding]:
    if s.cluster.run is None:
        return [judge.no_run("ranks", CLUSTER, s.cluster.run_note)]
    reports = s.rank_reports()
    state = job_state(reports, s.cluster.world_size)
    return [
        judge.judge_ranks(report, s.cluster.nproc_per_node, state, s.thresholds.rank_stale_s)
        for report in reports
    ]


def check_balance(s: Session) -> list[Finding]:
    if s.cluster.run is None:
        return [judge.no_run("balance", CLUSTER, s.cluster.run_note)]
    return [judge.judge_balance(s.rank_reports(), s.thresholds)]


def check_alerts(s: Session) -> list[Finding]:
    configured = s.cluster.prometheus_url is not None
    if not s.prometheus_ready():
        reason = s.prometheus_error or "no Prometheus"
        return [judge.prometheus_unavailable("alerts", reason, configured)]
    assert s.prometheus is not None
    rows = []
    try:
        alerts = s.prometheus.alerts()
        # Only an alert on an endpoint (an instance label) asks for the targets' scrape errors.
        on_endpoints = any(a.state == "firing" and "instance" in a.labels for a in alerts)
        errors = s.prometheus.scrape_errors() if on_endpoints else None
        rows.append(judge.judge_alerts_now(alerts, errors, s.now))
    except (PrometheusError, ParseError) as exc:
        s.prometheus_failed(exc)
        return [judge.prometheus_unavailable("alerts", str(exc), configured)]
    hours = s.thresholds.alert_history_h
    try:
        rows.append(judge.judge_alert_history(s.prometheus.alert_history(hours), hours))
    except (PrometheusError, ParseError) as exc:
        rows.append(judge.prometheus_unavailable("alerts.history", str(exc), configured))
    return rows


def _trend(s: Session, host: str, usage: DiskUsage) -> tuple[Trend | None, str]:
    slopes = s.disk_slopes()
    if host in slopes:
        return Trend(slopes[host], f"Prometheus deriv over {s.thresholds.trend_range_h:g}h"), ""
    points = daily_points(
        s.history, str(s.cluster.inventory_path), host, usage.mount, s.now, s.thresholds.trend_window_days
    )
    trend = from_snapshots(points, s.now, usage.avail_bytes)
    if trend is not None:
        return trend, ""
    prometheus = (
        f"Prometheus has no {host} series of the checkpoint filesystem"
        if s.prometheus_ready()
        else f"no Prometheus trend ({s.prometheus_error})"
    )
    return None, (
        f"no snapshot of {usage.mount} from an earlier day in the last "
        f"{s.thresholds.trend_window_days} d, and {prometheus}"
    )


def check_disk(s: Session) -> list[Finding]:
    rows: list[Finding] = []
    expected = "df of the checkpoint directory"
    for host, result in s.each(commands.disk_free(s.cluster.disk_path)).items():
        if result.error:
            rows.append(judge.unreachable("disk", host, result.error))
            continue
        try:
            usage = parse_df(result.stdout)
        except ParseError as exc:
            rows.append(
                judge.command_failed("disk", host, "df", f"{exc} {result.stderr.strip()[:200]}", expected)
            )
            continue
        s.disk[host] = usage
        rows.append(judge.judge_disk(host, usage, s.thresholds))
        trend, why = _trend(s, host, usage)
        rows.append(judge.judge_trend(host, usage, trend, why, s.thresholds))
    return rows


def check_checkpoint(s: Session) -> list[Finding]:
    run = s.cluster.run
    if run is None:
        return [judge.no_run("checkpoint", CLUSTER, s.cluster.run_note)]
    newest = s.thresholds.checkpoints_to_verify
    results = s.each(
        lambda h: commands.checkpoint_verify(s.cluster.node(h).python, run.run_dir, newest),
        s.thresholds.checkpoint_timeout_s,
    )
    rows = []
    for host, result in results.items():
        if result.error:
            rows.append(judge.unreachable("checkpoint", host, result.error))
            continue
        try:
            report = parse_checkpoint_verdict(result.stdout)
        except ParseError as exc:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            why = lines[-1].strip() if lines else str(exc)
            if "No module named" in why:
                why += " (the node runs an older trainer: provision it again with site.yml)"
            rows.append(
                judge.command_failed(
                    "checkpoint", host, "checkpoint_verify", f"exit {result.rc}: {why}", "a JSON verdict"
                )
            )
            continue
        rows.append(judge.judge_checkpoint(host, report, s.now))
    return rows


def check_checkpoint_forecast(s: Session) -> list[Finding]:
    """The seed's evening "prediction for next day's checkpoint", per node that writes checkpoints."""
    run = s.cluster.run
    if run is None:
        return [judge.no_run("checkpoint.tomorrow", CLUSTER, s.cluster.run_note)]
    # Free space comes from the disk check; a schedule without it still needs the figures.
    rows = [] if s.disk else [r for r in check_disk(s) if r.status == "FAIL"]
    for host, result in s.each(
        lambda h: commands.checkpoint_list(s.cluster.node(h).python, run.run_dir)
    ).items():
        usage = s.disk.get(host)
        if result.error:
            rows.append(judge.unreachable("checkpoint.tomorrow", host, result.error))
            continue
        if usage is None:
            continue  # the disk check's row already says why it has no figures
        try:
            listing = parse_checkpoint_listing(result.stdout)
        except ParseError as exc:
            why = f"exit {result.rc}: {result.stderr.strip()[-200:] or exc}"
            rows.append(
                judge.command_failed(
                    "checkpoint.tomorrow", host, "checkpoint_verify --list", why, "a listing"
                )
            )
            continue
        trend, _ = _trend(s, host, usage)
        rows.append(judge.judge_checkpoint_outlook(host, listing, usage, trend, s.now))
    return rows


def check_network(s: Session) -> list[Finding]:
    nodes = s.cluster.nodes
    if len(nodes) < 2:
        return [
            Finding(CLUSTER, "network", "SKIP", "-", "node-to-node links", "a one-node phase has no links")
        ]
    rdzv = s.cluster.rendezvous
    runs = s.job_runs()
    asked: dict[str, list[commands.ProbeTarget]] = {}
    for node in nodes:
        asked[node.name] = [
            commands.ProbeTarget(other.name, other.address, other.ssh_port, "ssh")
            for other in nodes
            if other.name != node.name
        ]
        if runs and node.name != rdzv.host:
            asked[node.name].append(commands.ProbeTarget(rdzv.host, rdzv.address, rdzv.port, "rendezvous"))
    timeout = s.thresholds.ssh_timeout_s + 3 * s.thresholds.connect_timeout_s * len(nodes)
    results = s.each(
        lambda h: commands.connectivity(
            asked[h],
            s.thresholds.connect_timeout_s,
            s.cluster.node(h).python,
            listen_port=rdzv.port if runs and h == rdzv.host else None,
        ),
        timeout,
    )
    parsed = {}
    rows: dict[str, list[Finding]] = {}
    for host, result in results.items():
        if result.error:
            rows[host] = [judge.unreachable("network", host, result.error)]
            continue
        try:
            parsed[host] = parse_connectivity(result.stdout)
        except ParseError as exc:
            rows[host] = [
                judge.command_failed("network", host, "connect probe", str(exc), "one line per endpoint")
            ]
    # The rendezvous host's listeners explain a refused rendezvous connect from every other node.
    listeners = {host: report.listening for host, report in parsed.items()}
    for host, report in parsed.items():
        rows[host] = judge.judge_network(host, report, asked[host], s.thresholds, listeners)
    return [row for host in s.cluster.hosts for row in rows.get(host, [])]


def check_thermal(s: Session) -> list[Finding]:
    rows = []
    for host, result in s.each(commands.thermal()).items():
        if result.error:
            rows.append(judge.unreachable("thermal", host, result.error))
            continue
        rows.append(judge.judge_thermal(host, parse_thermal(result.stdout), s.thresholds))
    return rows


CHECK_FUNCTIONS: dict[str, Callable[[Session], list[Finding]]] = {
    "job": check_job,
    "ranks": check_ranks,
    "balance": check_balance,
    "alerts": check_alerts,
    "disk": check_disk,
    "checkpoint": check_checkpoint,
    "checkpoint_forecast": check_checkpoint_forecast,
    "network": check_network,
    "thermal": check_thermal,
}


def run_checks(s: Session, checks: list[str], progress: Callable[[str], None] | None = None) -> list[Finding]:
    rows: list[Finding] = []
    for name in checks:
        if progress:
            progress(name)
        rows.extend(CHECK_FUNCTIONS[name](s))
    return rows
