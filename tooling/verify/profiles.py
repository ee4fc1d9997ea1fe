"""Verification profiles: what a node must measure to pass (tooling/verify/profiles/*.yml).

A numeric `Band` fails outside [min, max] and warns outside [warn_below, warn_above]; a `VersionRule`
fails below `min` (or off an `exact` pin) and warns below `warn_below`. Units are in the key names:
`_gb` = 10^9 bytes, `_gbps` = 10^9 bits/s, `_gbs` = 10^9 bytes/s (nccl-tests' GB/s).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from ddp.config_errors import ConfigError, format_validation_error, load_yaml_mapping
from tooling.verify.parsers import version_tuple

PROFILES_DIR = Path(__file__).with_name("profiles")
BUILTIN_PROFILES = ("production", "sandbox")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Strict):
    min: float | None = None
    warn_below: float | None = None
    warn_above: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        # Read left to right, the limits must not decrease: min <= warn_below <= warn_above <= max.
        named = [(k, getattr(self, k)) for k in ("min", "warn_below", "warn_above", "max")]
        present = [(k, v) for k, v in named if v is not None]
        for (k1, v1), (k2, v2) in itertools.pairwise(present):
            if v1 > v2:
                raise ValueError(f"{k1} ({v1:g}) must not exceed {k2} ({v2:g})")
        if not present:
            raise ValueError("give at least one of min, warn_below, warn_above, max")
        return self

    def describe(self, unit: str = "") -> str:
        suffix = f" {unit}" if unit else ""
        if self.min is not None and self.max is not None:
            text = f"{self.min:g}-{self.max:g}{suffix}"
        elif self.min is not None:
            text = f">= {self.min:g}{suffix}"
        elif self.max is not None:
            text = f"<= {self.max:g}{suffix}"
        else:
            text = "any"
        hints = []
        if self.warn_below is not None:
            hints.append(f"target >= {self.warn_below:g}")
        if self.warn_above is not None:
            hints.append(f"target <= {self.warn_above:g}")
        return text + (f" ({', '.join(hints)})" if hints else "")


def _check_version(value: str | None) -> str | None:
    if value is not None:
        try:
            version_tuple(value)
        except ValueError:
            raise ValueError(f"expected a version like 4.1 or 2.13.0 (got {value!r})") from None
    return value


class VersionRule(_Strict):
    min: str | None = None
    warn_below: str | None = None
    exact: str | None = None

    _versions = field_validator("min", "warn_below", "exact")(_check_version)

    @model_validator(mode="after")
    def _consistent(self) -> VersionRule:
        if self.exact is not None and (self.min is not None or self.warn_below is not None):
            raise ValueError("exact pins one version; do not combine it with min or warn_below")
        if self.min and self.warn_below and version_tuple(self.min) > version_tuple(self.warn_below):
            raise ValueError(f"min ({self.min}) must not exceed warn_below ({self.warn_below})")
        if self.min is None and self.exact is None and self.warn_below is None:
            raise ValueError("give min, warn_below or exact")
        return self

    def describe(self) -> str:
        if self.exact is not None:
            return f"== {self.exact}"
        text = f">= {self.min}" if self.min else "any"
        return text + (f" (target >= {self.warn_below})" if self.warn_below else "")


class InfinibandExpectation(_Strict):
    """The RDMA fabric a node must be on: every port Active/LinkUp at `port_rate_gbps` or faster."""

    ports_per_node: Band = Field(description="InfiniBand/RoCE ports the node must have")
    port_rate_gbps: float = Field(gt=0, description="slowest acceptable port rate (width x lane speed)")
    link_layer: Literal["InfiniBand", "Ethernet"] = Field(
        description="InfiniBand for an IB fabric, Ethernet for RoCE"
    )
    devices: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description="the fabric's ports, as shell patterns of 'device' or 'device/port' (e.g. mlx5_[0-7], "
        "mlx4_0/1); other RDMA ports (a storage or management RoCE port) are listed, not judged. "
        "Unset: every port is the fabric's",
    )
    # ib_write_bw between node pairs, as a fraction of the port rate. What a healthy link reaches: 98.01 of
    # 100 Gb/s over RoCE (oracle-quickstart/oci-hpc-oke docs/running-ib-write-bw-test.md, the fixture
    # ib_write_bw_roce_rdma_cm_4qp_98g.txt), 380-385 Gb/s expected on 400 Gb/s ports (oracle-quickstart/
    # oci-gpu-quickstarts nvidia/GB300/README-GB300.md, "IB Write BW"), "up to 48-49GB/s per NIC" at NDR
    # (https://github.com/NVIDIA/nccl-tests/issues/267): 0.95-0.98. Below 0.9 the pair is off its pace; below
    # 0.8 something is broken (a lane down, a congested or misconfigured path).
    write_bw_fraction: Band = Field(
        default_factory=lambda: Band(min=0.8, warn_below=0.9),
        description="ib_write_bw average between node pairs, as a fraction of the port rate",
    )


class GpuSkuNumbers(_Strict):
    """What one GPU model must show (tooling/verify/profiles/gpu_skus.yml); a site's profile may override any
    of them per model under `gpu_skus:` (tooling.verify.gpu_skus merges and checks the keys)."""

    gpu_memory_gib: Band | None = Field(None, description="each GPU's memory as nvidia-smi reports it")
    pcie_gen: int | None = Field(None, ge=1, le=7, description="the PCIe generation the board is built for")
    pcie_width: int | None = Field(None, ge=1, le=32, description="the PCIe lanes the board is built for")
    nccl_busbw_gbs: Band | None = Field(None, description="all_reduce_perf bus bandwidth over NVLink")
    nccl_alltoall_busbw_gbs: Band | None = Field(
        None, description="alltoall_perf bus bandwidth over NVLink inside the node"
    )
    ib_port_rate_gbps: float | None = Field(
        None, gt=0, description="each fabric port's rate on the model's reference system (one HCA per GPU)"
    )


class Profile(_Strict):
    description: str = ""
    cpu_cores: Band = Field(description="physical cores per node (sockets x cores per socket)")
    memory_gb: Band = Field(description="MemTotal in 10^9 bytes")
    numa_nodes: Band
    disk_free_gb: Band = Field(description="free space on the filesystem holding the checkpoint path")
    openmpi: VersionRule
    torch: VersionRule
    gloo_required: bool = True
    # GPU checks apply to hosts whose `accelerator` is cuda; others SKIP them.
    nccl_required_on_cuda: bool = True
    cuda: VersionRule
    gpus_per_node: Band
    nccl_busbw_gbs: Band = Field(description="all_reduce_perf bus bandwidth at the largest size")
    # None: no generic figure; nodes whose GPU model has one in gpu_skus.yml are judged, others are measured.
    nccl_alltoall_busbw_gbs: Band | None = Field(
        None, description="alltoall_perf bus bandwidth at the largest size"
    )
    inter_node_gbps: Band = Field(description="iperf3 received throughput between node pairs")
    gloo_busbw_gbs: Band = Field(description="Gloo all_reduce bus bandwidth across the phase's nodes")
    # None: measured and shown, not judged (GPU nodes get theirs from nccl-tests' alltoall_perf).
    gloo_alltoall_busbw_gbs: Band | None = Field(
        None, description="Gloo all_to_all bus bandwidth across the phase's nodes (CPU)"
    )
    # --pairs all: a direction below this fraction of its reverse (or of the median direction) is flagged.
    pair_asymmetry_ratio: float = Field(
        0.8, gt=0, le=1, description="slowest acceptable A->B / B->A iperf3 ratio between two nodes"
    )
    # Per GPU model: a site's own numbers for entries of tooling/verify/profiles/gpu_skus.yml, by its keys.
    gpu_skus: dict[str, GpuSkuNumbers] = Field(default_factory=dict)
    # `dcgmi diag -r N` at --level full: 1 quick (seconds), 2 medium (minutes), 3 long (tens of minutes).
    dcgm_diag_level: int = Field(1, ge=1, le=3, description="DCGM diagnostic run level for --level full")
    thermal_throttle_events: Band = Field(
        description="thermal throttle events: the largest CPU core/package counter since boot, and the number"
        " of GPUs whose clocks are held down by heat at the time of the check"
    )
    # None: the nodes are not on an RDMA fabric, and the port check SKIPs whatever it finds.
    infiniband: InfinibandExpectation | None = None


def resolve_profile_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text in BUILTIN_PROFILES:
        return PROFILES_DIR / f"{text}.yml"
    return Path(text)


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name (production, sandbox) or a YAML file; errors name file, key, expectation."""
    path = resolve_profile_path(name_or_path)
    if not path.is_file() and str(name_or_path) not in BUILTIN_PROFILES and path.suffix == "":
        known = ", ".join(BUILTIN_PROFILES)
        raise ConfigError(path, [f"no such profile file; use a YAML path or one of: {known}"])
    data = load_yaml_mapping(path)
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(path, exc) from None
