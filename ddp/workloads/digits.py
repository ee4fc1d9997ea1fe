"""scikit-learn's digits (1797 8x8 images) ship inside the package: a real dataset with no download."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ddp.config import DigitsWorkload
from ddp.workloads.base import Workload, mlp

# Fixed by the dataset; known without loading it, so a start-up check can size the ranks' shards.
DIGITS_SAMPLES = 1797


def build_digits(section: DigitsWorkload, seed: int) -> Workload:
    # Imported here, not at the top: scikit-learn (with scipy) takes about a second of CPU to import, which
    # every rank of every start would pay although only this workload needs it.
    from sklearn.datasets import load_digits

    data = load_digits()
    inputs = torch.tensor(data.data, dtype=torch.float32) / 16.0  # pixel values are 0..16
    targets = torch.tensor(data.target, dtype=torch.long)
    torch.manual_seed(seed)
    model = mlp(inputs.shape[1], section.hidden_dim, 3, 10)
    return Workload(
        model=model,
        dataset=TensorDataset(inputs, targets),
        loss_fn=nn.functional.cross_entropy,
        description=f"digits MLP 64->{section.hidden_dim}x3->10, {len(targets)} samples",
    )
