"""Communication overhead, measured rather than assumed.

Every `comm_probe_every_steps` steps the trainer runs one extra forward+backward of the step's first
micro-batch under DDP's no_sync() (no all-reduce) and throws its gradients away. Comparing that with the
same step's synced forward+backward gives the time spent communicating that computation did not hide:

    overhead = (T_sync_fwd_bwd - T_nosync_fwd_bwd) / T_step

T_sync / T_nosync is also the ceiling on scaling efficiency that the phase gates check. Medians over the
last few probes keep one noisy probe from swinging the figure. The probe costs one forward+backward per
interval (about 1 % at the default interval of 100 steps) and is counted in the measured throughput.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass


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
