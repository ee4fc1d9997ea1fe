"""The trainer's configuration schema. Unknown keys and wrong types are errors, never ignored.

`load_config(path, overrides)` is the only way in: it reads YAML, applies `key.path=value` overrides
(how sweeps and the CLI vary one setting), validates, and raises `ConfigError` naming the file and key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ddp.config_errors import ConfigError, format_validation_error, load_yaml_mapping

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
ImportPath = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


class RunSection(Strict):
    name: str = Field("ddp-run", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # Per-rank logs, status files, the summary and (by default) checkpoints live under here.
    output_dir: str = "runs"


class DistributedSection(Strict):
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    # Sets GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME when given; multi-NIC hosts need it.
    socket_ifname: str | None = None
    timeout_s: PositiveInt = 300


class DDPSection(Strict):
    bucket_cap_mb: PositiveFloat = 25.0
    gradient_as_bucket_view: bool = True
    static_graph: bool = False
    find_unused_parameters: bool = False
    grad_accum_steps: PositiveInt = 1
    fp16_compression: bool = False


class SyntheticWorkload(Strict):
    kind: Literal["synthetic"]
    input_dim: PositiveInt = 512
    hidden_dim: PositiveInt = 1024
    num_layers: PositiveInt = 4
    num_classes: PositiveInt = 10
    num_samples: PositiveInt = 32768


class DigitsWorkload(Strict):
    kind: Literal["digits"]
    hidden_dim: PositiveInt = 128


class ImportWorkload(Strict):
    kind: Literal["import"]
    model: ImportPath
    dataset: ImportPath
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    dataset_kwargs: dict[str, Any] = Field(default_factory=dict)
    loss: Literal["cross_entropy", "mse"] | ImportPath = "cross_entropy"


Workload = Annotated[SyntheticWorkload | DigitsWorkload | ImportWorkload, Field(discriminator="kind")]
WORKLOAD_KINDS = ("synthetic", "digits", "import")


class OptimizerSection(Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.05
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    grad_clip_norm: PositiveFloat | None = None


class ScheduleSection(Strict):
    kind: Literal["constant", "cosine", "step"] = "constant"
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    step_size: PositiveInt = 1000
    gamma: PositiveFloat = 0.5
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0


class TrainingSection(Strict):
    batch_size: PositiveInt = 64
    max_steps: PositiveInt = 1000
    seed: int = 0
    nonfinite_policy: Literal["stop", "skip"] = "stop"
    log_every_steps: PositiveInt = 20
    num_workers: Annotated[int, Field(ge=0)] = 0


class CheckpointSection(Strict):
    enabled: bool = True
    # Relative paths are under run.output_dir.
    dir: str = "checkpoints"
    every_steps: PositiveInt | None = 200
    every_minutes: PositiveFloat | None = None
    keep_last: PositiveInt = 3
    resume: bool = True
    # every_node: each node's local rank 0 keeps a copy on its own disk (survives losing any one node);
    # rank0: only global rank 0 writes (use it when checkpoint.dir is on a filesystem shared by the nodes).
    writers: Literal["every_node", "rank0"] = "every_node"

    @model_validator(mode="after")
    def _some_trigger(self) -> CheckpointSection:
        if self.enabled and self.every_steps is None and self.every_minutes is None:
            raise ValueError("checkpoint.enabled needs every_steps or every_minutes (or both)")
        return self


class MetricsSection(Strict):
    enabled: bool = True
    # Rank r on a node listens on base_port + local_rank.
    base_port: Port = 9500
    # None: the address the node's hostname resolves to (the cluster interface), never 0.0.0.0 by accident.
    bind_address: str | None = None
    window_steps: Annotated[int, Field(ge=2)] = 50
    sync_check_every_steps: PositiveInt = 50
    comm_probe_every_steps: PositiveInt = 100
    status_every_steps: PositiveInt = 10


class LoggingSection(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class TrainerConfig(Strict):
    run: RunSection = Field(default_factory=RunSection)
    distributed: DistributedSection = Field(default_factory=DistributedSection)
    ddp: DDPSection = Field(default_factory=DDPSection)
    workload: Workload
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)

    @property
    def output_dir(self) -> Path:
        return Path(self.run.output_dir)

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / self.checkpoint.dir


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (value parsed as YAML) to a copy of `data`."""
    result = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(source, [f"override {item!r}: expected KEY.PATH=VALUE"])
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(source, [f"override {item!r}: {part} is not a section"])
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return result


def validate_config(data: dict[str, Any], source: str | Path = "<config>") -> TrainerConfig:
    try:
        return TrainerConfig.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(source, exc, WORKLOAD_KINDS) from None


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Overlay `top` on `base`. A section that changes `kind` (e.g. workload synthetic -> digits) replaces the
    base section whole: the other kind's keys would be unknown to it."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        below = merged.get(key)
        if (
            isinstance(value, dict)
            and isinstance(below, dict)
            and value.get("kind", below.get("kind")) != below.get("kind")
        ):
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_with_base(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config; `base: other.yaml` (relative to this file) is read first and overlaid."""
    file = Path(path).resolve()
    if file in _seen:
        raise ConfigError(path, [f"base: circular reference through {file.name}"])
    data = load_yaml_mapping(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(path, [f"base: expected a file name, got {type(base).__name__}"])
    return _deep_merge(read_with_base(Path(path).parent / base, (*_seen, file)), data)


def load_config(
    path: str | Path, overrides: list[str] | None = None, overlay: str | Path | None = None
) -> TrainerConfig:
    """Read `path` (with its bases), lay the `overlay` file over it, apply `overrides`, validate."""
    data = read_with_base(path)
    source = path
    if overlay is not None:
        data = _deep_merge(data, read_with_base(overlay))
        source = overlay
    if overrides:
        data = apply_overrides(data, overrides, f"{source} (overrides)")
    return validate_config(data, source)
