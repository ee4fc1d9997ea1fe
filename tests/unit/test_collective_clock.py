"""ddp/collective_clock.py on two real Gloo ranks, with DDP's own all-reduce (the clock listens to the
gradients) and with a compression hook (the clock wraps it): the rank that computes slowly waits little in
the all-reduce, its peer waits for it; a step under no_sync() communicates nothing and measures nothing;
the gradients are still averaged."""

from __future__ import annotations

import functools
import gc
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from ddp.collective_clock import CollectiveClock
from tests.unit.gloo_ranks import run_ranks

pytestmark = pytest.mark.slow
WORLD = 2
SLOW_RANK = 1
DELAY_S = 0.4


class SlowOnOneRank(nn.Module):
    def __init__(self, delay_s: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(8, 1)
        self.delay_s = delay_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay_s)  # this rank's own work, before any gradient is ready
        return self.layer(x)


def _measure(compressed: bool, rank: int, _tmp: Path) -> dict[str, Any]:
    model = DDP(SlowOnOneRank(DELAY_S if rank == SLOW_RANK else 0.0))
    clock = CollectiveClock(torch.device("cpu"))
    clock.attach(model, default_hooks.fp16_compress_hook if compressed else None)
    out: dict[str, Any] = {}
    for step in range(3):  # the first steps set DDP up; the last one is measured
        clock.start()
        model(torch.full((4, 8), float(rank + 1))).sum().backward()
        out["wait"] = clock.wait_seconds()
        out["grad"] = model.module.layer.weight.grad.clone().tolist()
        model.zero_grad(set_to_none=True)
        if step == 1:
            dist.barrier()
    clock.start()
    with model.no_sync():
        model(torch.ones(4, 8)).sum().backward()
    out["wait_no_sync"] = clock.wait_seconds()
    return out


@pytest.mark.parametrize("compressed", [False, True], ids=["built-in all-reduce", "fp16 hook"])
def test_the_waiting_rank_is_the_fast_one(tmp_path: Path, compressed: bool) -> None:
    got = run_ranks(functools.partial(_measure, compressed), tmp_path, WORLD)
    fast, slow = got[1 - SLOW_RANK], got[SLOW_RANK]
    assert fast["wait"] >= 0.75 * DELAY_S, got  # it waited for its peer's gradients
    assert slow["wait"] < 0.5 * DELAY_S, got  # its peer was ready: the all-reduce ended soon after
    assert fast["wait_no_sync"] is None and slow["wait_no_sync"] is None
    # Both ranks hold the mean of the two ranks' gradients (exact in fp16 too: small integers).
    assert fast["grad"] == slow["grad"]
    assert fast["grad"][0] == pytest.approx([6.0] * 8)  # d(sum)/dW = 4 rows of x; mean of 4*1 and 4*2


def _freed_without_the_cycle_collector(rank: int, _tmp: Path) -> bool:
    model = DDP(nn.Linear(4, 2))
    CollectiveClock(torch.device("cpu")).attach(model)
    gc.disable()
    try:
        ref = weakref.ref(model)
        del model
        return ref() is None
    finally:
        gc.enable()


def test_the_clock_keeps_no_model_alive(tmp_path: Path) -> None:
    """The parameters hold the clock's hooks; were the model reachable from them, it would live until the
    interpreter's last collection, after the process group is destroyed (a rank died there of SIGABRT)."""
    assert run_ranks(_freed_without_the_cycle_collector, tmp_path, 1) == {0: True}
