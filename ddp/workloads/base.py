from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Workload:
    model: nn.Module
    dataset: Dataset
    loss_fn: LossFn
    description: str

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def add_device_time(model: nn.Module, seconds: float) -> None:
    """Make each forward pass of `model` first wait `seconds`: the time an accelerator would spend on the
    step's compute (config: workload.device_time_ms), slept rather than spun so the cores stay free. A
    forward pre-hook, not a layer: the state dict, and so every checkpoint, stays what it was."""

    def wait(_module: nn.Module, _inputs: tuple[object, ...]) -> None:
        time.sleep(seconds)

    model.register_forward_pre_hook(wait)


def mlp(input_dim: int, hidden_dim: int, num_layers: int, output_dim: int) -> nn.Sequential:
    """`num_layers` linear layers with ReLU between them (num_layers=1 is a linear model)."""
    dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
