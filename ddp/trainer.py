"""The training loop: DDP step, measurements, sync checks, heartbeats, checkpoints, clean stop."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from ddp import rng
from ddp.checkpoint import CheckpointStore
from ddp.comm_probe import CommOverhead
from ddp.config import TrainerConfig
from ddp.control import StopRequests
from ddp.data import Batch, ShardedBatches
from ddp.dist import DistEnv
from ddp.distributed_checkpoint import DistributedCheckpointer
from ddp.metrics import TrainerMetrics
from ddp.schedule import build_scheduler
from ddp.status import RankStatus
from ddp.summary import RankStats, build_summary, load_previous, write_summary
from ddp.sync_check import check_in_sync
from ddp.sysstats import SystemSampler
from ddp.window import Decimated, StepWindow
from ddp.workloads import build_workload

log = logging.getLogger("ddp.trainer")


class NonFiniteLossError(RuntimeError):
    """nonfinite_policy=stop and a step produced NaN/inf: training must not continue on it."""


@dataclass
class Counters:
    """Job-wide cumulative counts; checkpointed so a resumed run keeps counting."""

    steps: int = 0
    nonfinite: int = 0
    skipped: int = 0
    sync_checks: int = 0
    sync_mismatches: int = 0
    checkpoints_saved: int = 0
    checkpoint_failures: int = 0


@dataclass
class Position:
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed


@dataclass
class RunResult:
    status: str  # completed | stopped
    steps: int
    summary_path: Path | None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    def __init__(self, cfg: TrainerConfig, env: DistEnv, metrics: TrainerMetrics, run_dir: Path) -> None:
        self.cfg = cfg
        self.env = env
        self.metrics = metrics
        self.run_dir = run_dir
        tcfg = cfg.training

        rng.seed_everything(tcfg.seed)
        self.workload = build_workload(cfg.workload, tcfg.seed)
        model = self.workload.model.to(env.device)
        self.model = DDP(
            model,
            device_ids=[env.device.index] if env.device.type == "cuda" else None,
            bucket_cap_mb=cfg.ddp.bucket_cap_mb,
            gradient_as_bucket_view=cfg.ddp.gradient_as_bucket_view,
            static_graph=cfg.ddp.static_graph,
            find_unused_parameters=cfg.ddp.find_unused_parameters,
        )
        if cfg.ddp.fp16_compression:
            self.model.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
        self.optimizer = self._build_optimizer(model)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, tcfg.max_steps)
        # Dropout/augmentation draws differ per rank; model init above was identical everywhere.
        rng.seed_everything(tcfg.seed + 1000 * (env.rank + 1))
        self.batches = ShardedBatches(
            self.workload.dataset, tcfg.batch_size, env.rank, env.world_size, tcfg.seed, tcfg.num_workers
        )
        self.checkpointer = DistributedCheckpointer(
            CheckpointStore(run_dir / cfg.checkpoint.dir, cfg.checkpoint.keep_last),
            env,
            cfg.checkpoint.writers,
        )
        self.counters = Counters()
        self.position = Position()
        self.stats = RankStats(env.rank, env.local_rank, env.node)
        self.window = StepWindow(cfg.metrics.window_steps)
        self.overhead = CommOverhead(cfg.metrics.comm_probe_every_steps)
        self.sampler = SystemSampler(env.device)
        self.stop = StopRequests(run_dir / "STOP")
        self.status = RankStatus(run_dir / "status", env, cfg.run.name)
        self.timeline = Decimated()
        self.incarnations: list[dict[str, Any]] = []
        self.checkpoint_info: dict[str, Any] = {
            "last_step": None,
            "last_file": None,
            "resumed_from_step": None,
        }
        self._last_checkpoint_time = time.time()
        self._heartbeat_loss: list[float] = []
        self.samples_per_step = tcfg.batch_size * cfg.ddp.grad_accum_steps
        self._iterations = 0

    def _build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        o = self.cfg.optimizer
        if o.name == "adamw":
            return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    # ----- state -----
    def _state(self) -> dict[str, Any]:
        return {
            "step": self.counters.steps,
            "position": vars(self.position).copy(),
            "counters": vars(self.counters).copy(),
            "model": self.model.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "world_size": self.env.world_size,
            "run": self.cfg.run.name,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.counters = Counters(**state["counters"])
        self.position = Position(**state["position"])
        rng_states = state.get("rng") or []
        if state["world_size"] == self.env.world_size and len(rng_states) == self.env.world_size:
            rng.restore(rng_states[self.env.rank])
        else:
            # A different world size (fallback phase): per-rank streams cannot map one to one.
            rng.seed_everything(self.cfg.training.seed + 1000 * (self.env.rank + 1) + self.counters.steps)
        self.checkpoint_info["resumed_from_step"] = state["step"]

    # ----- data -----
    def _micro_batches(self) -> Iterator[Batch]:
        while True:
            for batch in self.batches.epoch(self.position.epoch, self.position.batch_in_epoch):
                self.position.batch_in_epoch += 1
                yield batch
            self.position.epoch += 1
            self.position.batch_in_epoch = 0

    # ----- one step -----
    def _forward_backward(self, batch: Batch, scale: float) -> torch.Tensor:
        inputs, targets = (t.to(self.env.device, non_blocking=True) for t in batch)
        loss = self.workload.loss_fn(self.model(inputs), targets) * scale
        loss.backward()
        return loss.detach()

    def _probe_nosync(self, batch: Batch, scale: float) -> float:
        _device_sync(self.env.device)
        start = time.perf_counter()
        with self.model.no_sync():
            self._forward_backward(batch, scale)
        _device_sync(self.env.device)
        elapsed = time.perf_counter() - start
        self.optimizer.zero_grad(set_to_none=True)
        return elapsed

    def _grad_norm(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.cfg.optimizer.grad_clip_norm
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        return float(norm)

    def _step(self, batches: Iterator[Batch]) -> tuple[float, float]:
        """One optimizer step (grad_accum micro-batches). Returns (loss, seconds)."""
        accum = self.cfg.ddp.grad_accum_steps
        scale = 1.0 / accum
        micro = [next(batches) for _ in range(accum)]
        step_index = self.counters.steps + 1
        # DDP's static_graph records the graph on its first iteration, which must be a synced one
        # (no_sync there trips an internal assert in torch 2.13). Syncing every micro-batch of that one
        # step gives the same averaged gradient, only with more communication.
        first_iteration = self._iterations == 0
        self._iterations += 1
        start = time.perf_counter()
        probe_seconds = nosync = 0.0
        if self.overhead.due(step_index) and not first_iteration:
            nosync = self._probe_nosync(micro[0], scale)
            probe_seconds = time.perf_counter() - start
        loss_total = torch.zeros((), device=self.env.device)
        sync_fwd_bwd = 0.0
        for i, batch in enumerate(micro):
            last = i == accum - 1
            # Only the last micro-batch all-reduces: the others accumulate locally under no_sync().
            ctx = contextlib.nullcontext() if last or first_iteration else self.model.no_sync()
            t0 = time.perf_counter()
            with ctx:
                loss_total += self._forward_backward(batch, scale)
            if last:
                _device_sync(self.env.device)
                sync_fwd_bwd = time.perf_counter() - t0
        loss = float(loss_total)
        # After the all-reduce every rank holds the same gradients, so this verdict is the same on all
        # ranks (a NaN loss on one rank poisons everyone's averaged gradients) and they act in lockstep.
        grad_norm = self._grad_norm()
        if not math.isfinite(grad_norm) or not math.isfinite(loss):
            self._on_nonfinite(step_index, loss, grad_norm)
        else:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.counters.steps = step_index
        seconds = time.perf_counter() - start
        if probe_seconds:
            self.overhead.add(sync_fwd_bwd, nosync, seconds - probe_seconds)
        return loss, seconds

    def _on_nonfinite(self, step: int, loss: float, grad_norm: float) -> None:
        self.counters.nonfinite += 1
        self.metrics.nonfinite_loss.inc()
        what = f"non-finite loss or gradients at step {step} (loss={loss}, grad_norm={grad_norm})"
        if self.cfg.training.nonfinite_policy == "stop" or math.isfinite(grad_norm):
            # A finite global gradient with a NaN local loss would make ranks disagree on skipping: stop.
            raise NonFiniteLossError(f"{what}; training.nonfinite_policy=stop, so training stops here")
        self.counters.skipped += 1
        self.metrics.skipped_steps.inc()
        log.warning(
            "%s; skipping the update (training.nonfinite_policy=skip)",
            what,
            extra={"trainer": {"step": step, "event": "nonfinite_skip"}},
        )

    # ----- periodic work -----
    def _record(self, loss: float, seconds: float) -> None:
        m, n = self.metrics, self.samples_per_step
        self.window.add(seconds, n)
        self.stats.add_step(seconds, n)
        m.steps.inc()
        m.samples.inc(n)
        m.step_duration.observe(seconds)
        if math.isfinite(loss):  # skipped non-finite steps are counted, not averaged into the loss
            self.stats.last_loss = loss
            self._heartbeat_loss.append(loss)
            m.loss.set(loss)
        m.step.set(self.counters.steps)
        m.epoch.set(self.position.epoch)
        m.samples_per_second.set(self.window.samples_per_second())
        m.throughput_stddev.set(self.window.rate_stddev(scale=self.env.world_size))
        estimate = self.overhead.estimate()
        if estimate is not None:
            m.comm_overhead.set(estimate.ratio)
            m.sync_step_seconds.set(estimate.sync_seconds)
            m.nosync_step_seconds.set(estimate.nosync_seconds)
            self.stats.comm_overhead_ratio = estimate.ratio
            self.stats.sync_step_seconds = estimate.sync_seconds
            self.stats.nosync_step_seconds = estimate.nosync_seconds

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

    def _sync_check(self) -> None:
        result = check_in_sync(self.model.module, self.env.device)
        self.counters.sync_checks += 1
        self.metrics.sync_checks.inc()
        if not result.agree:
            self.counters.sync_mismatches += 1
            self.metrics.sync_mismatches.inc()
            log.error(
                "ranks disagree on the parameters at step %d (relative spread %.3g)",
                self.counters.steps,
                result.max_relative_spread,
                extra={
                    "trainer": {
                        "step": self.counters.steps,
                        "event": "grad_sync_mismatch",
                        "checksums": result.checksums,
                    }
                },
            )
        c = self.counters
        self.metrics.sync_accuracy.set((c.sync_checks - c.sync_mismatches) / c.sync_checks)

    def _checkpoint_due_by_time(self) -> bool:
        minutes = self.cfg.checkpoint.every_minutes
        return minutes is not None and time.time() - self._last_checkpoint_time >= minutes * 60

    def _heartbeat(self) -> tuple[bool, bool]:
        """All-reduce rate, loss and requests: returns (stop, checkpoint_due) agreed by all ranks."""
        local = torch.tensor(
            [
                self.window.samples_per_second(),
                sum(self._heartbeat_loss),
                len(self._heartbeat_loss),
                float(self.stop.requested()),
                float(self.env.is_main and self._checkpoint_due_by_time()),
            ],
            dtype=torch.float64,
            device=self.env.device,
        )
        self._heartbeat_loss.clear()
        dist.all_reduce(local)
        rate, loss_sum, loss_count, stop, ckpt = local.tolist()
        mean_loss = loss_sum / loss_count if loss_count else math.nan
        sigma = self.window.rate_stddev(scale=self.env.world_size)
        self.metrics.global_samples_per_second.set(rate)
        self.timeline.add(time.time(), self.counters.steps, rate, mean_loss, sigma)
        self._sample_system()
        self._update_checkpoint_interval()
        step = self.counters.steps
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
                    "epoch": self.position.epoch,
                    "loss": mean_loss,
                    "global_samples_per_second": rate,
                    "throughput_stddev": sigma,
                    "comm_overhead_ratio": self.stats.comm_overhead_ratio,
                    "event": "heartbeat",
                }
            },
        )
        return stop > 0, ckpt > 0

    def _update_checkpoint_interval(self) -> None:
        c = self.cfg.checkpoint
        if c.every_minutes is not None:
            self.metrics.checkpoint_interval.set(c.every_minutes * 60)
        elif c.every_steps is not None:
            self.metrics.checkpoint_interval.set(c.every_steps * self.window.mean_duration())

    def _checkpoint(self, status: str = "running", reason: str | None = None) -> None:
        if not self.cfg.checkpoint.enabled:
            return
        step = self.counters.steps
        started = time.perf_counter()
        outcome, digests = self.checkpointer.save(self._state(), step, self.stats.digest())
        now = time.time()
        self._last_checkpoint_time = now
        if outcome.entry is not None:
            self.counters.checkpoints_saved += 1
            self.metrics.checkpoints_saved.inc()
            self.metrics.mark_checkpoint(now)
            self.checkpoint_info.update(
                last_step=step, last_file=str(self.checkpointer.store.directory / outcome.entry.file)
            )
            log.info(
                "checkpoint step %d written in %.2fs",
                step,
                time.perf_counter() - started,
                extra={"trainer": {"step": step, "event": "checkpoint", "file": outcome.entry.file}},
            )
        elif outcome.error is not None:
            self.counters.checkpoint_failures += 1
            self.metrics.checkpoint_failures.inc()
        else:
            self.metrics.mark_checkpoint(now)  # non-writers: the collective round completed
        if self.env.is_main:
            self._write_summary(status, reason, digests)

    def _finish(self, status: str, reason: str | None) -> None:
        """Final checkpoint (which also writes the summary) or, with checkpoints off, just the summary."""
        if self.cfg.checkpoint.enabled:
            self._checkpoint(status, reason)
            return
        digests: list[Any] = [None] * self.env.world_size
        dist.all_gather_object(digests, self.stats.digest())
        if self.env.is_main:
            self._write_summary(status, reason, digests)

    def _write_summary(self, status: str, reason: str | None, digests: list[dict[str, Any]]) -> Path:
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
        return write_summary(self.run_dir, summary)

    def _write_status(self, state: str, loss: float | None = None, **extra: Any) -> None:
        self.status.write(
            state,
            step=self.counters.steps,
            max_steps=self.cfg.training.max_steps,
            epoch=self.position.epoch,
            loss=loss,
            samples_per_second=self.window.samples_per_second(),
            last_checkpoint_step=self.checkpoint_info["last_step"],
            **extra,
        )

    # ----- the run -----
    def _start(self) -> None:
        if self.cfg.checkpoint.enabled and self.cfg.checkpoint.resume:
            state = self.checkpointer.resume()
            if state is not None:
                self._restore(state)
                self.metrics.mark_checkpoint(time.time())
                self.checkpoint_info["last_step"] = state["step"]
        previous = load_previous(self.run_dir) if self.env.is_main else None
        if previous and self.checkpoint_info["resumed_from_step"] is not None:
            # Same run, new incarnation (torchrun restart or relaunch): keep the history.
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

    def run(self) -> RunResult:
        cfg = self.cfg
        self.stop.install_signal_handlers()
        self._start()
        log.info(
            "training %s: world size %d (%d nodes x %d), backend %s, %d parameters, from step %d",
            self.workload.description,
            self.env.world_size,
            self.env.nodes,
            self.env.local_world_size,
            self.env.backend,
            self.workload.parameter_count,
            self.counters.steps,
            extra={"trainer": {"event": "start", "step": self.counters.steps}},
        )
        self._write_status("running")
        batches = self._micro_batches()
        m = cfg.metrics
        ck = cfg.checkpoint
        status, reason = "completed", None
        loss: float | None = None
        try:
            while self.counters.steps < cfg.training.max_steps:
                loss, seconds = self._step(batches)
                self._record(loss, seconds)
                step = self.counters.steps
                if step % m.sync_check_every_steps == 0:
                    self._sync_check()
                stop = ckpt_now = False
                if step % cfg.training.log_every_steps == 0 or step == cfg.training.max_steps:
                    stop, ckpt_now = self._heartbeat()
                if step % m.status_every_steps == 0:
                    self._write_status("running", loss)
                if stop:
                    status, reason = "stopped", f"stop requested ({self.stop.reason or 'by another rank'})"
                    break
                if ck.every_steps is not None and step % ck.every_steps == 0:
                    ckpt_now = True
                if ckpt_now and step < cfg.training.max_steps:
                    self._checkpoint()
        except NonFiniteLossError as exc:
            self._write_status("failed", loss, error=str(exc))
            if self.env.is_main:
                self._write_summary("failed", str(exc), [self.stats.digest()])
            raise
        if self.counters.sync_checks == 0:
            self._sync_check()  # short runs still get one cross-rank comparison
        self._finish(status, reason)
        self._write_status(status, loss)
        log.info(
            "%s at step %d",
            status,
            self.counters.steps,
            extra={"trainer": {"event": status, "step": self.counters.steps}},
        )
        return RunResult(
            status, self.counters.steps, self.run_dir / "summary.json" if self.env.is_main else None, reason
        )
