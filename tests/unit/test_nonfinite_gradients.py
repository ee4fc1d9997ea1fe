"""The trainer's check of the all-reduced gradients (ddp.trainer.Trainer._nonfinite_gradients): one sum per
gradient instead of a norm. A single NaN or inf element anywhere is found; finite elements are finite,
even when their sum overflows; with clipping, the clipping norm decides."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ddp.trainer import Trainer


def check(grads: list[torch.Tensor], clip: float | None = None) -> float | None:
    params = []
    for grad in grads:
        param = torch.nn.Parameter(torch.zeros_like(grad))
        param.grad = grad.clone()
        params.append(param)
    params.append(torch.nn.Parameter(torch.zeros(3)))  # no gradient this step (an unused parameter)
    trainer = SimpleNamespace(
        _params=params, cfg=SimpleNamespace(optimizer=SimpleNamespace(grad_clip_norm=clip))
    )
    return Trainer._nonfinite_gradients(trainer)  # type: ignore[arg-type]


def test_finite_gradients_pass() -> None:
    assert check([torch.randn(64, 32), torch.randn(32)]) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("clip", [None, 1.0], ids=["sum", "clipping norm"])
def test_one_bad_element_anywhere_is_found(bad: float, clip: float | None) -> None:
    grad = torch.randn(64, 32)
    grad[17, 5] = bad
    norm = check([torch.randn(16), grad], clip)
    assert norm is not None and not math.isfinite(norm)


@pytest.mark.parametrize(
    "grads",
    [
        [torch.full((4,), torch.finfo(torch.float32).max)],  # the sum overflows
        [torch.full((2,), torch.finfo(torch.float32).max), torch.full((2,), 1e38)],  # so does the total
        [torch.full((8,), -1e30), torch.full((8,), 1e30)],  # the sums cancel; a norm would overflow
    ],
    ids=["sum overflows", "total overflows", "cancelling"],
)
def test_finite_elements_are_finite_whatever_their_sum_does(grads: list[torch.Tensor]) -> None:
    assert check(grads) is None
    assert check([*grads, torch.tensor([math.nan])]) is not None


def test_with_clipping_an_infinite_norm_counts() -> None:
    # Clipping by an infinite norm would zero the gradients: the step is not taken as it is.
    norm = check([torch.full((8,), 1e30)], clip=1.0)
    assert norm == math.inf


def test_no_gradients_at_all() -> None:
    assert check([]) is None
