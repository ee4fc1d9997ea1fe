"""The trainer's configuration schema. Unknown keys and wrong types are errors, never ignored.

`load_config(path, overrides)` is the only way in: it reads YAML, applies `key.path=value` overrides
(how sweeps and the CLI vary one setting), validates, and raises `ConfigError` naming the file and key.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import socket
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from ddp.config_errors import (
    AliasExpansionError,
    ConfigError,
    annotations_at,
    format_validation_error,
    load_yaml_mapping,
    parse_yaml,
)

# Bounded so that a typo'd huge number is a config error here, not an overflow deep inside torch,
# a deque or a timedelta once the job is running.
MAX_INT = 2**31 - 1
PositiveInt = Annotated[int, Field(gt=0, le=MAX_INT)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
PositiveFloat = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
ImportPath = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]


def _usable_path(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a path, got an empty string")
    if "\0" in value:
        raise ValueError("a path cannot contain NUL characters")
    return value


PathText = Annotated[str, AfterValidator(_usable_path)]


def _is_wildcard(address: str) -> bool:
    """0.0.0.0, ::, [::] and the shorthands the socket layer reads as 0.0.0.0 ("0", "0.0")."""
    host = address.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        pass
    try:
        return socket.inet_aton(host) == bytes(4)
    except (OSError, ValueError):  # not an IPv4 address at all (a host name, NUL, a lone surrogate)
        return False


def _concrete_address(value: str) -> str:
    if _is_wildcard(value):
        raise ValueError(
            "a wildcard address listens on every interface of the node; expected the node's cluster "
            "address, or null for the address its hostname resolves to"
        )
    return value


BindAddress = Annotated[str, AfterValidator(_concrete_address)]


class Strict(BaseModel):
    # strict: YAML already gives real types, so `batch_size: true` or `lr: "fast"` is a mistake to report,
    # not something to coerce (lax mode turns true into 1).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=True)


class RunSection(Strict):
    name: str = Field("ddp-run", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # Per-rank logs, status files, the summary and (by default) checkpoints live under here.
    output_dir: PathText = "runs"


class DistributedSection(Strict):
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    # Sets GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME when given; multi-NIC hosts need it.
    socket_ifname: str | None = None
    timeout_s: Annotated[int, Field(gt=0, le=7 * 24 * 3600)] = 300


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
    # Milliseconds each forward pass waits, standing for an accelerator's compute: the host thread of a GPU
    # rank waits on the device in the same way. A CPU rehearsal then keeps a real model's step rhythm (step
    # counts mean seconds again for checkpoint and status intervals) and leaves the node's cores to
    # everything else on it, instead of spinning a tiny model as fast as the cores allow. 0: no wait.
    device_time_ms: Annotated[float, Field(ge=0, le=60_000)] = 0.0


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
    warmup_steps: Count = 0
    step_size: PositiveInt = 1000
    gamma: PositiveFloat = 0.5
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0


class TrainingSection(Strict):
    batch_size: PositiveInt = 64
    max_steps: PositiveInt = 1000
    # numpy takes seeds below 2**32; ranks add 1000 * (rank + 1) to it (ddp/trainer.py).
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    # stop: the run ends (exit 3) at once when gradients are clipped, otherwise at the heartbeat after a
    # NaN or inf loss (within log_every_steps + 1 steps: a heartbeat is read a step after it is sent); no
    # checkpoint ever holds one. skip: that step's update is dropped (ddp/trainer.py).
    nonfinite_policy: Literal["stop", "skip"] = "stop"
    log_every_steps: PositiveInt = 20
    num_workers: Count = 0


class CheckpointSection(Strict):
    enabled: bool = True
    # Relative paths are under the run's directory (run.output_dir/run.name).
    dir: PathText = "checkpoints"
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
    # None: the address the node's hostname resolves to (the cluster interface). Wildcards are refused:
    # the endpoints would be reachable from every network the node is on.
    bind_address: BindAddress | None = None
    window_steps: Annotated[int, Field(ge=2, le=MAX_INT)] = 50
    sync_check_every_steps: PositiveInt = 50
    comm_probe_every_steps: PositiveInt = 100
    status_every_steps: PositiveInt = 10
    # A rank whose own work per step (compute, without its wait in the all-reduce) exceeds the median
    # rank's by more than this share over the window is named a straggler.
    straggler_margin: Annotated[float, Field(gt=0, le=10)] = 0.2
    # One rank per node times a TCP handshake to every other node this often (ddp/links.py); 0: never.
    link_probe_every_s: Annotated[float, Field(ge=0, le=3600)] = 2.0
    # A link is slow while its recent round trip exceeds this many times its best one, and by at least
    # link_slow_extra_s (a datacenter round trip is tens of microseconds; a queue behind a slow or
    # congested link adds milliseconds).
    link_slow_factor: Annotated[float, Field(gt=1, le=1000)] = 5.0
    link_slow_extra_s: Annotated[float, Field(ge=0, le=60)] = 0.005


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
    def run_dir(self) -> Path:
        """Where the run's logs, status files and summary go."""
        return self.output_dir / self.run.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / self.checkpoint.dir


