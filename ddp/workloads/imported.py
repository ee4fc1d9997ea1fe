"""A user's own model and dataset, named by import path (`package.module:factory`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from torch import nn
from torch.utils.data import Dataset

from ddp.config import ImportWorkload
from ddp.workloads.base import LossFn, Workload

BUILTIN_LOSSES: dict[str, LossFn] = {
    "cross_entropy": nn.functional.cross_entropy,
    "mse": nn.functional.mse_loss,
}


class WorkloadImportError(RuntimeError):
    pass


def resolve(path: str, key: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkloadImportError(f"workload.{key}: cannot import module {module_name!r}: {exc}") from exc
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise WorkloadImportError(f"workload.{key}: module {module_name!r} has no {attr!r}") from None
    if not callable(target):
        raise WorkloadImportError(f"workload.{key}: {path} is not callable")
    return cast(Callable[..., Any], target)


def build_imported(section: ImportWorkload) -> Workload:
    model = resolve(section.model, "model")(**section.model_kwargs)
    if not isinstance(model, nn.Module):
        raise WorkloadImportError(
            f"workload.model: {section.model} returned {type(model).__name__}, not nn.Module"
        )
    dataset = resolve(section.dataset, "dataset")(**section.dataset_kwargs)
    if not isinstance(dataset, Dataset):
        raise WorkloadImportError(
            f"workload.dataset: {section.dataset} returned {type(dataset).__name__}, not a torch Dataset"
        )
    loss_fn = BUILTIN_LOSSES.get(section.loss) or resolve(section.loss, "loss")
    return Workload(
        model=model, dataset=dataset, loss_fn=loss_fn, description=f"{section.model} on {section.dataset}"
    )
