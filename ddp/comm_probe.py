"""Communication overhead, measured rather than assumed.

Every `comm_probe_every_steps` steps the trainer times one forward+backward under DDP's no_sync() (no
all-reduce) and compares it with a synced forward+backward of the same shapes, which gives the time spent
communicating that computation did not hide:

    overhead = (T_sync_fwd_bwd - T_nosync_fwd_bwd) / T_step

T_sync / T_nosync is also the ceiling on scaling efficiency that the phase gates check. Medians over the
last few probes keep one noisy probe from swinging the figure.

The probe's pass is the step's own work, not an extra one (an extra forward+backward per interval cost
0.5 % of a 30 ms CPU step at the default interval of 100 steps):
- with gradient accumulation the step's first micro-batch runs under no_sync() anyway, so the probe only
  times it;
- with one micro-batch the step runs its forward+backward under no_sync() and then averages the gradients
  with an all-reduce of its own (`all_reduce_gradients`), which is what DDP's synced backward would have
  done, only not overlapped with the backward; T_sync and T_step are the previous step's. What the probe
  step costs is that all-reduce's unhidden part, and it is counted in the measured throughput;
- where that all-reduce cannot stand in for DDP's (find_unused_parameters, whose unused parameters DDP
  tells apart with a collective of its own, or sparse gradients), or before any synced step was timed
  (right after a restart), the probe runs the first micro-batch once more under no_sync() and throws its
  gradients away.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class OverheadEstimate:
    ratio: float
    sync_seconds: float
    nosync_seconds: float


class CommOverhead:
    def __init__(self, every_steps: int, warmup_steps: int = 5, keep: int = 5) -> None:
        self.every_steps = every_steps
        self.warmup_steps = warmup_steps
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=keep)

    def due(self, step: int) -> bool:
        """Probe once right after warm-up, then every `every_steps` steps counted from there: counted from
        step 0 instead, a run of `every_steps` steps would pay two probes (at warm-up and at its end)."""
        return step >= self.warmup_steps and (step - self.warmup_steps) % self.every_steps == 0

    def add(self, sync_fwd_bwd: float, nosync_fwd_bwd: float, step_seconds: float) -> None:
        self._samples.append((sync_fwd_bwd, nosync_fwd_bwd, step_seconds))

    def estimate(self) -> OverheadEstimate | None:
        if not self._samples:
            return None
        sync = statistics.median(s[0] for s in self._samples)
        nosync = statistics.median(s[1] for s in self._samples)
        step = statistics.median(s[2] for s in self._samples)
        ratio = max(0.0, sync - nosync) / step if step > 0 else 0.0
        return OverheadEstimate(min(ratio, 1.0), sync, nosync)


def all_reduce_gradients(params: Sequence[torch.Tensor], world_size: int, fp16: bool = False) -> None:
    """Average every parameter's gradient over the ranks in place, as DDP's synced backward does: divided
    by the world size before the sum (so the sum cannot overflow where the average would not), in fp16
    when DDP's communication is compressed to fp16. A parameter without a gradient gets zeros, so every
    rank sends the same layout. One all-reduce of one flat buffer, as DDP's buckets are: at 4 ranks on 2
    cores 31-45 ms for 3.7 M parameters, against 51-67 ms for one all-reduce per parameter."""
    grads = []
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        grads.append(param.grad)
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).div_(world_size)
    wire = flat.to(torch.float16) if fp16 and flat.dtype != torch.float16 else flat
    dist.all_reduce(wire)
    offset = 0
    for grad in grads:
        count = grad.numel()
        grad.copy_(wire[offset : offset + count].view_as(grad))
        offset += count
