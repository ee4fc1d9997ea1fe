"""What a rank reports while it trains: Prometheus series, ECS log records, its status file and (rank 0)
summary.json. The loop hands it what happened (a step, a non-finite step, a sync check, a heartbeat, a
checkpoint, the end); this module turns that into figures.

It also keeps the history a summary carries across restarts of the worker group: the heartbeat timeline
and one incarnation per start.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
import torch.distributed as dist

from ddp.best_effort import BestEffortWrites
from ddp.comm_probe import CommOverhead
from ddp.config import TrainerConfig
from ddp.dist import DistEnv
from ddp.distributed_checkpoint import SaveOutcome
from ddp.latest_writer import LatestWriter
from ddp.links import LinkProber, LinkReading, peer_endpoints
from ddp.logs import on_log_write_error
from ddp.metrics import TrainerMetrics
from ddp.plain_collectives import all_gather_json
from ddp.progress import Counters, Position
from ddp.status import RankStatus
from ddp.stragglers import is_straggler, ratios_to_median
from ddp.summary import SUMMARY_FILE, RankStats, build_summary, load_previous, write_summary
from ddp.sync_check import SyncCheck
from ddp.sysstats import SystemSampler
from ddp.window import Decimated, SplitWindow, StepWindow
from ddp.workloads.base import Workload

# The trainer's records keep its logger name wherever they are written from: Filebeat files them under
# the logs-ddp.trainer-* data stream.
log = logging.getLogger("ddp.trainer")


class AllReduce(Protocol):
    """Sums a tensor across ranks in place (torch.distributed.all_reduce in a job), begun: the work it
    returns is waited for before the tensor is read."""

    def __call__(self, tensor: torch.Tensor, *, async_op: bool) -> Any: ...


# The heartbeat's figures before the ranks' compute vector (one slot per rank).
_HEARTBEAT_FIELDS = 7


@dataclass(frozen=True)
class ProbeTiming:
    """One communication probe (ddp/comm_probe.py) taken during a step."""

    sync_fwd_bwd: float
    nosync_fwd_bwd: float
    step_seconds: float  # the step without the probe's own extra pass


@dataclass(frozen=True)
class StepResult:
    loss: float  # NaN/inf on a skipped step
    seconds: float
    probe: ProbeTiming | None = None
    # From this rank's last gradient bucket to the all-reduce's end (ddp/collective_clock.py); None when
    # the step communicated nothing.
    collective_wait: float | None = None

    @property
    def own_seconds(self) -> float:
        """The step without a probe's extra pass."""
        return self.probe.step_seconds if self.probe is not None else self.seconds


class Agreement(NamedTuple):
    """What every rank decided together at a heartbeat."""

    stop: bool
    checkpoint: bool
    by_signal: bool = False  # some rank's request was a signal (the stop's cause, ddp.control)
    nonfinite: bool = False  # some rank's loss was NaN or inf since the last heartbeat


def either(first: Agreement | None, second: Agreement) -> Agreement:
    """Two heartbeats read at one step (the one begun a step ago and the last step's): a request in
    either binds."""
    if first is None:
        return second
    return Agreement(*(a or b for a, b in zip(first, second, strict=True)))


class _Beat(NamedTuple):
    """A heartbeat in flight: its all-reduce and what it says of the step it was begun at."""

    values: torch.Tensor
    work: Any  # the all-reduce's work (torch.distributed.Work)
    step: int
    epoch: int
    when: float
    sigma: float
    split: tuple[float, float] | None


