"""Walking and editing the nested YAML documents the fuzz tests mutate (configs, phase files, inventories)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any


def key_paths(
    data: Any, prefix: tuple[Any, ...] = (), *, leaves_only: bool = True
) -> Iterator[tuple[Any, ...]]:
    """Every key path of the mappings in `data`: only those ending at a value (or an empty mapping), or with
    `leaves_only=False` every mapping key on the way as well."""
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        path = (*prefix, key)
        nested = isinstance(value, dict) and bool(value)
        if not (leaves_only and nested):
            yield path
        if nested or not leaves_only:
            yield from key_paths(value, path, leaves_only=leaves_only)


def with_value(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of `data` with the key at `path` set to `value`."""
    out = copy.deepcopy(data)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def value_at(data: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = data
    for part in path:
        node = node[part]
    return node
