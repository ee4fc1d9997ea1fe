"""How long a rank waits in the gradient all-reduce after its own work is done: compute vs. collective wait.

DDP hands each gradient bucket to its communication hook the moment every gradient in it has been computed
on this rank, and `backward()` returns only once every bucket's all-reduce has completed. So the last
bucket's hand-over is when this rank's own backward work ended, and the time from there to the end of
`backward()` is time spent waiting in the collective: the part of the all-reduce not hidden behind
computation, plus waiting for slower peers. Everything else in the step (data, forward, backward compute,
optimizer) is this rank's own work ("compute").

A rank that computes slowly hands its last bucket over late and then waits little (the others were ready);
its peers wait for it. So a slow rank shows as more compute than its peers, and a slow network as more wait
on every rank with compute unchanged.

On CPU the clock is the host's. On CUDA the hand-over is an event recorded on the current stream (the host
runs ahead of the device, so its clock would time the launch, not the work), and the end is an event
recorded after `backward()`: the device's own timeline.

How the clock learns of the hand-over costs the step. With DDP's own all-reduce, which runs in C++, it
listens to each parameter's gradient being accumulated (a post-accumulate-grad hook; the last one is when
the last bucket became ready): a Python comm hook instead would take the GIL for every bucket and its
completion, measured at about 4 % of a 30 ms CPU step. With fp16 compression the comm hook is Python
anyway: the clock wraps it and notes each bucket, so the measurement never changes what is communicated.
"""

# No `from __future__ import annotations`: DDP's register_comm_hook checks the hook's annotations as
# objects (dist.GradBucket, torch.futures.Future[torch.Tensor]) and refuses them as strings.
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

Hook = Callable[[Any, dist.GradBucket], torch.futures.Future[torch.Tensor]]


class CollectiveClock:
    def __init__(self, device: torch.device, inner: Hook = default_hooks.allreduce_hook) -> None:
        self._cuda = device.type == "cuda"
        self._inner = inner
        self._last_ready: float | None = None
        self._last_event: Any = None
        self._synced: Callable[[], bool] = lambda: True

    def attach(self, model: DDP, compression: Hook | None = None) -> None:
        """Time `model`'s synced backward passes; `compression` is the comm hook that communicates the
        buckets (None: DDP's built-in all-reduce)."""
        if compression is not None:
            self._inner = compression
            model.register_comm_hook(state=None, hook=self.hook)
            return
        # Under no_sync() nothing is communicated, so nothing is timed (DDP clears this flag there). A weak
        # reference: the parameters hold these hooks, and a model reachable from its own hooks would live
        # until the interpreter's final collection, past destroy_process_group (a rank then died of SIGABRT,
        # "terminate called without an active exception", on its way out).
        model_ref = weakref.ref(model)

        def synced() -> bool:
            live = model_ref()
            return live is not None and bool(live.require_backward_grad_sync)

        self._synced = synced
        for param in model.parameters():
            if param.requires_grad:
                param.register_post_accumulate_grad_hook(self._gradient_ready)

    def _gradient_ready(self, _param: torch.Tensor) -> None:
        if self._synced():
            self._mark()

    def hook(self, state: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        """DDP's communication hook: note when this bucket's gradients were ready, then communicate them
        exactly as the wrapped hook does."""
        self._mark()
        return self._inner(state, bucket)

    def _mark(self) -> None:
        if self._cuda:
            self._last_event = torch.cuda.Event(enable_timing=True)
            self._last_event.record()
        else:
            self._last_ready = time.perf_counter()

    def start(self) -> None:
        """A synced backward is about to run: forget the previous step's buckets."""
        self._last_ready = None
        self._last_event = None

    def wait_seconds(self) -> float | None:
        """Seconds from the last bucket's hand-over to now (after `backward()` returned and, on CUDA, the
        device was synchronised); None when no bucket was communicated since `start()`."""
        if self._cuda:
            if self._last_event is None:
                return None
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return max(0.0, self._last_event.elapsed_time(end) / 1000.0)
        if self._last_ready is None:
            return None
        return max(0.0, time.perf_counter() - self._last_ready)
