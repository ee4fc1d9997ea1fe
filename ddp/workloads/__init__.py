"""What is trained: a model, an in-memory or user dataset of (input, target) pairs, and a loss."""

from __future__ import annotations

from ddp.config import DigitsWorkload, ImportWorkload, SyntheticWorkload
from ddp.workloads.base import Workload
from ddp.workloads.digits import build_digits
from ddp.workloads.imported import build_imported
from ddp.workloads.synthetic import build_synthetic

__all__ = ["Workload", "build_workload"]


def build_workload(section: SyntheticWorkload | DigitsWorkload | ImportWorkload, seed: int) -> Workload:
    if isinstance(section, SyntheticWorkload):
        return build_synthetic(section, seed)
    if isinstance(section, DigitsWorkload):
        return build_digits(section, seed)
    return build_imported(section)
