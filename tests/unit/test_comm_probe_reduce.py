"""ddp/comm_probe.py's all-reduce, which averages a probe step's no_sync() gradients in place of DDP's synced
backward, on two real Gloo ranks: the gradients it leaves are DDP's (with DDP's built-in all-reduce and
with fp16 compression) and the same on every rank."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from ddp.comm_probe import all_reduce_gradients
from tests.unit.gloo_ranks import run_ranks

pytestmark = pytest.mark.slow
WORLD = 2


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))


def _gradients(model: DDP, rank: int) -> list[torch.Tensor]:
    torch.manual_seed(100 + rank)  # each rank its own data, as in training
    model(torch.randn(8, 16)).pow(2).sum().backward()
    return [p.grad.clone() for p in model.parameters()]


def _both_ways(compressed: bool, rank: int, _tmp: Path) -> dict[str, Any]:
    synced = DDP(_model())
    probed = DDP(_model())
    if compressed:
        synced.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
        probed.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
    by_ddp = _gradients(synced, rank)
    with probed.no_sync():
        local = _gradients(probed, rank)
    all_reduce_gradients(list(probed.parameters()), WORLD, fp16=compressed)
    by_probe = [p.grad.clone() for p in probed.parameters()]
    return {
        "ddp": [g.tolist() for g in by_ddp],
        "probe": [g.tolist() for g in by_probe],
        "local": [g.tolist() for g in local],
    }


@pytest.mark.parametrize("compressed", [False, True], ids=["built-in all-reduce", "fp16 compression"])
def test_the_probe_averages_as_ddp_does(tmp_path: Path, compressed: bool) -> None:
    got = run_ranks(functools.partial(_both_ways, compressed), tmp_path, WORLD)
    tolerance = 2e-3 if compressed else 1e-6
    for rank in range(WORLD):
        for ddp, probe in zip(got[rank]["ddp"], got[rank]["probe"], strict=True):
            assert torch.allclose(torch.tensor(probe), torch.tensor(ddp), rtol=tolerance, atol=tolerance)
    # Every rank holds the very same averaged gradients, and they are not any one rank's own.
    assert got[0]["probe"] == got[1]["probe"]
    assert got[0]["probe"] != got[0]["local"]


def _without_gradient(rank: int, _tmp: Path) -> list[list[float]]:
    params = [nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))]
    params[0].grad = torch.full((3,), float(rank + 1))
    if rank == 0:  # rank 1 has no gradient for the second parameter: it must still take part
        params[1].grad = torch.full((2,), 4.0)
    all_reduce_gradients(params, WORLD)
    return [p.grad.tolist() for p in params]


def test_a_missing_gradient_counts_as_zeros_on_that_rank(tmp_path: Path) -> None:
    got = run_ranks(_without_gradient, tmp_path, WORLD)
    assert got == {0: [[1.5, 1.5, 1.5], [2.0, 2.0]], 1: [[1.5, 1.5, 1.5], [2.0, 2.0]]}
