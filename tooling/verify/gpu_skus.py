"""Per GPU model expectations (tooling/verify/profiles/gpu_skus.yml), chosen by the name nvidia-smi reports.

The table gives each model's memory size, PCIe link, NVLink all_reduce bandwidth and fabric port rate. A
site changes any of them in its own profile under `gpu_skus:` (by the table's keys); a key the table does
not have is an error naming the profile file and the key. A node whose GPUs match no entry, or that mixes
models, is judged by the profile's generic thresholds, and the rows that use them say so.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ddp.config_errors import ConfigError, format_validation_error, load_yaml_mapping
from tooling.verify.profiles import PROFILES_DIR, Band, GpuSkuNumbers, Profile

SKU_FILE = PROFILES_DIR / "gpu_skus.yml"


class GpuSku(GpuSkuNumbers):
    label: str = Field(min_length=1)
    match: list[str] = Field(min_length=1, description="regular expressions for the whole nvidia-smi name")

    @field_validator("match")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {pattern!r} ({exc})") from None
        return patterns

    def matches(self, name: str) -> bool:
        return any(re.fullmatch(p, name.strip(), re.IGNORECASE) for p in self.match)


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")
    skus: dict[str, GpuSku] = Field(min_length=1)


def load_sku_table(path: Path = SKU_FILE) -> dict[str, GpuSku]:
    """The table in file order (the first entry that matches a name wins); errors name file and key."""
    data = load_yaml_mapping(path)
    try:
        return dict(_Table.model_validate(data).skus)
    except ValidationError as exc:
        raise format_validation_error(path, exc) from None


@functools.cache
def _builtin() -> dict[str, GpuSku]:
    return load_sku_table()


def sku_table(profile: Profile, source: Path | str = "the verification profile") -> dict[str, GpuSku]:
    """The built-in table with the profile's `gpu_skus:` numbers laid over it."""
    table = dict(_builtin())
    unknown = sorted(set(profile.gpu_skus) - set(table))
    if unknown:
        known = ", ".join(table)
        raise ConfigError(
            Path(source),
            [f"gpu_skus.{key}: not a GPU model of {SKU_FILE.name} (known: {known})" for key in unknown],
        )
    for key, numbers in profile.gpu_skus.items():
        # Only what the site wrote replaces the table's value; the rest stays.
        table[key] = table[key].model_copy(update={f: getattr(numbers, f) for f in numbers.model_fields_set})
    return table


@dataclass(frozen=True)
class SkuChoice:
    """The model a node's GPUs were matched to, or None and why not."""

    names: tuple[str, ...]
    key: str | None = None
    sku: GpuSku | None = None
    site_override: bool = False
    why_generic: str = ""

    @property
    def origin(self) -> str:
        where = "the site profile's gpu_skus" if self.site_override else SKU_FILE.name
        return f"{self.sku.label if self.sku else '?'} ({where})"

    def _no_figure(self, what: str) -> str:
        """Why the profile's generic figure applies: the model has no `what`, or no model was matched."""
        if self.sku is not None:
            return f"{SKU_FILE.name} gives no {what} for {self.sku.label}"
        return self.why_generic

    def nccl_band(self, profile: Profile) -> tuple[Band, str]:
        """The bus bandwidth band for this node and a note saying where it came from."""
        if self.sku is not None and self.sku.nccl_busbw_gbs is not None:
            return self.sku.nccl_busbw_gbs, f"threshold of {self.origin}"
        return profile.nccl_busbw_gbs, f"generic profile threshold: {self._no_figure('NVLink figure')}"

    def alltoall_band(self, profile: Profile) -> tuple[Band | None, str]:
        """The alltoall_perf band (the model's, else the profile's; None where neither has one) and where it
        came from."""
        if self.sku is not None and self.sku.nccl_alltoall_busbw_gbs is not None:
            return self.sku.nccl_alltoall_busbw_gbs, f"threshold of {self.origin}"
        why = self._no_figure("alltoall figure")
        if profile.nccl_alltoall_busbw_gbs is not None:
            return profile.nccl_alltoall_busbw_gbs, f"generic profile threshold: {why}"
        return None, f"no threshold: {why}, and the profile sets no nccl_alltoall_busbw_gbs"

    def ib_rate(self, generic_gbps: float) -> tuple[float, str]:
        """The fabric port rate for this node (the model's, else the profile's `generic_gbps`) and where it
        came from."""
        if self.sku is not None and self.sku.ib_port_rate_gbps is not None:
            return self.sku.ib_port_rate_gbps, f"rate of {self.origin}"
        return generic_gbps, f"the profile's rate: {self._no_figure('port rate')}"


def choose(
    profile: Profile, names: Iterable[str], source: Path | str = "the verification profile"
) -> SkuChoice:
    """Match the node's GPU names (one per GPU) to the table; several models on one node match none."""
    distinct = tuple(sorted({n.strip() for n in names if n.strip()}))
    if not distinct:
        return SkuChoice(distinct, why_generic="nvidia-smi reported no GPU name")
    if len(distinct) > 1:
        return SkuChoice(distinct, why_generic=f"mixed GPU models on one node ({', '.join(distinct)})")
    for key, sku in sku_table(profile, source).items():
        if sku.matches(distinct[0]):
            return SkuChoice(distinct, key, sku, site_override=key in profile.gpu_skus)
    return SkuChoice(distinct, why_generic=f"{distinct[0]!r} is not in {SKU_FILE.name}")
