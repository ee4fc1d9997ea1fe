"""The roll-out plan (tooling/phases.yml): the one source of truth for phase sizes and groups.

Everything else (inventory groups, torchrun arguments, Prometheus targets, gates) derives from it. A site
keeps its own complete copy and names it with DDP_PHASES_FILE (`tooling --phases FILE` sets it); then that
file is the plan for tooling and, through `-e @FILE` (tooling/runner.py), for the playbooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ddp import rendezvous_poll
from ddp.config_errors import ConfigError, format_validation_error, load_yaml_mapping
from tooling.plan.criteria import GateSection
from tooling.plan.phase_file import DEFAULT_PHASES_FILE, roll_out_key, site_phases_file

# The data file stays at tooling/phases.yml: playbooks name it in vars_files (../tooling/phases.yml).
# Top-level sections a site file must spell out: Ansible replaces whole variables, so a section left out
# of `-e @site-file` would come from the playbooks' vars_files (the project file) while tooling took the
# schema's defaults; the two could disagree without anyone noticing.
_SITE_SECTIONS = ("phases", "rendezvous", "metrics")
# Phase configs are named relative to the project root (roles/ddp_trainer copies them from there).
PROJECT_ROOT = DEFAULT_PHASES_FILE.parent.parent
PositiveInt = Annotated[int, Field(gt=0, le=2**31 - 1)]
Seconds = Annotated[int, Field(gt=0, le=7 * 24 * 3600)]

# Ports other services of the cluster listen on (their roles' defaults, tests/unit/test_elk_ports.py):
# the trainer's rendezvous and per-rank metrics must stay clear of them.
RESERVED_PORTS = {
    3000: "Grafana",
    5044: "Logstash (beats input)",
    5601: "Kibana",
    9090: "Prometheus",
    9093: "Alertmanager",
    9100: "node_exporter",
    9200: "Elasticsearch (HTTP)",
    9300: "Elasticsearch (transport)",
    9400: "the NVIDIA DCGM exporter",
    9600: "Logstash (API)",
}
# Ansible's own groups: a phase group with one of these names would take in every host.
_ANSIBLE_GROUPS = {"all", "ungrouped"}


def _unprivileged(port: int) -> int:
    if port < 1024:
        raise ValueError(
            f"expected a port from 1024 to 65535 (got {port}); ports below 1024 need root and the "
            "trainer runs as an unprivileged account"
        )
    return port


Port = Annotated[int, Field(ge=1, le=65535), AfterValidator(_unprivileged)]


class _Strict(BaseModel):
    # strict: `nodes: true` or `port: "29400"` is a mistake to report, not a value to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)


def _config_path(value: str) -> str:
    path = Path(value)
    if not value.strip() or "\0" in value or path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"expected a path inside the project such as ddp/configs/phase1.yaml (got {value!r})"
        )
    if path.suffix not in (".yaml", ".yml"):
        raise ValueError(f"expected a .yaml trainer config (got {value!r})")
    return value


class Phase(_Strict):
    group: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    nodes: PositiveInt
    nproc_per_node: PositiveInt
    min_nodes: PositiveInt
    config: Annotated[str, AfterValidator(_config_path)]
    previous: str | None = None
    fallback: str | None = None
    # The go/no-go criteria (tooling/plan/criteria.py has the catalogue; sites override them with
    # `tooling gate --criteria FILE`, see tooling/gates/site.py).
    gate: GateSection = Field(default_factory=GateSection)

    @property
    def world_size(self) -> int:
        return self.nodes * self.nproc_per_node

    @model_validator(mode="after")
    def _min_nodes_fits(self) -> Phase:
        if self.min_nodes > self.nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) must not exceed nodes ({self.nodes})")
        if self.group in _ANSIBLE_GROUPS:
            raise ValueError(
                f"group: {self.group!r} is Ansible's own group of every host; name the phase's group"
            )
        return self


class Rendezvous(_Strict):
    port: Port = 29400
    backend: str = Field(rendezvous_poll.BACKEND, pattern=r"^[a-z][a-z0-9_-]*$")
    disable_shared_tcp_store: bool = True
    join_timeout_s: Seconds = 120
    # torchrun's own defaults apply when these are left out (30 s and 60 s): how long the rendezvous
    # waits for more nodes once min_nodes joined, and a store read may take on a slow network.
    last_call_timeout_s: Seconds | None = None
    read_timeout_s: Seconds | None = None
    max_restarts: Annotated[int, Field(ge=0, le=1000)] = 3
    # How often each node's agent polls its ranks and, while they are healthy, reads the rendezvous
    # state from the store to see whether a node is waiting to restart the job. Both polls sit on the
    # recovery path one after the other (the failed node's agent sees its dead rank, joins a new round;
    # the other agents see it waiting), so the default is short; every healthy agent reads the store
    # once an interval, so sites of hundreds of nodes raise it (README, "Large sites").
    monitor_interval_s: Annotated[float, Field(ge=0.05, le=3600)] = 0.25


class MetricsPorts(_Strict):
    base_port: Port = 9500


def _first_problem_in_links(phases: dict[str, Phase]) -> str | None:
    known = ", ".join(phases)
    groups: dict[str, str] = {}
    for name, phase in phases.items():
        key = f"phases.{name}"
        if phase.group in groups:
            first = groups[phase.group]
            return f"{key}.group: {phase.group!r} is already the group of phase {first!r}"
        groups[phase.group] = name
        for link in ("previous", "fallback"):
            target = getattr(phase, link)
            if target is None:
                continue
            if target not in phases:
                return f"{key}: {link} {target!r} is not a defined phase; expected one of: {known}"
            if target == name:
                return f"{key}: {link} {target!r} is the phase itself"
            there = phases[target].nodes
            if link == "previous" and there >= phase.nodes:
                return (
                    f"{key}: groups nest, so it cannot be smaller than {target!r} or the same size "
                    f"(nodes: {phase.nodes} here, {there} in {target!r})"
                )
            if link == "fallback" and there >= phase.nodes:
                return (
                    f"{key}: fallback {target!r} must have fewer nodes than the phase it stands in for "
                    f"(nodes: {there} there, {phase.nodes} here)"
                )
    return None


def _first_problem_in_ports(plan: PhasePlan) -> str | None:
    widest_name, widest = max(plan.phases.items(), key=lambda item: item[1].nproc_per_node)
    base = plan.metrics.base_port
    last = base + widest.nproc_per_node - 1
    span = f"{base}..{last} (base_port + local rank; phase {widest_name} runs {widest.nproc_per_node} a node)"
    if last > 65535:
        return f"metrics.base_port: the ranks' ports {span} run past 65535; choose a lower base_port"
    for port, owner in sorted(RESERVED_PORTS.items()):
        if base <= port <= last:
            return f"metrics.base_port: the ranks' ports {span} take {port}, the port of {owner}"
    rdzv = plan.rendezvous.port
    if rdzv in RESERVED_PORTS:
        return f"rendezvous.port: {rdzv} is the port of {RESERVED_PORTS[rdzv]}; choose another"
    if base <= rdzv <= last:
        return f"rendezvous.port: {rdzv} is one of the ranks' metrics ports {span}"
    return None


class PhasePlan(_Strict):
    phases: Annotated[dict[str, Phase], Field(min_length=1)]
    rendezvous: Rendezvous = Field(default_factory=Rendezvous)
    metrics: MetricsPorts = Field(default_factory=MetricsPorts)

    @model_validator(mode="after")
    def _links_resolve(self) -> PhasePlan:
        problem = _first_problem_in_links(self.phases) or _first_problem_in_ports(self)
        if problem is not None:
            raise ValueError(problem)
        return self

    def get(self, name: str) -> Phase:
        try:
            return self.phases[name]
        except KeyError:
            known = ", ".join(self.phases)
            raise ConfigError("phases", [f"unknown phase {name!r}; expected one of: {known}"]) from None

    def ordered(self) -> list[tuple[str, Phase]]:
        return sorted(self.phases.items(), key=lambda item: roll_out_key(item[0], item[1].nodes))

    def shaped(self, nodes: int, world_size: int) -> list[str]:
        """The phases (in roll-out order) whose size is `nodes` nodes and `world_size` processes."""
        return [
            name for name, phase in self.ordered() if phase.nodes == nodes and phase.world_size == world_size
        ]

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
    """The plan in `path`; without one, the site file named by DDP_PHASES_FILE, else tooling/phases.yml."""
    if path is not None:
        return _load(Path(path))
    site = site_phases_file()
    return _load(site, site=True) if site is not None else _load(DEFAULT_PHASES_FILE)


def _load(file: Path, *, site: bool = False) -> PhasePlan:
    data = load_yaml_mapping(file)
    if site:
        missing_sections = [
            f"{key}: missing; a site phases file spells out every section of {DEFAULT_PHASES_FILE.name} "
            "(Ansible would take a section left out from the project's file)"
            for key in _SITE_SECTIONS
            if key not in data
        ]
        if missing_sections:
            raise ConfigError(file, missing_sections)
    try:
        plan = PhasePlan.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(file, exc, model=PhasePlan) from None
    missing = [
        f"phases.{name}.config: {PROJECT_ROOT / phase.config}: file not found"
        for name, phase in plan.phases.items()
        if not (PROJECT_ROOT / phase.config).is_file()
    ]
    if missing:
        raise ConfigError(file, missing)
    return plan
