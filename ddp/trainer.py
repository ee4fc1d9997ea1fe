"""The training loop: data, DDP forward/backward, optimizer, sync checks, checkpoints, clean stop.

Everything the loop reports (metrics, log records, status files, the summary) goes through
`ddp.telemetry.Telemetry`."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Generator, Iterator
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
from ddp.collective_clock import CollectiveClock
from ddp.comm_probe import all_reduce_gradients
from ddp.config import TrainerConfig
from ddp.control import StopRequests, stop_reason
from ddp.data import Batch, ShardedBatches
from ddp.dist import DistEnv
from ddp.distributed_checkpoint import DistributedCheckpointer
from ddp.metrics import TrainerMetrics
from ddp.nonfinite import nonfinite_norm
from ddp.progress import Counters, Position
from ddp.schedule import build_scheduler
from ddp.stack_watchdog import StackWatchdog, stacks_path
from ddp.sync_check import PendingSyncCheck, SyncCheck, check_in_sync, finish_sync_check, start_sync_check
from ddp.telemetry import Agreement, ProbeTiming, StepResult, Telemetry, either
from ddp.workloads import build_workload


class NonFiniteLossError(RuntimeError):
    """nonfinite_policy=stop and a step produced NaN/inf: training must not continue on it."""


@dataclass
class RunResult:
    status: str  # completed | stopped
    steps: int
    summary_path: Path | None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# DDP builds its buckets in the first iteration and rebuilds them in the second: those steps' timings say
# nothing about a rank's pace, so the compute/wait split (and the straggler verdict) starts after them.
SPLIT_WARMUP_ITERATIONS = 2


def _device_sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    def __init__(self, cfg: TrainerConfig, env: DistEnv, metrics: TrainerMetrics, run_dir: Path) -> None:
        self.cfg = cfg
        self.env = env
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
        # The clock times this rank's wait in the all-reduce (ddp/collective_clock.py).
        self.clock = CollectiveClock(env.device)
        self.clock.attach(self.model, default_hooks.fp16_compress_hook if cfg.ddp.fp16_compression else None)
        self._params = [p for p in model.parameters() if p.requires_grad]
        # Whether a probe may average the gradients of its no_sync() pass itself (ddp/comm_probe.py), and
        # the last synced step's (forward+backward, step) seconds it is compared with.
        self._probe_reduces = not cfg.ddp.find_unused_parameters and not any(
            getattr(module, "sparse", False) for module in model.modules()
        )
        self._last_synced: tuple[float, float] | None = None
        # Reading every gradient for a NaN or inf costs 1.7 % of a 27 ms CPU step. Where a non-finite step
        # must be skipped, or clipping reads them anyway, that check runs every step. With
        # nonfinite_policy=stop it need not: SGD and AdamW carry a NaN or inf gradient into the parameters
        # and keep it there, so the ranks find it together at the next heartbeat (any rank's non-finite
        # loss, all-reduced) or sync check (the parameters' checksums), and before any checkpoint is
        # written (`_ensure_finite_parameters`): the run stops within `log_every_steps` + 1 steps of a
        # NaN loss (a heartbeat is read a step after it is sent) and never saves one.
        self._gradients_every_step = (
            cfg.training.nonfinite_policy == "skip" or cfg.optimizer.grad_clip_norm is not None
        )
        self._nonfinite_since: int | None = None
        self._pending_sync: PendingSyncCheck | None = None
        self.optimizer = self._build_optimizer(model)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, tcfg.max_steps)
        # Dropout/augmentation draws differ per rank; model init above was identical everywhere.
        rng.seed_everything(tcfg.seed + 1000 * (env.rank + 1))
        self.batches = ShardedBatches(
            self.workload.dataset, tcfg.batch_size, env.rank, env.world_size, tcfg.seed, tcfg.num_workers
        )
        self.checkpointer = DistributedCheckpointer(
            CheckpointStore(run_dir / cfg.checkpoint.dir, cfg.checkpoint.keep_last, cfg.run.name),
            env,
            cfg.checkpoint.writers,
        )
        self.counters = Counters()
        self.position = Position()
        self.stop = StopRequests(run_dir / "STOP")
        self.telemetry = Telemetry(cfg, env, metrics, run_dir, self.counters, self.position, self.workload)
        self.watchdog = StackWatchdog(stacks_path(run_dir / "logs", env.rank), cfg.distributed.timeout_s)
        self._last_checkpoint_time = time.time()
        self._iterations = 0

    def _build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        o = self.cfg.optimizer
        if o.name == "adamw":
            return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    # ----- state -----
    def _state(self) -> dict[str, Any]:
        # Tensors and plain data only, so the weights-only loader reads it back (ddp/checkpoint_format.py);
        # the data position (epoch, batch) is all the sampler needs to resume.
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
        # In place: the telemetry holds these same objects.
        self.counters.load(state["counters"])
        self.position.load(state["position"])
        rng_states = state.get("rng") or []
        if state["world_size"] == self.env.world_size and len(rng_states) == self.env.world_size:
            rng.restore(rng_states[self.env.rank])
        else:
            # A different world size (fallback phase): per-rank streams cannot map one to one.
            rng.seed_everything(self.cfg.training.seed + 1000 * (self.env.rank + 1) + self.counters.steps)

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
        loss = self.workload.loss_fn(self.model(inputs), targets)
        if scale != 1.0:  # a multiply by one still costs a node in the graph, forward and backward
            loss = loss * scale
        loss.backward()
        return loss.detach()

    def _probe_nosync(self, batch: Batch, scale: float) -> float:
        """The extra pass of a probe that cannot use the step's own (ddp/comm_probe.py): timed, then
        thrown away."""
        _, nosync = self._timed_nosync_pass(batch, scale)
        self.optimizer.zero_grad(set_to_none=True)
        return nosync

    def _timed_nosync_pass(self, batch: Batch, scale: float) -> tuple[torch.Tensor, float]:
        """A forward+backward under no_sync(): its loss and its seconds, the device's work included."""
        _device_sync(self.env.device)
        start = time.perf_counter()
        with self.model.no_sync():
            loss = self._forward_backward(batch, scale)
        _device_sync(self.env.device)
        return loss, time.perf_counter() - start

    def _nonfinite_gradients(self) -> float | None:
        """None when every gradient element is finite (checked after clipping them, when asked: then an
        infinite norm counts too, as it cannot clip); else the gradients' norm, NaN or inf, for the
        message. Without clipping no norm is needed (ddp/nonfinite.py)."""
        clip = self.cfg.optimizer.grad_clip_norm
        if clip is not None:
            if not any(p.grad is not None for p in self._params):
                return None
            norm = float(torch.nn.utils.clip_grad_norm_(self._params, clip))
            return None if math.isfinite(norm) else norm
        return nonfinite_norm([p.grad for p in self._params if p.grad is not None])

    def _step(self, batches: Iterator[Batch]) -> StepResult:
        """One optimizer step (grad_accum micro-batches), timed."""
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
        probing = self.telemetry.probe_due(step_index) and not first_iteration
        sync_fwd_bwd = extra_seconds = 0.0
        wait: float | None = None
        nosync: float | None = None
        reference = self._last_synced if probing and accum == 1 and self._probe_reduces else None
        if reference is not None:
            # The step's own pass is the probe's no_sync() one; its gradients are averaged explicitly.
            loss_total, nosync = self._timed_nosync_pass(micro[0], scale)
            all_reduce_gradients(self._params, self.env.world_size, self.cfg.ddp.fp16_compression)
        else:
            if probing and accum == 1:
                nosync = self._probe_nosync(micro[0], scale)
                extra_seconds = time.perf_counter() - start
            loss_total, sync_fwd_bwd, wait, first = self._passes(micro, scale, first_iteration, probing)
            nosync = nosync if nosync is not None else first
        loss = float(loss_total)
        skipped = False
        if self._gradients_every_step:
            # After the all-reduce every rank holds the same gradients, so this verdict is the same on all
            # ranks (a NaN loss on one rank poisons everyone's averaged gradients): they act in lockstep.
            grad_norm = self._nonfinite_gradients()
            skipped = grad_norm is not None or not math.isfinite(loss)
            if skipped:
                self._on_nonfinite(step_index, loss, grad_norm)
        elif not math.isfinite(loss):
            self._note_nonfinite(step_index, loss)
        if not skipped:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.counters.steps = step_index
        seconds = time.perf_counter() - start
        probe: ProbeTiming | None = None
        if reference is not None and nosync is not None:
            probe = ProbeTiming(reference[0], nosync, reference[1])
        elif probing and nosync is not None and wait is not None:
            probe = ProbeTiming(sync_fwd_bwd, nosync, seconds - extra_seconds)
        elif wait is not None:
            self._last_synced = (sync_fwd_bwd, seconds)
        return StepResult(loss, seconds, probe, wait)

    def _passes(
        self, micro: list[Batch], scale: float, first_iteration: bool, probing: bool
    ) -> tuple[torch.Tensor, float, float | None, float | None]:
        """The step's forward+backward passes, the last one synced (all of them on the first iteration).
        Returns the summed loss, the synced pass's seconds and its wait in the all-reduce (from the third
        iteration), and, when probing, the seconds of the first pass if it ran under no_sync()."""
        accum = len(micro)
        loss_total = torch.zeros((), device=self.env.device)
        sync_fwd_bwd = 0.0
        wait: float | None = None
        first_nosync: float | None = None
        for i, batch in enumerate(micro):
            last = i == accum - 1
            # Only the last micro-batch all-reduces: the others accumulate locally under no_sync().
            synced = last or first_iteration
            if not synced and i == 0 and probing:
                loss, first_nosync = self._timed_nosync_pass(batch, scale)
                loss_total += loss
                continue
            ctx = contextlib.nullcontext() if synced else self.model.no_sync()
            if synced:
                self.clock.start()
            t0 = time.perf_counter()
            with ctx:
                loss_total += self._forward_backward(batch, scale)
            if last and self._iterations > SPLIT_WARMUP_ITERATIONS:
                wait = self.clock.wait_seconds()
                _device_sync(self.env.device)
                sync_fwd_bwd = time.perf_counter() - t0
        return loss_total, sync_fwd_bwd, wait, first_nosync

    def _on_nonfinite(self, step: int, loss: float, grad_norm: float | None) -> None:
        """`grad_norm`: the gradients' norm when it is not finite, None when they all are."""
        norm = "finite" if grad_norm is None else grad_norm
        what = f"non-finite loss or gradients at step {step} (loss={loss}, grad_norm={norm})"
        # A finite global gradient with a NaN local loss would make ranks disagree on skipping: stop.
        skip = self.cfg.training.nonfinite_policy == "skip" and grad_norm is not None
        self.telemetry.on_nonfinite(step, what, skip)
        if not skip:
            raise NonFiniteLossError(f"{what}; training.nonfinite_policy=stop, so training stops here")

    def _note_nonfinite(self, step: int, loss: float) -> None:
        """nonfinite_policy=stop without clipping: a non-finite loss is counted here and judged by every
        rank together at the next heartbeat (see `_gradients_every_step`)."""
        self.telemetry.on_nonfinite(step, f"non-finite loss at step {step} (loss={loss})", skipped=False)
        if self._nonfinite_since is None:
            self._nonfinite_since = step

    def _stop_on_nonfinite(self, found: str) -> None:
        first = f" (this rank's first non-finite loss: step {self._nonfinite_since})"
        raise NonFiniteLossError(
            f"non-finite loss or parameters at step {self.counters.steps}: {found}"
            f"{first if self._nonfinite_since is not None else ''}; training.nonfinite_policy=stop, so "
            "training stops here"
        )

    def _sync_check(self) -> None:
        """Collective, at once (a run's last step, or a short run's only check)."""
        self._on_sync_check(check_in_sync(self.model.module, self.env.device, self.counters.steps))

    def _finish_sync_check(self) -> None:
        """The check begun a step ago (if one was): every rank reads it at this same step."""
        pending, self._pending_sync = self._pending_sync, None
        if pending is not None:
            self._on_sync_check(finish_sync_check(pending))

    def _on_sync_check(self, result: SyncCheck) -> None:
        self.telemetry.on_sync_check(result)
        # Every rank holds every rank's checksums, so all of them stop here together.
        if not all(math.isfinite(v) for row in result.checksums for v in row):
            self._stop_on_nonfinite("a parameter checksum is NaN or inf")

    def _ensure_finite_parameters(self) -> None:
        """Collective, before anything is saved: no checkpoint may hold a NaN or inf."""
        bad = nonfinite_norm([p.detach() for p in self.model.module.parameters()]) is not None
        flag = torch.tensor([float(bad)], device=self.env.device)
        dist.all_reduce(flag)
        if float(flag) > 0:
            self._stop_on_nonfinite("a parameter is NaN or inf")

    # ----- checkpoints -----
    def _checkpoint_due_by_time(self) -> bool:
        minutes = self.cfg.checkpoint.every_minutes
        return minutes is not None and time.time() - self._last_checkpoint_time >= minutes * 60

    def _checkpoint_due_by_steps(self, step: int) -> bool:
        every = self.cfg.checkpoint.every_steps
        return every is not None and step % every == 0

    def _checkpoint(self, status: str = "running", reason: str | None = None) -> None:
        if not self.cfg.checkpoint.enabled:
            return
        self._ensure_finite_parameters()
        started = time.perf_counter()
        outcome, digests = self.checkpointer.save(self._state(), self.counters.steps, self.telemetry.digest())
        seconds = time.perf_counter() - started
        self._last_checkpoint_time = time.time()
        self.telemetry.on_checkpoint(
            outcome, self.checkpointer.store.directory, seconds, self._last_checkpoint_time
        )
        if self.env.is_main:
            self.telemetry.write_summary(status, reason, digests)

    def _finish(self, status: str, reason: str | None) -> None:
        """Final checkpoint (which also writes the summary) or, with checkpoints off, just the summary."""
        if self.cfg.checkpoint.enabled:
            self._checkpoint(status, reason)
        else:
            self.telemetry.gather_summary(status, reason)

    # ----- the run -----
    def _start(self) -> None:
        if self.cfg.checkpoint.enabled and self.cfg.checkpoint.resume:
            state = self.checkpointer.resume()
            if state is not None:
                self._restore(state)
                self.telemetry.on_resume(state["step"])
        elif self.cfg.checkpoint.enabled:
            self.checkpointer.start_fresh()
        self.telemetry.start()

    def run(self) -> RunResult:
        steps = self.stepwise()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                result: RunResult = done.value
                return result

    def stepwise(self) -> Generator[int, None, RunResult]:
        """The run one step at a time: yields the step it starts from once started (resumed, announced),
        then each step's number after that step's bookkeeping (sync check, heartbeat, status, checkpoint),
        and returns the run's result once it has ended. `run()` drives it to the end; bench/
        trainer_overhead.py alternates it with a bare loop a few steps at a time."""
        # Armed from the first collective (resume, the workers' rendezvous) to the end; each step re-arms it.
        self.watchdog.arm()
        try:
            return (yield from self._run())
        finally:
            self.watchdog.cancel()

    def _heartbeats(self, step: int) -> Agreement | None:
        """Collective. Reads the heartbeat begun a step ago (every rank reads it at this same step) and
        begins this step's when one is due, unless the one read asks to stop; the last step's is read at
        once. What the ranks agreed on, None when no heartbeat was read."""
        agreed = self.telemetry.finish_heartbeat()
        if not self.telemetry.heartbeat_due(step) or (agreed is not None and agreed.stop):
            return agreed
        # Only rank 0's clock times checkpoints, so the ranks cannot disagree on the minute. It asks only
        # when this step saves none by every_steps: the answer comes a step later, after that one.
        by_time = self._checkpoint_due_by_time() and not self._checkpoint_due_by_steps(step)
        requests = (
            self.stop.requested(),
            self.env.is_main and by_time,
            self.stop.by_signal,
            self._nonfinite_since is not None,
        )
        if step < self.cfg.training.max_steps:
            self.telemetry.start_heartbeat(*requests)
            return agreed
        return either(agreed, self.telemetry.heartbeat(*requests))

    def _run(self) -> Generator[int, None, RunResult]:
        cfg = self.cfg
        self.stop.install_signal_handlers()
        self._start()
        yield self.counters.steps
        batches = self._micro_batches()
        status, reason = "completed", None
        loss: float | None = None
        try:
            while self.counters.steps < cfg.training.max_steps:
                result = self._step(batches)
                loss = result.loss
                self.telemetry.on_step(result)
                self.watchdog.arm()
                step = self.counters.steps
                self._finish_sync_check()
                if step % cfg.metrics.sync_check_every_steps == 0:
                    if step < cfg.training.max_steps:  # read after the next step, as heartbeats are
                        self._pending_sync = start_sync_check(self.model.module, self.env.device, step)
                    else:
                        self._sync_check()
                stop = ckpt_now = by_signal = False
                agreed = self._heartbeats(step)
                if agreed is not None:
                    if agreed.nonfinite:
                        self._stop_on_nonfinite("a rank's loss was NaN or inf since the last heartbeat")
                    stop, ckpt_now, by_signal = agreed.stop, agreed.checkpoint, agreed.by_signal
                if step % cfg.metrics.status_every_steps == 0:
                    self.telemetry.write_status("running", loss, later=True)
                if stop:
                    status, reason = "stopped", stop_reason(self.stop.reason, by_signal)
                    break
                if self._checkpoint_due_by_steps(step):
                    ckpt_now = True
                if ckpt_now and step < cfg.training.max_steps:
                    self._checkpoint()
                yield step
            self._finish_sync_check()  # one begun at the step a stop came
            if self.counters.sync_checks == 0:
                self._sync_check()  # short runs still get one cross-rank comparison
            self._finish(status, reason)
        except NonFiniteLossError as exc:
            self.telemetry.failed(str(exc), loss)
            raise
        self.telemetry.finished(status, loss)
        return RunResult(status, self.counters.steps, self.telemetry.summary_path, reason)
