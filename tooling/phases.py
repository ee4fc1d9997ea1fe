"""The roll-out plan (tooling/phases.yml): the one source of truth for phase sizes and groups.

Everything else (inventory groups, torchrun arguments, Prometheus targets, gates) derives from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ddp.config_errors import ConfigError, format_validation_error, load_yaml_mapping
from tooling.gates.criteria import GateSection

DEFAULT_PHASES_FILE = Path(__file__).with_name("phases.yml")
PositiveInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Phase(_Strict):
    group: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    nodes: PositiveInt
    nproc_per_node: PositiveInt
    min_nodes: PositiveInt
    config: str
    previous: str | None = None
    fallback: str | None = None
    # The go/no-go criteria (tooling/gates/criteria.py has the catalogue; sites override them with
    # `tooling gate --criteria FILE`, see tooling/gates/site.py).
    gate: GateSection = Field(default_factory=GateSection)

    @property
    def world_size(self) -> int:
        return self.nodes * self.nproc_per_node

    @model_validator(mode="after")
    def _min_nodes_fits(self) -> Phase:
        if self.min_nodes > self.nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) must not exceed nodes ({self.nodes})")
        return self


class Rendezvous(_Strict):
    port: Annotated[int, Field(ge=1, le=65535)] = 29400
    backend: str = "c10d"
    disable_shared_tcp_store: bool = True
    join_timeout_s: PositiveInt = 120
    max_restarts: Annotated[int, Field(ge=0)] = 3
    monitor_interval_s: PositiveInt = 1


class MetricsPorts(_Strict):
    base_port: Annotated[int, Field(ge=1, le=65535)] = 9500


class PhasePlan(_Strict):
    phases: dict[str, Phase]
    rendezvous: Rendezvous = Field(default_factory=Rendezvous)
    metrics: MetricsPorts = Field(default_factory=MetricsPorts)

    @model_validator(mode="after")
    def _links_resolve(self) -> PhasePlan:
        for name, phase in self.phases.items():
            for link in ("previous", "fallback"):
                target = getattr(phase, link)
                if target is not None and target not in self.phases:
                    raise ValueError(f"phase {name!r}: {link} {target!r} is not a defined phase")
            if phase.previous is not None and self.phases[phase.previous].nodes > phase.nodes:
                raise ValueError(
                    f"phase {name!r}: groups nest, so it cannot be smaller than {phase.previous!r}"
                )
        return self

    def get(self, name: str) -> Phase:
        try:
            return self.phases[name]
        except KeyError:
            known = ", ".join(self.phases)
            raise ConfigError("phases", [f"unknown phase {name!r}; expected one of: {known}"]) from None

    def ordered(self) -> list[tuple[str, Phase]]:
        return sorted(self.phases.items(), key=lambda item: (item[1].nodes, item[0]))

    def max_nodes(self) -> int:
        return max(phase.nodes for phase in self.phases.values())

    def group_members(self, node_names: list[str]) -> dict[str, list[str]]:
        """Phase group -> its nodes, taking the first `nodes` of the ordered node list (groups nest)."""
        if len(node_names) < self.max_nodes():
            raise ConfigError(
                "phases", [f"{len(node_names)} nodes given, the largest phase needs {self.max_nodes()}"]
            )
        return {phase.group: node_names[: phase.nodes] for _, phase in self.ordered()}


def load_phases(path: str | Path | None = None) -> PhasePlan:
    file = Path(path) if path is not None else DEFAULT_PHASES_FILE
    data = load_yaml_mapping(file)
    try:
        return PhasePlan.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(file, exc) from None