class Telemetry:
    def __init__(
        self,
        cfg: TrainerConfig,
        env: DistEnv,
        metrics: TrainerMetrics,
        run_dir: Path,
        counters: Counters,
        position: Position,
        workload: Workload,
        all_reduce: AllReduce = dist.all_reduce,
    ) -> None:
        self.cfg = cfg
        self.env = env
        self.metrics = metrics
        self.run_dir = run_dir
        # Shared with the trainer, which advances them; a resume loads them in place (ddp/progress.py).
        self.counters = counters
        self.position = position
        self.workload = workload
        self._all_reduce = all_reduce
        self.samples_per_step = cfg.training.batch_size * cfg.ddp.grad_accum_steps
        self.stats = RankStats(env.rank, env.local_rank, env.node)
        self.window = StepWindow(cfg.metrics.window_steps)
        self.split = SplitWindow(cfg.metrics.window_steps)
        self._straggling = False
        self._compute_ratio: float | None = None
        self.overhead = CommOverhead(cfg.metrics.comm_probe_every_steps)
        self.sampler = SystemSampler(env.device)
        self.status = RankStatus(run_dir / "status", env, cfg.run.name)
        self.status_writer = LatestWriter("status-writer")
        # A full or read-only disk must not stop training over a report about it (ddp/best_effort.py).
        self.writes = BestEffortWrites(metrics.count_write_error)
        on_log_write_error(lambda _error: metrics.count_write_error("log"))
        self.timeline = Decimated()
        self.incarnations: list[dict[str, Any]] = []
        self.checkpoint_info: dict[str, Any] = {
            "last_step": None,
            "last_file": None,
            "resumed_from_step": None,
        }
        self._heartbeat_loss: list[float] = []
        self._beat: _Beat | None = None
        self.links: LinkProber | None = None
        self._link_readings: list[LinkReading] = []
        self._slow_links: set[str] = set()
        # Worked out when Prometheus scrapes, not every step: the sigma of a window of rates costs a tenth
        # of a millisecond, a third of a percent of a 30 ms step; the window's rate, the position and
        # (from the first step that measures them) the compute/wait means likewise.
        metrics.throughput_stddev.set_function(lambda: self.window.rate_stddev(scale=env.world_size))
        metrics.samples_per_second.set_function(self.window.samples_per_second)
        metrics.step.set_function(lambda: self.counters.steps)
        metrics.epoch.set_function(lambda: self.position.epoch)
        self._split_published = False

    # ----- cadence -----
    def probe_due(self, step: int) -> bool:
        return self.overhead.due(step)

    def heartbeat_due(self, step: int) -> bool:
        # The last step always beats, so the summary's timeline ends where the run does.
        return step % self.cfg.training.log_every_steps == 0 or step == self.cfg.training.max_steps

    # ----- start -----
    def on_resume(self, step: int) -> None:
        """The group resumed from the checkpoint of `step`."""
        self.metrics.mark_checkpoint(time.time())
        self.checkpoint_info.update(last_step=step, resumed_from_step=step)

    def start(self) -> None:
        """Record this incarnation (carrying the run's history over when it resumed) and announce it."""
        previous = load_previous(self.run_dir) if self.env.is_main else None
        if previous and self.checkpoint_info["resumed_from_step"] is not None:
            # Same run, new incarnation (torchrun restart or relaunch): keep the history up to the step
            # resumed from; heartbeats after it are replayed by this incarnation.
            self.timeline.extend_from(
                [p for p in previous.get("timeline", []) if p[1] <= self.counters.steps]
            )
            self.incarnations.extend(previous.get("incarnations", []))
        self.incarnations.append(
            {
                "restart_count": self.env.restart_count,
                "started_at": time.time(),
                "world_size": self.env.world_size,
                "resumed_from_step": self.checkpoint_info["resumed_from_step"],
            }
        )
        self.metrics.step.set(self.counters.steps)
        log.info(
            "training %s: world size %d (%d nodes x %d), backend %s, %d parameters, from step %d",
            self.workload.description,
            self.env.world_size,
            self.env.nodes,
            self.env.local_world_size,
            self.env.backend,
            self.workload.parameter_count,
            self.counters.steps,
            # The intra-op threads it computes with: what the launcher asked for (ddp/cpu_threads.py).
            extra={
                "trainer": {"event": "start", "step": self.counters.steps, "threads": torch.get_num_threads()}
            },
        )
        self._start_link_probes()
        self.write_status("running")

    def _start_link_probes(self) -> None:
        """Collective when the job spans nodes: every rank shares its metrics endpoint, then each node's
        local rank 0 probes the other nodes' (ddp/links.py)."""
        every = self.cfg.metrics.link_probe_every_s
        if every <= 0 or self.env.nodes < 2 or not self.cfg.metrics.enabled:
            return
        own = self.metrics.endpoint
        mine = {"node": self.env.node, "local_rank": self.env.local_rank, "address": own and own[0]}
        endpoints = all_gather_json({**mine, "port": own and own[1]}, self.env.device)
        if self.env.local_rank == 0:
            peers = peer_endpoints(endpoints, self.env.node)
            self.links = LinkProber(peers, every, self.judge_links)
            self.links.start()

    # ----- every step -----
    def on_step(self, result: StepResult) -> None:
        if result.probe is not None:
            p = result.probe
            self.overhead.add(p.sync_fwd_bwd, p.nosync_fwd_bwd, p.step_seconds)
            self._publish_overhead()  # the estimate changes only with a new probe
        m, n, loss = self.metrics, self.samples_per_step, result.loss
        self.window.add(result.seconds, n)
        self.stats.add_step(result.seconds, n)
        m.steps.inc()
        m.samples.inc(n)
        m.step_duration.observe(result.seconds)
        if math.isfinite(loss):  # skipped non-finite steps are counted, not averaged into the loss
            self.stats.last_loss = loss
            self._heartbeat_loss.append(loss)
            m.loss.set(loss)
        if result.collective_wait is not None:
            compute = max(0.0, result.own_seconds - result.collective_wait)
            self.split.add(compute, result.collective_wait)
            self.stats.add_split(compute, result.collective_wait)
            if not self._split_published:
                self._split_published = True
                m.compute_seconds.set_function(lambda: self._split_mean(0))
                m.collective_wait_seconds.set_function(lambda: self._split_mean(1))

    def _split_mean(self, which: int) -> float:
        means = self.split.means()
        return means[which] if means else math.nan

    def _publish_overhead(self) -> None:
        estimate = self.overhead.estimate()
        if estimate is None:
            return
        m = self.metrics
        m.comm_overhead.set(estimate.ratio)
        m.sync_step_seconds.set(estimate.sync_seconds)
        m.nosync_step_seconds.set(estimate.nosync_seconds)
        self.stats.comm_overhead_ratio = estimate.ratio
        self.stats.sync_step_seconds = estimate.sync_seconds
        self.stats.nosync_step_seconds = estimate.nosync_seconds

    def on_sync_check(self, result: SyncCheck) -> None:
        c = self.counters
        c.sync_checks += 1
        self.metrics.sync_checks.inc()
        if not result.agree:
            c.sync_mismatches += 1
            self.metrics.sync_mismatches.inc()
            log.error(
                "ranks disagree on the parameters at step %d (relative spread %.3g)",
                result.step,
                result.max_relative_spread,
                extra={
                    "trainer": {
                        "step": result.step,
                        "event": "grad_sync_mismatch",
                        "checksums": result.checksums,
                    }
                },
            )
        self.metrics.sync_accuracy.set((c.sync_checks - c.sync_mismatches) / c.sync_checks)

    def on_nonfinite(self, step: int, what: str, skipped: bool) -> None:
        """Step `step` produced NaN/inf (`what` says which); `skipped` when its update was dropped and
        training goes on (otherwise the trainer stops: at once, or with nonfinite_policy=stop and no
        clipping at the ranks' next heartbeat)."""
        self.counters.nonfinite += 1
        self.metrics.nonfinite_loss.inc()
        if not skipped:
            return
        self.counters.skipped += 1
        self.metrics.skipped_steps.inc()
        log.warning(
            "%s; skipping the update (training.nonfinite_policy=skip)",
            what,
            extra={"trainer": {"step": step, "event": "nonfinite_skip"}},
        )

    # ----- heartbeat -----
    def heartbeat(
        self, stop_requested: bool, checkpoint_due: bool, by_signal: bool = False, nonfinite: bool = False
    ) -> Agreement:
        """Collective, begun and read at once (the run's last step, which has no next one to read it at)."""
        self.start_heartbeat(stop_requested, checkpoint_due, by_signal, nonfinite)
        agreed = self.finish_heartbeat()
        assert agreed is not None
        return agreed

    def start_heartbeat(
        self, stop_requested: bool, checkpoint_due: bool, by_signal: bool = False, nonfinite: bool = False
    ) -> None:
        """Collective, begun: all-reduce rate, loss and this rank's requests; a request of any rank binds all.
        `by_signal`: this rank's stop request came from a signal, so every rank learns the stop's cause.
        `nonfinite`: this rank saw a NaN or inf loss, so every rank learns of it.
        The all-reduce runs while the next step computes and `finish_heartbeat` reads it after that step:
        waited for at once, it cost each heartbeat the ranks' skew (11 ms of a 64 ms step at 4 ranks on
        2 cores, 0.9 % of the run at one heartbeat in 20 steps; begun and read a step later, 0.8-3.1 ms)."""
        assert self._beat is None, "a heartbeat is still in flight"
        split = self.split.means()
        computes = [0.0] * self.env.world_size  # each rank fills its own slot; the sum gathers them all
        computes[self.env.rank] = split[0] if split else 0.0
        local = torch.tensor(
            [
                self.window.samples_per_second(),
                sum(self._heartbeat_loss),
                len(self._heartbeat_loss),
                float(stop_requested),
                float(checkpoint_due),
                float(by_signal),
                float(nonfinite),
                *computes,
            ],
            dtype=torch.float64,
            device=self.env.device,
        )
        self._heartbeat_loss.clear()
        work = self._all_reduce(local, async_op=True)
        self._beat = _Beat(
            local,
            work,
            self.counters.steps,
            self.position.epoch,
            time.time(),
            self.window.rate_stddev(scale=self.env.world_size),
            split,
        )

    def finish_heartbeat(self) -> Agreement | None:
        """The heartbeat begun last, read (None when none is in flight): figures for the step it was begun
        at, and what every rank decided together."""
        beat, self._beat = self._beat, None
        if beat is None:
            return None
        beat.work.wait()
        figures = beat.values.tolist()
        rate, loss_sum, loss_count, stop, ckpt, signalled, nonfinite_ranks = figures[:_HEARTBEAT_FIELDS]
        self._judge_compute(figures[_HEARTBEAT_FIELDS:], beat.step)
        mean_loss = loss_sum / loss_count if loss_count else math.nan
        sigma, split, step = beat.sigma, beat.split, beat.step
        self.metrics.global_samples_per_second.set(rate)
        self.timeline.add(beat.when, step, rate, mean_loss, sigma)
        self._sample_system()
        self._update_checkpoint_interval()
        log.info(
            "step %d/%d loss %.4f %.1f samples/s (job) sigma %.1f",
            step,
            self.cfg.training.max_steps,
            mean_loss,
            rate,
            sigma,
            extra={
                "trainer": {
                    "step": step,
                    "epoch": beat.epoch,
                    "loss": mean_loss,
                    "global_samples_per_second": rate,
                    "throughput_stddev": sigma,
                    "comm_overhead_ratio": self.stats.comm_overhead_ratio,
                    "compute_seconds": split[0] if split else None,
                    "collective_wait_seconds": split[1] if split else None,
                    "compute_ratio_to_median": self._compute_ratio,
                    "event": "heartbeat",
                }
            },
        )
        return Agreement(stop > 0, ckpt > 0, signalled > 0, nonfinite_ranks > 0)

    def _judge_compute(self, computes: list[float], step: int) -> None:
        """This rank's compute against the median rank's; a rank that turns straggler (or recovers) says
        so once, naming itself and its node, so the log shows where a slow job is slow."""
        ratio = ratios_to_median(computes)[self.env.rank]
        if ratio is None:
            return
        self._compute_ratio = ratio
        margin = self.cfg.metrics.straggler_margin
        straggling = is_straggler(ratio, margin)
        self.metrics.compute_ratio_to_median.set(ratio)
        self.metrics.straggler.set(float(straggling))
        self.stats.compute_ratio_to_median_max = max(self.stats.compute_ratio_to_median_max or 0.0, ratio)
        if straggling != self._straggling:
            log.warning(
                "rank %d on node %s %s: its compute per step is %.2fx the median rank's (margin %.0f%%)",
                self.env.rank,
                self.env.node,
                "is a straggler" if straggling else "is no longer a straggler",
                ratio,
                100 * margin,
                extra={
                    "trainer": {
                        "step": step,
                        "event": "straggler" if straggling else "straggler_recovered",
                        "compute_ratio_to_median": ratio,
                    }
                },
            )
        self._straggling = straggling

    def judge_links(self, readings: list[LinkReading]) -> None:
        """On the prober's thread. A link that turns slow (or recovers) is logged once, naming both nodes.
        While this rank is itself a straggler it judges no link: its node's fault is its compute, and a
        starved host answers handshakes late too."""
        factor = self.cfg.metrics.link_slow_factor
        extra = self.cfg.metrics.link_slow_extra_s
        self._link_readings = readings
        for reading in readings:
            slow = reading.slow(factor, extra) and not self._straggling
            self.metrics.set_link(reading.peer, reading.rtt_s, slow)
            if slow == (reading.peer in self._slow_links):
                continue
            if slow:
                self._slow_links.add(reading.peer)
                self.stats.slow_link_events += 1
            else:
                self._slow_links.discard(reading.peer)
            rtt_ms, best_ms = 1000 * (reading.rtt_s or 0.0), 1000 * (reading.best_s or 0.0)
            why = (
                f" (rank {self.env.rank}'s own compute is within the straggler margin: the network, not "
                "this node's compute)"
                if slow
                else ""
            )
            log.warning(
                "link %s <-> %s %s: round trip %.2f ms, best %.2f ms%s",
                self.env.node,
                reading.peer,
                "is slow" if slow else "is no longer slow",
                rtt_ms,
                best_ms,
                why,
                extra={
                    "trainer": {
                        "step": self.counters.steps,
                        "event": "slow_link" if slow else "slow_link_recovered",
                        "peer": reading.peer,
                        "link_rtt_seconds": reading.rtt_s,
                        "link_best_seconds": reading.best_s,
                    }
                },
            )

    def _links_status(self) -> list[dict[str, Any]] | None:
        if self.links is None:
            return None
        return [
            {
                "peer": r.peer,
                "rtt_seconds": r.rtt_s,
                "best_seconds": r.best_s,
                "slow": r.peer in self._slow_links,
                "error": r.error,
            }
            for r in self._link_readings
        ]

    def _stop_link_probes(self) -> None:
        if self.links is not None:
            self.links.stop()

    def _sample_system(self) -> None:
        sample = self.sampler.sample()
        m, s = self.metrics, self.stats
        m.cpu_utilisation.set(sample.cpu_utilisation_ratio)
        m.memory_pressure.set(sample.memory_pressure_ratio)
        s.cpu_utilisation.append(sample.cpu_utilisation_ratio)
        s.memory_pressure_max = max(s.memory_pressure_max, sample.memory_pressure_ratio)
        if sample.gpu_utilisation_ratio is not None:
            m.gpu_utilisation.set(sample.gpu_utilisation_ratio)
            s.gpu_utilisation.append(sample.gpu_utilisation_ratio)
        if sample.gpu_memory_pressure_ratio is not None:
            m.gpu_memory_pressure.set(sample.gpu_memory_pressure_ratio)
            s.gpu_memory_pressure_max = max(
                s.gpu_memory_pressure_max or 0.0, sample.gpu_memory_pressure_ratio
            )
        if len(s.cpu_utilisation) > 4096:
            del s.cpu_utilisation[::2]

    def _update_checkpoint_interval(self) -> None:
        c = self.cfg.checkpoint
        if c.every_minutes is not None:
            self.metrics.checkpoint_interval.set(c.every_minutes * 60)
        elif c.every_steps is not None:
            self.metrics.checkpoint_interval.set(c.every_steps * self.window.mean_duration())

    # ----- checkpoints -----
    def digest(self) -> dict[str, Any]:
        """This rank's figures, as rank 0 gathers them for the summary."""
        return self.stats.digest()

    def on_checkpoint(self, outcome: SaveOutcome, directory: Path, seconds: float, when: float) -> None:
        """Count one collective checkpoint round that ended at unix time `when` and took `seconds`."""
        step = self.counters.steps
        if outcome.entry is not None:
            self.counters.checkpoints_saved += 1
            self.metrics.checkpoints_saved.inc()
            self.metrics.mark_checkpoint(when)
            self.checkpoint_info.update(last_step=step, last_file=str(directory / outcome.entry.file))
            log.info(
                "checkpoint step %d written in %.2fs",
                step,
                seconds,
                extra={"trainer": {"step": step, "event": "checkpoint", "file": outcome.entry.file}},
            )
        elif outcome.error is not None:
            self.counters.checkpoint_failures += 1
            self.metrics.checkpoint_failures.inc()
        else:
            self.metrics.mark_checkpoint(when)  # non-writers: the collective round completed

    # ----- summary and status -----
    @property
    def summary_path(self) -> Path | None:
        """Where rank 0 writes the summary; other ranks write none."""
        return self.run_dir / SUMMARY_FILE if self.env.is_main else None

    def write_summary(self, status: str, reason: str | None, digests: list[dict[str, Any]]) -> Path | None:
        """The summary's path, or None when the disk refused it (counted, logged, training goes on)."""
        summary = build_summary(
            header={
                "run": self.cfg.run.name,
                "config": self.cfg.model_dump(mode="json"),
                "world_size": self.env.world_size,
                "nodes": self.env.nodes,
                "nproc_per_node": self.env.local_world_size,
                "backend": self.env.backend,
                "device": self.env.device.type,
                "workload": self.workload.description,
                "parameters": self.workload.parameter_count,
                "samples_per_step": self.samples_per_step * self.env.world_size,
            },
            status=status,
            reason=reason,
            ranks=digests,
            timeline=self.timeline,
            counters=vars(self.counters),
            checkpoints={
                **self.checkpoint_info,
                "saved": self.counters.checkpoints_saved,
                "failures": self.counters.checkpoint_failures,
            },
            incarnations=self.incarnations,
        )
        path = self.run_dir / SUMMARY_FILE
        return self.writes.attempt("summary", path, lambda: write_summary(self.run_dir, summary))

    def gather_summary(self, status: str, reason: str | None) -> None:
        """Collective: every rank's digest to rank 0, which writes the summary (no checkpoint to ride on)."""
        digests = all_gather_json(self.digest(), self.env.device)
        if self.env.is_main:
            self.write_summary(status, reason, digests)

    def write_status(
        self, state: str, loss: float | None = None, *, final: bool = False, later: bool = False, **extra: Any
    ) -> None:
        """`later`: written by the status thread, off the step (ddp/latest_writer.py); otherwise on disk
        before this returns. `final`: this process's last word (ddp/status.py)."""
        split = self.split.means()
        fields = {
            "step": self.counters.steps,
            "max_steps": self.cfg.training.max_steps,
            "epoch": self.position.epoch,
            "loss": loss,
            "samples_per_second": self.window.samples_per_second(),
            # With the interval between status writes, how long a stall must last before it counts as a
            # hang (tooling doctor).
            "step_seconds": self.window.mean_duration() if len(self.window) else None,
            "status_every_steps": self.cfg.metrics.status_every_steps,
            "compute_seconds": split[0] if split else None,
            "collective_wait_seconds": split[1] if split else None,
            "compute_ratio_to_median": self._compute_ratio,
            "straggler": self._straggling,
            "links": self._links_status(),
            "last_checkpoint_step": self.checkpoint_info["last_step"],
            **extra,
        }

        def write() -> None:
            self.writes.attempt(
                "status", self.status.path, lambda: self.status.write(state, final=final, **fields)
            )

        if later:
            self.status_writer.later(write)
        else:
            self.status_writer.now(write)

    # ----- the end -----
    def failed(self, error: str, loss: float | None) -> None:
        """No collective here: a failing rank cannot count on the others reaching this point, so rank 0
        summarises with its own figures."""
        self._stop_link_probes()
        self.write_status("failed", loss, error=error)
        self.status_writer.close()
        if self.env.is_main:
            self.write_summary("failed", error, [self.digest()])

    def finished(self, status: str, loss: float | None) -> None:
        self._stop_link_probes()
        self.write_status(status, loss)
        self.status_writer.close()
        log.info(
            "%s at step %d",
            status,
            self.counters.steps,
            extra={"trainer": {"event": status, "step": self.counters.steps}},
        )
