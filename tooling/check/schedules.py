"""Which checks run at which schedule, and the thresholds they are judged by (tooling/check/schedules.yml,
overridden by a site file with the same layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ddp.config_errors import ConfigError, format_validation_error, load_yaml_mapping

DEFAULT_SETTINGS_FILE = Path(__file__).with_name("schedules.yml")
# Run order: the job first (it finds the unreachable nodes every later check then names at once).
CHECKS = (
    "job",
    "ranks",
    "balance",
    "alerts",
    "disk",
    "checkpoint",
    "checkpoint_forecast",
    "network",
    "thermal",
)
Positive = Annotated[float, Field(gt=0)]
Ratio = Annotated[float, Field(gt=0, lt=1)]


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank_stale_s: Positive = 120
    balance_warn_ratio: Annotated[float, Field(ge=1)] = 1.2
    balance_fail_ratio: Annotated[float, Field(ge=1)] = 1.5
    disk_free_warn_ratio: Ratio = 0.20
    disk_free_fail_ratio: Ratio = 0.05
    time_to_full_warn_h: Positive = 168
    time_to_full_fail_h: Positive = 24
    trend_window_days: Annotated[int, Field(ge=1)] = 14
    trend_range_h: Positive = 6
    alert_history_h: Positive = 24
    connect_timeout_s: Positive = 3
    latency_warn_ms: Positive = 5.0
    cpu_temp_warn_c: Positive = 85
    cpu_temp_fail_c: Positive = 95
    gpu_temp_warn_c: Positive = 83
    gpu_temp_fail_c: Positive = 90
    checkpoints_to_verify: Annotated[int, Field(ge=1)] = 1
    ssh_timeout_s: Positive = 15
    checkpoint_timeout_s: Positive = 180

    @model_validator(mode="after")
    def _bands_ordered(self) -> Thresholds:
        pairs = [
            ("balance_warn_ratio", "balance_fail_ratio"),
            ("disk_free_fail_ratio", "disk_free_warn_ratio"),
            ("time_to_full_fail_h", "time_to_full_warn_h"),
            ("cpu_temp_warn_c", "cpu_temp_fail_c"),
            ("gpu_temp_warn_c", "gpu_temp_fail_c"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) must not exceed {high} ({getattr(self, high)})"
                )
        return self


class CheckSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedules: dict[str, list[str]] = Field(default_factory=dict)
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @field_validator("schedules")
    @classmethod
    def _known_checks(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, checks in value.items():
            unknown = [c for c in checks if c not in CHECKS]
            if unknown:
                raise ValueError(
                    f"schedule {name!r}: unknown check(s) {', '.join(unknown)}; expected some of: "
                    + ", ".join(CHECKS)
                )
            if not checks:
                raise ValueError(f"schedule {name!r} lists no check")
        return value

    def select(self, schedule: str | None) -> list[str]:
        """The checks of `schedule` in run order; every check when no schedule is named."""
        if schedule is None:
            return list(CHECKS)
        try:
            chosen = set(self.schedules[schedule])
        except KeyError:
            known = ", ".join(self.schedules) or "none"
            raise ConfigError(
                "schedules", [f"unknown schedule {schedule!r}; expected one of: {known}"]
            ) from None
        return [c for c in CHECKS if c in chosen]


def _merge(base: dict[str, Any], site: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key in ("schedules", "thresholds"):
        if isinstance(site.get(key), dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **site[key]}
    for key, value in site.items():
        if key not in merged or not isinstance(value, dict):
            merged[key] = value
    return merged


def load_settings(site_file: Path | None = None, default_file: Path = DEFAULT_SETTINGS_FILE) -> CheckSettings:
    """The package's settings with the site file laid over them; errors name the file and key."""
    data = load_yaml_mapping(default_file)
    source: Path = default_file
    if site_file is not None:
        data = _merge(data, load_yaml_mapping(site_file))
        source = site_file
    try:
        return CheckSettings.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(source, exc) from None