_KEY_PART = re.compile(r"^[^\s.=]+$")


def _is_text(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_text(typing.get_args(annotation)[0])
    if origin is Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    args = typing.get_args(annotation)
    if args and origin is not None and all(_is_text(a) or a is type(None) for a in args):
        return any(_is_text(a) for a in args)
    return annotation is str


def _override_value(parts: list[str], raw: str) -> Any:
    """The YAML value of `raw`, except where the schema wants text and YAML made a number of it.

    Run ids such as 20240101 or 0123 reach `run.name` through --set; YAML would turn them into the
    integers 20240101 and 83.
    """
    try:
        value = parse_yaml(raw)
    except AliasExpansionError:
        raise  # not text that merely looks like YAML: refused, never taken as a string
    except yaml.YAMLError:
        return raw
    if value is None or isinstance(value, str | dict | list):
        return value
    annotations = annotations_at(TrainerConfig, parts)
    if annotations and all(_is_text(a) for a in annotations):
        return raw.strip()
    return value


def apply_overrides(
    data: dict[str, Any], overrides: list[str], source: str, share: bool = False
) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (value parsed as YAML) to a copy of `data`. With `share`, only the
    sections an item writes into are copied and the result shares every other value with `data`: for a
    caller that changes neither afterwards."""
    result = dict(data) if share else copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                source, [f"override {item!r}: expected KEY.PATH=VALUE, e.g. training.max_steps=50"]
            )
        parts = key.strip().split(".")
        if not all(_KEY_PART.match(part) for part in parts):
            raise ConfigError(
                source,
                [
                    f"override {item!r}: KEY.PATH {key.strip()!r} has an empty or blank part; "
                    "expected names joined by dots, e.g. training.max_steps=50"
                ],
            )
        node = result
        for depth, part in enumerate(parts[:-1], start=1):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[:depth])
                raise ConfigError(
                    source,
                    [f"override {item!r}: {where} is a value ({child!r}), not a section with keys"],
                )
            if share:
                child = node[part] = dict(child)
            node = child
        try:
            node[parts[-1]] = _override_value(parts, raw)
        except AliasExpansionError as exc:
            raise ConfigError(source, [f"override {item[:60]!r}: {exc.problem}"]) from None
    return result


def validate_config(
    data: dict[str, Any], source: str | Path = "<config>", origins: dict[str, str] | None = None
) -> TrainerConfig:
    """Validate settings; `origins` (key path -> e.g. "--set k=v") is named in the errors it explains."""
    try:
        return TrainerConfig.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(source, exc, WORKLOAD_KINDS, TrainerConfig, origins) from None


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


def _layers(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """The file and its chain of `base:` files, each with its own settings, the deepest base first."""
    data = load_yaml_mapping(path)
    file = Path(path).resolve()
    if file in _seen:
        chain = " -> ".join(p.name for p in (*_seen[_seen.index(file) :], file))
        raise ConfigError(path, [f"base: circular reference ({chain})"])
    base = data.pop("base", None)
    if base is None:
        return [(Path(path), data)]
    if not isinstance(base, str) or not base.strip() or "\0" in base:
        raise ConfigError(
            path, [f"base: expected the file name of another config, relative to this one (got {base!r})"]
        )
    target = Path(path).parent / base
    if not target.is_file():
        problem = (
            "is a directory, not a config file"
            if target.is_dir()
            else "is not a regular file"
            if target.exists()
            else "file not found"
        )
        raise ConfigError(path, [f"base: {target}: {problem}"])
    return [*_layers(target, (*_seen, file)), (Path(path), data)]


def _merged(layers: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _, settings in layers:
        data = _deep_merge(data, settings)
    return data


def _key_paths(data: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        paths += _key_paths(value, path) if isinstance(value, dict) and value else [path]
    return paths


def read_with_base(path: str | Path) -> dict[str, Any]:
    """Read a config; `base: other.yaml` (relative to this file) is read first and overlaid."""
    return _merged(_layers(path))


def load_config(
    path: str | Path, overrides: list[str] | None = None, overlay: str | Path | None = None
) -> TrainerConfig:
    """Read `path` (with its bases), lay the `overlay` file over it, apply `overrides`, validate."""
    layers = _layers(path)
    source = path
    if overlay is not None:
        layers += _layers(overlay)
        source = overlay
    data = _merged(layers)
    # A wrong key may sit in a base file (or come from --set): the error says where, not only `source`.
    where = {key: file for file, settings in layers for key in _key_paths(settings)}
    origins = {key: str(file) for key, file in where.items() if file != Path(source)}
    if overrides:
        data = apply_overrides(data, overrides, f"{source} (overrides)")
        origins.update({item.partition("=")[0].strip(): f"--set {item}" for item in overrides})
    return validate_config(data, source, origins)
