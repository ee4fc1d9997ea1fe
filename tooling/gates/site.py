"""Site overrides of the gate criteria: `tooling gate --criteria FILE`.

The file holds one top-level key, `gate_criteria`, so the same file can also sit in an inventory's
group_vars (e.g. inventory/production/group_vars/all/gate_criteria.yml) next to the site's other
settings. Under it, `all` applies to every phase and a phase name ("1", "2a", ...) to that phase; a
phase entry wins over `all`:

    gate_criteria:
      all:
        packet_loss: {waive: "no node_exporter here; the network is checked by tooling verify-node"}
      "1":
        throughput: {target: ">= 120", minimum: ">= 100"}   # this site's model is heavier

`target`/`minimum` replace the plan's bounds (same syntax as tooling/phases.yml). `waive: REASON` lets
the gate say GO although the criterion was not measured (NO DATA); a measured FAIL still blocks, since
the evidence contradicts it: change the bounds instead when a criterion does not fit the workload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ddp.config_errors import ConfigError, format_validation_error, load_yaml_mapping
from tooling.plan.bounds import Bound
from tooling.plan.criteria import KINDS, SiteSection, check_order, specs_of
from tooling.plan.phases import Phase, PhasePlan

ALL = "all"


class SiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate_criteria: dict[str, SiteSection]


@dataclass(frozen=True)
class Criterion:
    """One criterion as the gate applies it: bounds after site changes, and any waiver."""

    name: str
    target: Bound
    minimum: Bound
    waived: str | None = None
    changed_by: str | None = None  # the site file, when it changed the plan's bounds

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.as_dict(),
            "minimum": self.minimum.as_dict(),
            "waived": self.waived,
            "changed_by": self.changed_by,
        }


def load_site(path: Path, plan: PhasePlan) -> dict[str, dict[str, Any]]:
    data = load_yaml_mapping(path)
    try:
        site = SiteFile.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(path, exc) from None
    unknown = [key for key in site.gate_criteria if key != ALL and key not in plan.phases]
    if unknown:
        expected = ", ".join([ALL, *plan.phases])
        raise ConfigError(
            path, [f"gate_criteria.{k}: unknown phase; expected one of: {expected}" for k in unknown]
        )
    return {phase: specs_of(section) for phase, section in site.gate_criteria.items()}


def effective_criteria(
    phase_name: str,
    phase: Phase,
    site: dict[str, dict[str, Any]] | None = None,
    site_path: Path | None = None,
) -> dict[str, Criterion]:
    """The plan's criteria for the phase, its world size, then the site's `all` and phase entries."""
    plan_specs = specs_of(phase.gate)
    size = Bound("==", float(phase.world_size))
    criteria: dict[str, Criterion] = {"world_size": Criterion("world_size", size, size)}
    criteria.update({n: Criterion(n, s.target, s.minimum) for n, s in plan_specs.items()})
    problems: list[str] = []
    for scope in (ALL, phase_name):
        for name, override in (site or {}).get(scope, {}).items():
            key = f"gate_criteria.{scope}.{name}"
            current = criteria.get(name)
            if KINDS[name].derived and (override.target or override.minimum):
                problems.append(
                    f"{key}: derived from tooling/phases.yml (nodes x nproc_per_node); expected only waive"
                )
                continue
            if current is None:
                if scope == ALL:
                    continue  # `all` only touches the phases that have the criterion
                if override.target is None or override.minimum is None:
                    problems.append(
                        f"{key}: phase {phase_name} has no such criterion in tooling/phases.yml; "
                        "expected both target and minimum to add it"
                    )
                    continue
            target = override.target or (current.target if current else None)
            minimum = override.minimum or (current.minimum if current else None)
            assert target is not None and minimum is not None
            try:
                check_order(target, minimum)
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
                continue
            changed = override.target is not None or override.minimum is not None
            criteria[name] = Criterion(
                name,
                target,
                minimum,
                waived=override.waive or (current.waived if current else None),
                changed_by=str(site_path) if changed else (current.changed_by if current else None),
            )
    if problems:
        raise ConfigError(site_path or "site criteria", problems)
    return criteria
