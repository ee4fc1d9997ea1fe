"""What is trained: a model, an in-memory or user dataset of (input, target) pairs, and a loss."""

from __future__ import annotations

from ddp.config import DigitsWorkload, ImportWorkload, SyntheticWorkload
from ddp.workloads.base import Workload
from ddp.workloads.digits import DIGITS_SAMPLES, build_digits
from ddp.workloads.imported import build_imported, import_problems
from ddp.workloads.synthetic import build_synthetic

__all__ = ["Workload", "build_workload", "dataset_size", "workload_problems"]


def build_workload(section: SyntheticWorkload | DigitsWorkload | ImportWorkload, seed: int) -> Workload:
    if isinstance(section, SyntheticWorkload):
        return build_synthetic(section, seed)
    if isinstance(section, DigitsWorkload):
        return build_digits(section, seed)
    return build_imported(section)


def dataset_size(section: SyntheticWorkload | DigitsWorkload | ImportWorkload) -> int | None:
    """Samples in the workload's dataset when the config tells without building it; None for a user's
    dataset (only its factory knows)."""
    if isinstance(section, SyntheticWorkload):
        return section.num_samples
    if isinstance(section, DigitsWorkload):
        return DIGITS_SAMPLES
    return None


def workload_problems(section: SyntheticWorkload | DigitsWorkload | ImportWorkload) -> list[str]:
    """What would stop `build_workload` that can be known before building (a user's import paths)."""
    return import_problems(section) if isinstance(section, ImportWorkload) else []
