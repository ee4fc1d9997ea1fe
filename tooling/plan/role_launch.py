"""The phase's launch as role ddp_trainer reads it (`_ddp_trainer_launch`), from the arguments tasks/phase.yml
hands its `ddp_launch` filter.

Two callers: the filter itself (plugins/filter/ddp_launch.py, inside Ansible) and the one-pass plan
(tooling.job.one_pass_plan, which evaluates tasks/phase.yml in-process). Both get the same plain JSON data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ddp.config_errors import format_validation_error
from tooling.plan.launch import derive_launch
from tooling.plan.phases import PhasePlan, load_phases


def plain(value: Any) -> Any:
    """Data as JSON has it (Ansible's lazily templated, tagged containers included): the plan models are
    strict, and what the role publishes travels as JSON."""
    return json.loads(json.dumps(value))


def play_plan(plan_file: str, phases: Any, rendezvous: Any, metrics: Any) -> PhasePlan:
    """The plan the play holds (vars_files, or `-e @site-phases.yml`, which beats them), else the file.

    Raises ddp.config_errors.ConfigError naming the play's sections when they do not make a plan."""
    if not isinstance(phases, Mapping):
        return load_phases(plan_file)
    sections = {"phases": phases, "rendezvous": rendezvous, "metrics": metrics}
    data = {key: plain(value) for key, value in sections.items() if value is not None}
    try:
        return PhasePlan.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error("the play's phases/rendezvous/metrics", exc, model=PhasePlan) from None


def role_launch(
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
    """`derive_launch(...).as_vars()` as plain data. Raises ConfigError or tooling.plan.launch.LaunchError."""
    launch = derive_launch(
        play_plan(plan_file, phases, rendezvous, metrics),
        {str(k): [str(h) for h in v] for k, v in groups.items()},
        hostvars,
        phase=str(phase or ""),
        play_hosts=None if play_hosts is None else [str(h) for h in play_hosts],
        nodes_group=nodes_group,
        rendezvous_host=str(rendezvous_host or ""),
        exclude=[str(h) for h in exclude or []],
    )
    return plain(launch.as_vars())  # type: ignore[no-any-return]
