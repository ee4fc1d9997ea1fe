"""Learning-rate schedules as one LambdaLR, so the scheduler state checkpoints like any other."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ddp.config import ScheduleSection


def lr_factor(section: ScheduleSection, step: int, max_steps: int) -> float:
    if section.warmup_steps and step < section.warmup_steps:
        return (step + 1) / section.warmup_steps
    if section.kind == "constant":
        return 1.0
    if section.kind == "step":
        return float(section.gamma ** ((step - section.warmup_steps) // section.step_size))
    span = max(1, max_steps - section.warmup_steps)
    progress = min(1.0, (step - section.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return section.min_lr_ratio + (1.0 - section.min_lr_ratio) * cosine


def build_scheduler(optimizer: Optimizer, section: ScheduleSection, max_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, lambda step: lr_factor(section, step, max_steps))
