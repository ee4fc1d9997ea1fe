"""The run and checkpoint directories each node's trainer derives from its config and its launcher's --set
items, as ddp.config.load_config works them out, for a whole phase at once.

load_config reads and merges the config's files (a millisecond), applies the items and validates. For a
thousand nodes the files are read once: once for each distinct config overrides, the config is loaded and
validated without any item, and its data kept (the data of a validated config validates to the same config:
ddp.config has no aliases, excluded fields or before-validators). The items the phase's nodes share are
applied to that once; each node's own items (its metrics address) are applied to the result and the whole
validated again. Applying shared items first changes nothing: items whose key paths are apart (neither is
the other or inside it) touch different settings, and where they are not apart the node's items are all
applied in their order. A node whose items fail there, or whose config does not validate without them,
goes through load_config itself, whose error names the file and the key.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ddp.config import TrainerConfig, apply_overrides, load_config, validate_config
from ddp.config_errors import ConfigError
from tooling.runner import PROJECT_ROOT

Directories = tuple[str, str]  # run directory, checkpoint directory


def node_config(
    launch: Mapping[str, Any], overrides: Mapping[str, Any], sets: list[str] | None, where: Path
) -> TrainerConfig:
    """The trainer's config on the node: the phase's config, the role's overrides (trainer.yaml), --set."""
    overlay = None
    if overrides:
        overlay = where / "ddp_trainer_config_overrides.yaml"
        overlay.write_text(yaml.safe_dump(dict(overrides), sort_keys=True), encoding="utf-8")
    return load_config(PROJECT_ROOT / str(launch["config"]), sets, overlay)


def directories(
    launch: Mapping[str, Any], overrides: Mapping[str, Any], sets: list[str], where: Path
) -> Directories:
    """The run and checkpoint directories the trainer derives from the node's config and settings."""
    config = node_config(launch, overrides, sets, where)
    return str(config.run_dir), str(config.checkpoint_dir)


def _path(item: str) -> tuple[str, ...] | None:
    key, sep, _ = item.partition("=")
    return tuple(key.strip().split(".")) if sep else None


def _apart(shared: Sequence[str], own: Sequence[str]) -> bool:
    """Whether every item of `own` sets a key path apart from every item of `shared`."""
    theirs, mine = [_path(item) for item in shared], [_path(item) for item in own]
    if None in theirs or None in mine:
        return False
    return not any(a[: len(b)] == b or b[: len(a)] == a for a in theirs for b in mine if a and b)


class PhaseDirectories:
    """directories() for a phase's nodes, the config's files read once (see the module's docstring)."""

    def __init__(self, launch: Mapping[str, Any]) -> None:
        self.launch = launch
        self.known: dict[tuple[str, tuple[str, ...]], Directories] = {}
        self.validated: dict[str, dict[str, Any] | None] = {}
        self.first: dict[str, tuple[str, ...]] = {}  # the first node's items, for each overrides
        self.shared: dict[tuple[str, tuple[int, ...]], dict[str, Any] | None] = {}

    def _validated(self, key: str, overrides: Mapping[str, Any], where: Path) -> dict[str, Any] | None:
        if key not in self.validated:
            try:
                self.validated[key] = node_config(self.launch, overrides, None, where).model_dump()
            except ConfigError:
                self.validated[key] = None
        return self.validated[key]

    def _split(
        self, key: str, data: dict[str, Any], sets: tuple[str, ...]
    ) -> tuple[dict[str, Any], list[str]]:
        """The data with the items shared with the first node applied, and this node's other items."""
        first = self.first.setdefault(key, sets)
        if len(first) != len(sets):
            return data, list(sets)
        differ = tuple(i for i, (a, b) in enumerate(zip(first, sets, strict=True)) if a != b)
        shared = [item for i, item in enumerate(sets) if i not in differ]
        own = [sets[i] for i in differ]
        if not _apart(shared, own):
            return data, list(sets)
        if (key, differ) not in self.shared:
            self.shared[(key, differ)] = None
            with contextlib.suppress(ConfigError):
                self.shared[(key, differ)] = apply_overrides(data, shared, "--set")
        base = self.shared[(key, differ)]
        return (data, list(sets)) if base is None else (base, own)

    def __call__(self, overrides: Mapping[str, Any], sets: list[str], where: Path) -> Directories:
        # The overrides come from the inventory's listing, which is JSON: its text is a key for them.
        key = (json.dumps(dict(overrides), sort_keys=True, default=str), tuple(sets))
        if key not in self.known:
            data, config = self._validated(key[0], overrides, where), None
            if data is not None:
                base, own = self._split(key[0], data, key[1])
                with contextlib.suppress(ConfigError):
                    # The node's items are laid over `base` without copying the sections they leave
                    # alone: validation only reads them, and a thousand deep copies were a tenth of a plan.
                    config = validate_config(apply_overrides(base, own, "--set", share=True), "--set")
            if config is None:
                self.known[key] = directories(self.launch, overrides, sets, where)
            else:
                self.known[key] = (str(config.run_dir), str(config.checkpoint_dir))
        return self.known[key]
