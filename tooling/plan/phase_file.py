"""Which phases file is in force, and the phase names in it read without validating the plan.

Light on purpose (yaml only, no pydantic): `tooling --help` lists the plan's phase names, and a help
screen must not pay for the plan's schema. The plan itself (tooling.plan.phases) is validated when a
command runs; both read the same file through plan_file() and order phases by the same roll_out_key().
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ddp.config_errors import ConfigError, load_yaml_mapping

DEFAULT_PHASES_FILE = Path(__file__).resolve().parents[1] / "phases.yml"
# A site's own complete phases file (`tooling --phases FILE` sets it); read instead of the default.
PHASES_FILE_ENV = "DDP_PHASES_FILE"


def site_phases_file() -> Path | None:
    """The file named by DDP_PHASES_FILE, made absolute against the current directory; None when unset.

    Absolute because ansible-runner and other children may run elsewhere. An empty value counts as unset.
    """
    value = os.environ.get(PHASES_FILE_ENV, "")
    if not value:
        return None
    file = Path(value).expanduser().absolute()
    if not file.is_file():
        why = "is a directory" if file.is_dir() else "file not found"
        raise ConfigError(
            PHASES_FILE_ENV,
            [f"{file}: {why}; expected a complete phases file (a copy of {DEFAULT_PHASES_FILE}, edited)"],
        )
    return file


def plan_file() -> Path:
    """The phases file in force: the site file named by DDP_PHASES_FILE, else tooling/phases.yml."""
    return site_phases_file() or DEFAULT_PHASES_FILE


def roll_out_key(name: str, nodes: int) -> tuple[int, str]:
    """The roll-out order of phases: smaller phases first, then by name."""
    return (nodes, name)


def phase_names() -> list[str]:
    """The phase names of the plan in force, in roll-out order, from the file's `phases` section alone.

    Raises ConfigError where that section is not a mapping of phases with whole `nodes` counts; anything
    else wrong in the plan is load_phases()'s to report.
    """
    file = plan_file()
    phases: Any = load_yaml_mapping(file).get("phases")
    if not isinstance(phases, dict) or not phases:
        raise ConfigError(file, ["phases: expected a mapping of phase names to phases"])
    keys = []
    for name, phase in phases.items():
        nodes = phase.get("nodes") if isinstance(phase, dict) else None
        if not isinstance(nodes, int) or isinstance(nodes, bool):
            raise ConfigError(file, [f"phases.{name}.nodes: expected a whole number of nodes"])
        keys.append(roll_out_key(str(name), nodes))
    return [name for _, name in sorted(keys)]
