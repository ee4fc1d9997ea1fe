"""`--grid NAME=V1,V2,...` arguments: parsing, short names, the combinations, and their validation.

Every combination is validated with the trainer's own loader before any trial starts, so a typo in the
last value of the last axis cannot waste the hours the first trials took.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ddp.config import TrainerConfig, load_config
from ddp.config_errors import ConfigError
from tooling.console import ToolingError

# The settings a throughput sweep usually varies, by the names operators use for them.
SHORT_NAMES = {
    "batch_size": "training.batch_size",
    "grad_accum": "ddp.grad_accum_steps",
    "lr": "optimizer.lr",
    "bucket_cap_mb": "ddp.bucket_cap_mb",
}
# Settings the sweep itself gives every trial; a grid or --set over them would be silently overwritten.
RESERVED = {
    "training.max_steps": "use --steps",
    "run.name": "every trial is its own run, named by the sweep",
    "run.output_dir": "the sweep keeps trials under its own directory",
}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

Combination = dict[str, Any]  # config key -> validated value


@dataclass(frozen=True)
class Axis:
    arg: str  # the --grid argument as typed, for error messages
    name: str  # the name as typed (a short name or a dotted key)
    key: str  # the config key it sets
    values: tuple[str, ...]  # raw, as typed: they become `--set key=value` on the trainer


def _usage(arg: str, problem: str, hint: str | None = None) -> ToolingError:
    return ToolingError(f"--grid {arg}: {problem}", hint=hint)


def resolve_key(name: str) -> str | None:
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    return name if _KEY.match(name) else None


def parse_axis(arg: str) -> Axis:
    name, sep, raw = arg.partition("=")
    name = name.strip()
    if not sep or not name:
        raise _usage(arg, "expected NAME=V1,V2,... (e.g. --grid lr=0.01,0.1)")
    key = resolve_key(name)
    if key is None:
        raise _usage(
            arg,
            f"unknown name {name!r}",
            hint=f"use a short name ({', '.join(SHORT_NAMES)}) or a dotted config key such as "
            "training.batch_size (ddp/config.py has them all)",
        )
    if key in RESERVED:
        raise _usage(arg, f"{key} cannot be swept: {RESERVED[key]}")
    values = tuple(v.strip() for v in raw.split(","))
    if not raw.strip() or any(not v for v in values):
        raise _usage(arg, f"{key}: expected a comma-separated list of values, got {raw!r}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise _usage(arg, f"{key}: value(s) listed twice: {', '.join(repeated)}")
    return Axis(arg, name, key, values)


def parse_grid(args: list[str]) -> list[Axis]:
    if not args:
        raise ToolingError("a sweep needs at least one --grid NAME=V1,V2,...", hint="e.g. --grid lr=0.01,0.1")
    axes = [parse_axis(arg) for arg in args]
    seen: dict[str, Axis] = {}
    for axis in axes:
        if axis.key in seen:
            raise _usage(axis.arg, f"{axis.key} is already swept by --grid {seen[axis.key].arg}")
        seen[axis.key] = axis
    return axes


def check_sets(sets: list[str]) -> None:
    for item in sets:
        key = item.partition("=")[0].strip()
        if key in RESERVED:
            raise ToolingError(f"--set {item}: {key} is set by the sweep: {RESERVED[key]}")


def raw_combinations(axes: list[Axis]) -> list[dict[str, str]]:
    """Every combination, first axis slowest, as config key -> raw value."""
    return [
        {axis.key: value for axis, value in zip(axes, values, strict=True)}
        for values in itertools.product(*(axis.values for axis in axes))
    ]


def as_overrides(raw: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in raw.items()]


def config_value(config: TrainerConfig, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = getattr(node, part)
    return node.model_dump() if isinstance(node, BaseModel) else node


def _problems(exc: ConfigError) -> str:
    return "; ".join(exc.problems)


def _checked_against(config: Path) -> str:
    return f"give values the trainer accepts for that key (checked over {config})"


def validate(axes: list[Axis], config: Path, sets: list[str]) -> list[Combination]:
    """Load every combination the way its trial will; return each one's values as the trainer reads them.

    Raises ToolingError (exit 2) naming the --grid argument, the key and the value at the first problem.
    """
    try:
        load_config(config, sets)
    except ConfigError as exc:
        raise ToolingError(f"--set: {_problems(exc)}", hint=f"checked over {config}") from None
    for axis in axes:  # one value at a time first: the error can then name exactly one --grid argument
        for value in axis.values:
            try:
                load_config(config, [*sets, f"{axis.key}={value}"])
            except ConfigError as exc:
                raise _usage(
                    axis.arg, f"{axis.key}={value}: {_problems(exc)}", hint=_checked_against(config)
                ) from None
    combinations: list[Combination] = []
    for raw in raw_combinations(axes):
        try:
            loaded = load_config(config, [*sets, *as_overrides(raw)])
        except ConfigError as exc:
            together = " ".join(f"--grid {a.arg}" for a in axes)
            raise ToolingError(
                f"{together}: the combination {describe(raw, axes)} is invalid: {_problems(exc)}",
                hint=_checked_against(config),
            ) from None
        combinations.append({key: config_value(loaded, key) for key in raw})
    return combinations


def describe(combination: dict[str, Any], axes: list[Axis]) -> str:
    """`batch_size=16 lr=0.01`: the names the operator typed, in the order of the --grid arguments."""
    order = [axis.key for axis in axes if axis.key in combination]
    order += [key for key in combination if key not in order]
    names = {axis.key: axis.name for axis in axes}
    return " ".join(f"{names.get(key, key)}={combination[key]}" for key in order)
