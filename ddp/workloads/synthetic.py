"""A throughput workload whose size is set by the config; labels come from a fixed random teacher so the
loss still falls and a NaN or a sync bug is visible."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ddp.config import SyntheticWorkload
from ddp.workloads.base import Workload, add_device_time, mlp


def build_synthetic(section: SyntheticWorkload, seed: int) -> Workload:
    # Every rank must build the identical dataset: a private generator, not the global RNG.
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(section.num_samples, section.input_dim, generator=gen)
    teacher = torch.randn(section.input_dim, section.num_classes, generator=gen)
    targets = (inputs @ teacher).argmax(dim=1)
    torch.manual_seed(seed)
    model = mlp(section.input_dim, section.hidden_dim, section.num_layers, section.num_classes)
    paced = ""
    if section.device_time_ms > 0:
        add_device_time(model, section.device_time_ms / 1000)
        paced = f", {section.device_time_ms:g} ms device time per forward"
    return Workload(
        model=model,
        dataset=TensorDataset(inputs, targets),
        loss_fn=nn.functional.cross_entropy,
        description=(
            f"synthetic MLP {section.input_dim}->{section.hidden_dim}x{section.num_layers}"
            f"->{section.num_classes}, {section.num_samples} samples"
            f"{paced}"
        ),
    )
