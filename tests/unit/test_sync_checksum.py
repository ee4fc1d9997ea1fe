"""The sync check's parameter checksum: the weighted sum it is meant to be, order-sensitive, and blind to
no drift a low-precision parameter can carry."""

from __future__ import annotations

import torch
from torch import nn

from ddp.sync_check import parameter_checksum


def _reference(module: nn.Module) -> list[float]:
    """The definition, element by element in float64: parameter i's element at row-major position
    1..numel weighs i * position / numel."""
    plain = weighted = 0.0
    for i, param in enumerate(module.parameters(), start=1):
        values = param.detach().to(torch.float64).reshape(-1)
        positions = torch.arange(1, values.numel() + 1, dtype=torch.float64)
        plain += float(values.sum())
        weighted += i * float((values * positions).sum()) / values.numel()
    return [plain, weighted]


def test_checksum_is_the_position_weighted_sum() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 7), nn.LayerNorm(7))
    got = parameter_checksum(model).tolist()
    want = _reference(model)
    for g, w in zip(got, want, strict=True):
        assert abs(g - w) <= 1e-5 * max(abs(w), 1.0), (got, want)


def test_swapping_two_elements_changes_only_the_weighted_sum() -> None:
    torch.manual_seed(1)
    model = nn.Linear(16, 16)
    before = parameter_checksum(model).tolist()
    with torch.no_grad():
        w = model.weight
        w[0, 0], w[3, 5] = w[3, 5].item(), w[0, 0].item()
    after = parameter_checksum(model).tolist()
    assert abs(after[0] - before[0]) <= 1e-6 * abs(before[0])
    assert abs(after[1] - before[1]) > 1e-4 * abs(before[1]), (before, after)


def test_a_one_step_drift_of_a_bf16_parameter_shows() -> None:
    # 1024 ones sum to 1024 in bf16 whatever one element's last bit: the sums must not round in bf16.
    model = nn.Linear(1024, 4, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        model.weight.fill_(1.0)
    before = parameter_checksum(model).tolist()
    with torch.no_grad():
        model.weight[2, 100] = torch.nextafter(
            torch.tensor(1.0, dtype=torch.bfloat16), torch.tensor(2.0, dtype=torch.bfloat16)
        )
    after = parameter_checksum(model).tolist()
    assert after[0] != before[0] and after[1] != before[1], (before, after)


def test_a_module_without_parameters_sums_to_zero() -> None:
    assert parameter_checksum(nn.ReLU()).tolist() == [0.0, 0.0]
