"""A user's own model and dataset, named by import path (`package.module:factory`).

`import_problems` is what `--check` and every rank ask before anything is built: do the paths import, name
callables, and take the configured kwargs? `build_imported` then calls them.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
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


def _missing_attribute(module: Any, module_name: str, attr: str, key: str) -> WorkloadImportError:
    public = [name for name in dir(module) if not name.startswith("_")]
    close = difflib.get_close_matches(attr, public, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return WorkloadImportError(
        f"workload.{key}: module {module_name!r} has no {attr!r}{hint}; expected a factory defined there"
    )


def resolve(path: str, key: str) -> Callable[..., Any]:
    """The callable `path` names; every failure is a WorkloadImportError naming `workload.<key>`."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkloadImportError(
            f"workload.{key}: cannot import module {module_name!r} ({exc}); expected a module on this "
            "node's Python path"
        ) from exc
    except Exception as exc:  # the user's module ran and failed: any exception type
        raise WorkloadImportError(
            f"workload.{key}: importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise _missing_attribute(module, module_name, attr, key) from None
    if not callable(target):
        raise WorkloadImportError(
            f"workload.{key}: {path} is {type(target).__name__}, not callable; expected a function or class"
        )
    return cast(Callable[..., Any], target)


def _binding_problem(target: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why `target(*args, **kwargs)` would not bind to its signature; None when it binds (or when the
    callable has no signature to read, as some built-ins)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        return f"{exc}; expected what it takes: {', '.join(signature.parameters) or 'no arguments'}"
    return None


def _call_problem(
    key: str, path: str, setting: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """Why `workload.<key>` (`path`) cannot be resolved, or called with `args` and `kwargs` (which come
    from `workload.<setting>`)."""
    try:
        target = resolve(path, key)
    except WorkloadImportError as exc:
        return str(exc)
    problem = _binding_problem(target, args, kwargs)
    if problem is None:
        return None
    taken = "(output, target)" if args else "these keyword arguments"  # a loss, else a factory
    return f"workload.{setting}: {path} cannot take {taken}: {problem}"


def import_problems(section: ImportWorkload) -> list[str]:
    """What would stop `build_imported` before it calls anything: paths, callables, kwargs."""
    problems = [
        _call_problem("model", section.model, "model_kwargs", (), section.model_kwargs),
        _call_problem("dataset", section.dataset, "dataset_kwargs", (), section.dataset_kwargs),
    ]
    if section.loss not in BUILTIN_LOSSES:
        # The training loop calls loss(output, target).
        problems.append(_call_problem("loss", section.loss, "loss", (None, None), {}))
    return [problem for problem in problems if problem is not None]


def _call(path: str, key: str, kwargs: dict[str, Any]) -> Any:
    factory = resolve(path, key)
    try:
        return factory(**kwargs)
    except Exception as exc:  # the user's factory failed: any exception type, reported in one line
        raise WorkloadImportError(
            f"workload.{key}: {path}(**{key}_kwargs) raised {type(exc).__name__}: {exc}"
        ) from exc


def build_imported(section: ImportWorkload) -> Workload:
    model = _call(section.model, "model", section.model_kwargs)
    if not isinstance(model, nn.Module):
        raise WorkloadImportError(
            f"workload.model: {section.model} returned {type(model).__name__}, not nn.Module"
        )
    dataset = _call(section.dataset, "dataset", section.dataset_kwargs)
    if not isinstance(dataset, Dataset):
        raise WorkloadImportError(
            f"workload.dataset: {section.dataset} returned {type(dataset).__name__}, not a torch Dataset"
        )
    loss_fn = BUILTIN_LOSSES.get(section.loss) or resolve(section.loss, "loss")
    return Workload(
        model=model, dataset=dataset, loss_fn=loss_fn, description=f"{section.model} on {section.dataset}"
    )
