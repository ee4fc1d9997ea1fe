"""The phases' locked production configs: where they live, which version is current, how deploys use them.

`<home>/production/phase<P>-v<k>.yaml` (tooling.home) holds `base:` (the path of the phase's config in the
checkout, relative to the file) and only the settings a sweep chose; `phase<P>.current` names the version
in force. They live with the rest of this control machine's state, never in the source tree. Deploys and
local runs lay it over the phase's config; a user's `--config` and `--set` still go on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddp.config import _deep_merge, read_with_base
from ddp.config_errors import load_yaml_mapping
from tooling import home
from tooling.console import ToolingError
from tooling.plan.phases import PROJECT_ROOT


def directory(override: Path | None = None) -> Path:
    # Looked up at call time: `tooling --home` and the tests set the state root after import.
    return override if override is not None else home.production()


def stem(phase_name: str) -> str:
    return f"phase{phase_name}"


def pointer_path(phase_name: str, where: Path | None = None) -> Path:
    return directory(where) / f"{stem(phase_name)}.current"


def version_pattern(phase_name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(stem(phase_name))}-v(\d+)\.(?:yaml|evidence\.json)$")


def versions(phase_name: str, where: Path | None = None) -> list[int]:
    """Every version number used so far (a config or its evidence), so none is ever reused."""
    folder = directory(where)
    pattern = version_pattern(phase_name)
    found = {int(m.group(1)) for p in folder.glob(f"{stem(phase_name)}-v*") if (m := pattern.match(p.name))}
    return sorted(found)


@dataclass(frozen=True)
class LockedConfig:
    phase: str
    path: Path
    version: int
    settings: dict[str, Any]  # the file without `base:`: what the sweep chose

    def describe(self) -> str:
        return f"{self.path.name} (locked production settings of phase {self.phase}, version {self.version})"


def current(phase_name: str, phase_config: str, where: Path | None = None) -> LockedConfig | None:
    """The phase's locked production config, or None when the phase has none yet."""
    pointer = pointer_path(phase_name, where)
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    match = version_pattern(phase_name).match(name)
    if match is None or not name.endswith(".yaml"):
        raise ToolingError(
            f"{pointer}: expected the name of a {stem(phase_name)}-v<k>.yaml file, got {name!r}",
            hint="write the name of the version to use into it, or lock again with `tooling sweep --lock`",
        )
    path = pointer.parent / name
    if not path.is_file():
        raise ToolingError(
            f"{pointer} names {name}, which does not exist",
            hint="point it at an existing version, or lock again with `tooling sweep --lock`",
        )
    settings = load_yaml_mapping(path)
    base = settings.pop("base", None)
    expected = (PROJECT_ROOT / phase_config).resolve()
    if not isinstance(base, str) or (path.parent / base).resolve() != expected:
        raise ToolingError(
            f"{path}: base: expected the phase's config {expected} (tooling/phases.yml), got {base!r}",
            hint="the phase's config moved since the lock: run the sweep again and lock its result",
        )
    return LockedConfig(phase_name, path, int(match.group(1)), settings)


def config_path(phase_name: str, phase_config: str, where: Path | None = None) -> Path:
    """What a run of the phase starts from: the locked production config if there is one."""
    locked = current(phase_name, phase_config, where)
    return locked.path if locked is not None else PROJECT_ROOT / phase_config


def overlay(locked: LockedConfig | None, user_config: Path | None) -> dict[str, Any]:
    """The settings laid over the phase's config on the nodes: the locked ones, then the user's file."""
    settings = dict(locked.settings) if locked is not None else {}
    if user_config is not None:
        settings = _deep_merge(settings, read_with_base(user_config))
    return settings
