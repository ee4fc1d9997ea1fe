"""Gradient-sync accuracy: do all ranks hold the same parameters?

DDP averages gradients, so after every optimizer step the replicas must be identical. Every N steps each
rank reduces its parameters to a float64 checksum and the checksums are all-gathered; a check agrees when
every rank's checksum matches rank 0's within `rtol`. Two different weightings of the parameters make a
swap or sign flip that preserves a plain sum still visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class SyncCheck:
    agree: bool
    checksums: list[list[float]]  # per rank: [plain sum, position-weighted sum]

    @property
    def max_relative_spread(self) -> float:
        ref = self.checksums[0]
        spread = 0.0
        for row in self.checksums[1:]:
            for a, b in zip(ref, row, strict=True):
                spread = max(spread, abs(a - b) / max(abs(a), 1e-12))
        return spread


@torch.no_grad()
def parameter_checksum(module: nn.Module) -> torch.Tensor:
    plain = torch.zeros((), dtype=torch.float64)
    weighted = torch.zeros((), dtype=torch.float64)
    for i, param in enumerate(module.parameters(), start=1):
        values = param.detach().to(torch.float64).flatten().cpu()
        plain += values.sum()
        positions = torch.arange(1, values.numel() + 1, dtype=torch.float64)
        weighted += i * (values * positions).sum() / values.numel()
    return torch.stack([plain, weighted])


def check_in_sync(module: nn.Module, device: torch.device, rtol: float = 1e-6) -> SyncCheck:
    local = parameter_checksum(module).to(device)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    rows = [t.cpu().tolist() for t in gathered]
    ref = rows[0]
    agree = all(
        abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)
        for row in rows[1:]
        for a, b in zip(ref, row, strict=True)
    )
    return SyncCheck(agree=agree, checksums=rows)
