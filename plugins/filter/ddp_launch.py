"""Jinja filters over tooling/plan/launch.py, so the roles derive a phase's launch where tooling does.

    {{ ddp_trainer_phases_file | ddp_launch(phases=..., rendezvous=..., metrics=..., hostvars=hostvars,
       groups=groups, phase=ddp_trainer_phase, play_hosts=ansible_play_hosts_all) }}
    {{ ddp_trainer_run_root | default(none) | ddp_run_root }}

Registered through ansible.cfg's `filter_plugins` (and ANSIBLE_FILTER_PLUGINS where molecule or a test runs
Ansible with another configuration).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError
from pydantic import ValidationError

# Ansible may run from an interpreter that has not installed the project: the checkout holding this file
# is the one whose roles are running, so its packages are the ones to read.
_PROJECT = Path(__file__).resolve().parents[2]
if str(_PROJECT) not in sys.path:
    sys.path.append(str(_PROJECT))

from ddp.config_errors import ConfigError, format_validation_error  # noqa: E402
from tooling.plan.launch import LaunchError, derive_launch, run_root  # noqa: E402
from tooling.plan.phases import PhasePlan, load_phases  # noqa: E402


def _plain(value: Any) -> Any:
    """Ansible's lazily templated, tagged containers as plain JSON data (the plan models are strict)."""
    return json.loads(json.dumps(value))


def _plan(plan_file: str, phases: Any, rendezvous: Any, metrics: Any) -> PhasePlan:
    """The plan the play holds (vars_files, or `-e @site-phases.yml`, which beats them), else the file."""
    if not isinstance(phases, Mapping):
        return load_phases(plan_file)
    sections = {"phases": phases, "rendezvous": rendezvous, "metrics": metrics}
    data = {key: _plain(value) for key, value in sections.items() if value is not None}
    try:
        return PhasePlan.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error("the play's phases/rendezvous/metrics", exc, model=PhasePlan) from None


def ddp_launch(
    plan_file: str,
    *,
    hostvars: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Sequence[str]],
    phases: Any = None,
    rendezvous: Any = None,
    metrics: Any = None,
    phase: Any = "",
    play_hosts: Sequence[str] | None = None,
    nodes_group: str = "nodes",
    rendezvous_host: str = "",
    exclude: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The phase's launch (tooling.plan.launch.Launch.as_vars) for the roles."""
    try:
        plan = _plan(plan_file, phases, rendezvous, metrics)
        launch = derive_launch(
            plan,
            {str(k): [str(h) for h in v] for k, v in groups.items()},
            hostvars,
            phase=str(phase or ""),
            play_hosts=None if play_hosts is None else [str(h) for h in play_hosts],
            nodes_group=nodes_group,
            rendezvous_host=str(rendezvous_host or ""),
            exclude=[str(h) for h in exclude or []],
        )
    except (ConfigError, LaunchError) as exc:
        raise AnsibleFilterError(str(exc)) from None
    return _plain(launch.as_vars())  # type: ignore[no-any-return]


def ddp_run_root(value: Any = None) -> str:
    """`ddp_trainer_run_root` when set, else role ddp_trainer's default (its defaults file)."""
    return run_root(value)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"ddp_launch": ddp_launch, "ddp_run_root": ddp_run_root}
