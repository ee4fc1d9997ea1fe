"""What a gate can judge: the catalogue of criteria and the `gate:` schema of tooling/phases.yml.

The catalogue fixes what each criterion means (unit, which direction is better, whether it applies to CPU
nodes); the numbers live in tooling/phases.yml and may be changed per site (tooling/gates/site.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from tooling.plan.bounds import Bound, Op, parse_bound

Direction = Literal["higher", "lower", "exact"]
Unit = Literal["samples/s", "ratio", "count", "processes"]


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    unit: Unit
    direction: Direction
    help: str
    gpu_only: bool = False
    # Derived criteria take their bound from the phase itself (world size), never from a number in a file.
    derived: bool = False

    @property
    def default_op(self) -> Op:
        return {"higher": ">=", "lower": "<=", "exact": "=="}[self.direction]  # type: ignore[return-value]

    def allows(self, op: str) -> bool:
        return op == "==" or (
            (self.direction == "higher" and op in (">=", ">"))
            or (self.direction == "lower" and op in ("<=", "<"))
        )


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "world_size",
            "processes in the run",
            "processes",
            "exact",
            "the run has the phase's process count (nodes x processes per node)",
            derived=True,
        ),
        Kind("throughput", "throughput", "samples/s", "higher", "job-wide samples per second"),
        Kind(
            "throughput_sigma",
            "throughput sigma",
            "samples/s",
            "lower",
            "standard deviation of the job-wide rate over the run",
        ),
        Kind(
            "comm_overhead",
            "communication overhead",
            "ratio",
            "lower",
            "share of a step spent on gradient communication (no_sync probe)",
        ),
        Kind("gpu_utilisation", "GPU utilisation", "ratio", "higher", "mean GPU utilisation", gpu_only=True),
        Kind("memory_pressure", "memory pressure", "ratio", "lower", "highest host (or GPU) memory in use"),
        Kind(
            "nonfinite_losses", "non-finite losses", "count", "lower", "steps with NaN/inf loss or gradients"
        ),
        Kind(
            "grad_sync_accuracy",
            "gradient-sync accuracy",
            "ratio",
            "higher",
            "share of cross-rank parameter checks in agreement",
        ),
        Kind("packet_loss", "packet loss", "ratio", "lower", "dropped / total packets on the nodes"),
        Kind(
            "thermal_throttling",
            "thermal throttling events",
            "count",
            "lower",
            "CPU core throttle events on the nodes",
        ),
        Kind(
            "uptime",
            "uptime",
            "ratio",
            "higher",
            "share of scrape intervals with every rank up and training advancing",
        ),
        Kind(
            "scaling_efficiency",
            "scaling efficiency",
            "ratio",
            "higher",
            "X(N) / (X(N0) * N / N0) against the previous phase's measured throughput",
        ),
        Kind(
            "efficiency_degradation",
            "efficiency degradation",
            "ratio",
            "lower",
            "drop of scaling efficiency relative to the previous phase's",
        ),
        Kind(
            "stragglers",
            "straggler ranks",
            "count",
            "lower",
            "ranks whose own work per step exceeded the median rank's by more than metrics.straggler_margin",
        ),
        Kind(
            "ranks_in_sync",
            "ranks out of sync or missing",
            "count",
            "lower",
            "ranks missing from the run plus parameter-check disagreements",
        ),
    )
}
CONFIGURABLE = [name for name, kind in KINDS.items() if not kind.derived]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CriterionSpec(_Strict):
    """One criterion of a phase: the target (PASS) and the minimum (below it: FAIL)."""

    kind: ClassVar[Kind]
    target: Bound
    minimum: Bound

    @field_validator("target", "minimum", mode="before")
    @classmethod
    def _parse(cls, raw: object) -> Bound:
        return parse_checked(cls.kind, raw)

    @model_validator(mode="after")
    def _target_implies_minimum(self) -> CriterionSpec:
        check_order(self.target, self.minimum)
        return self


class CriterionOverride(_Strict):
    """A site's change to one criterion: new bounds, or a waiver (with the reason it is acceptable)."""

    kind: ClassVar[Kind]
    target: Bound | None = None
    minimum: Bound | None = None
    waive: str | None = Field(default=None, min_length=3)

    @field_validator("target", "minimum", mode="before")
    @classmethod
    def _parse(cls, raw: object) -> Bound | None:
        return None if raw is None else parse_checked(cls.kind, raw)

    @model_validator(mode="after")
    def _says_something(self) -> CriterionOverride:
        if self.target is None and self.minimum is None and self.waive is None:
            raise ValueError("expected target, minimum or waive (a reason) for this criterion")
        if self.target is not None and self.minimum is not None:
            check_order(self.target, self.minimum)
        return self


def parse_checked(kind: Kind, raw: object) -> Bound:
    bound = parse_bound(raw, default_op=kind.default_op, percent_allowed=kind.unit == "ratio")
    if not kind.allows(bound.op):
        better = {"higher": "'>=' or '>'", "lower": "'<=' or '<'", "exact": "'=='"}[kind.direction]
        raise ValueError(f"{kind.label}: {kind.direction} is better, so expected {better} (got {bound.op!r})")
    return bound


def check_order(target: Bound, minimum: Bound) -> None:
    if not target.at_least_as_strict_as(minimum):
        raise ValueError(
            f"target {target.op} {target.value:g} is looser than minimum {minimum.op} {minimum.value:g}; "
            "expected a target at least as strict as the minimum"
        )


def _per_kind(base: type[BaseModel], kind: Kind) -> type[BaseModel]:
    return type(f"{base.__name__}_{kind.name}", (base,), {"kind": kind, "__module__": __name__})


def _section(name: str, base: type[BaseModel], names: list[str]) -> type[BaseModel]:
    # One optional field per criterion, so a typo is "unknown key" and errors carry the criterion's path.
    fields: dict[str, Any] = {n: (_per_kind(base, KINDS[n]) | None, None) for n in names}
    model: type[BaseModel] = create_model(name, __base__=_Strict, **fields)
    return model


GateSpec = _section("GateSpec", CriterionSpec, CONFIGURABLE)
# Sites may also waive a derived criterion (a rehearsal on fewer processes), never re-number it.
OverrideSection = _section("OverrideSection", CriterionOverride, list(KINDS))


def specs_of(section: BaseModel | None) -> dict[str, Any]:
    """The criteria that a GateSpec/OverrideSection sets, by name, in catalogue order."""
    if section is None:
        return {}
    return {name: value for name, value in section if value is not None}


if TYPE_CHECKING:  # the sections are built from the catalogue at import time; type checkers see a model
    GateSection = BaseModel
    SiteSection = BaseModel
else:
    GateSection = GateSpec
    SiteSection = OverrideSection
