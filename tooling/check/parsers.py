"""Pure readers of what the commands in tooling/check/commands.py print, and of Prometheus' API answers.

Each raises ParseError naming the tool and what was wrong: garbled output is a finding about the node,
never a crash of the check run.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tooling.check.checkpoint_outlook import Listed, Listing
from tooling.check.commands import LISTEN_MARK, NVIDIA_MARK

# verify-node and check share one df reader and one parse error; re-exported so that check's modules read
# every node output through this module.
from tooling.verify.parsers import DiskUsage as DiskUsage
from tooling.verify.parsers import ParseError as ParseError
from tooling.verify.parsers import parse_df as parse_df

# --- checkpoint_verify -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedFile:
    file: str
    step: int
    bytes: int
    saved_at: float
    ok: bool
    problem: str | None


@dataclass(frozen=True)
class CheckpointReport:
    directory: str
    verdict: str  # ok / none / corrupt
    manifest_entries: int
    checked: list[CheckedFile]
    problem: str | None
    checked_at: float


def parse_checkpoint_verdict(text: str) -> CheckpointReport:
    lines = [line for line in text.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise ParseError("checkpoint_verify", "printed no JSON verdict" if text.strip() else "no output")
    try:
        raw = json.loads(lines[-1])
        return CheckpointReport(
            directory=str(raw["directory"]),
            verdict=str(raw["verdict"]),
            manifest_entries=int(raw.get("manifest_entries", 0)),
            checked=[
                CheckedFile(
                    file=str(c["file"]),
                    step=int(c["step"]),
                    bytes=int(c["bytes"]),
                    saved_at=float(c["saved_at"]),
                    ok=bool(c["ok"]),
                    problem=c.get("problem"),
                )
                for c in raw.get("checked", [])
            ],
            problem=raw.get("problem"),
            checked_at=float(raw.get("checked_at", 0.0)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError("checkpoint_verify", f"unreadable verdict ({exc})") from None


def parse_checkpoint_listing(text: str) -> Listing:
    """`python -m ddp.checkpoint_verify RUN --list`: the manifest's checkpoints, oldest first."""
    lines = [line for line in text.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise ParseError(
            "checkpoint_verify --list", "printed no JSON listing" if text.strip() else "no output"
        )
    try:
        raw = json.loads(lines[-1])
        keep_last = raw.get("keep_last")
        entries = [
            Listed(step=int(e["step"]), bytes=int(e["bytes"]), saved_at=float(e["saved_at"]))
            for e in raw.get("entries", [])
        ]
        return Listing(
            directory=str(raw["directory"]),
            keep_last=int(keep_last) if keep_last is not None else None,
            entries=sorted(entries, key=lambda e: e.saved_at),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError("checkpoint_verify --list", f"unreadable listing ({exc})") from None


# --- TCP connect probe and listeners ---------------------------------------------------------------------


@dataclass(frozen=True)
class Connect:
    host: str
    address: str
    port: int
    label: str
    ok: bool
    ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ConnectivityReport:
    connects: list[Connect]
    listening: set[int] | None = None  # None: the node was not asked, or could not tell


def parse_listening(text: str) -> set[int] | None:
    """Listening TCP ports from `ss -Hltn`, or from /proc/net/tcp{,6} where ss is missing."""
    ports: set[int] = set()
    seen = False
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "LISTEN" and len(parts) >= 4:
            seen = True
            port = parts[3].rsplit(":", 1)[-1]
            if port.isdigit():
                ports.add(int(port))
        elif re.fullmatch(r"\d+:", parts[0]) and len(parts) >= 4:
            seen = True
            if parts[3] == "0A":  # TCP_LISTEN
                ports.add(int(parts[1].rsplit(":", 1)[-1], 16))
    return ports if seen else None


def parse_connectivity(text: str) -> ConnectivityReport:
    probes, _, listeners = text.partition(LISTEN_MARK)
    connects = []
    for line in probes.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            raw = json.loads(line)
            connects.append(
                Connect(
                    host=str(raw["host"]),
                    address=str(raw["address"]),
                    port=int(raw["port"]),
                    label=str(raw["label"]),
                    ok=bool(raw["ok"]),
                    ms=float(raw["ms"]) if raw.get("ms") is not None else None,
                    error=raw.get("error"),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ParseError("connect probe", f"unreadable line {line[:120]!r} ({exc})") from None
    if not connects and probes.strip():
        raise ParseError("connect probe", f"unexpected output: {probes.strip().splitlines()[-1][:200]}")
    return ConnectivityReport(connects, parse_listening(listeners) if listeners else None)


# --- thermal ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Zone:
    name: str
    kind: str
    celsius: float


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    celsius: float | None
    throttle_mask: int | None


@dataclass(frozen=True)
class ThermalReport:
    zones: list[Zone] = field(default_factory=list)
    gpus: list[Gpu] = field(default_factory=list)
    nvidia_smi: bool = False  # the tool exists on the node
    nvidia_error: str | None = None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_thermal(text: str) -> ThermalReport:
    sensors, mark, nvidia = text.partition(NVIDIA_MARK)
    zones = []
    for line in sensors.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or parts[0] != "zone":
            continue
        millidegrees = _number(parts[3].strip())
        # Zones that are not wired up read 0 or a negative sentinel; they say nothing about heat.
        if millidegrees is None or millidegrees <= 0:
            continue
        zones.append(Zone(parts[1].strip(), parts[2].strip(), millidegrees / 1000.0))
    gpus: list[Gpu] = []
    error = None
    for line in nvidia.splitlines():
        line = line.strip()
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == 4 and cells[0].isdigit():
            mask = cells[3]
            gpus.append(
                Gpu(
                    index=int(cells[0]),
                    name=cells[1],
                    celsius=_number(cells[2]),
                    throttle_mask=int(mask, 16) if re.fullmatch(r"0x[0-9a-fA-F]+", mask) else None,
                )
            )
        else:
            error = line[:200]
    return ThermalReport(zones, gpus, nvidia_smi=bool(mark), nvidia_error=error if not gpus else None)


# --- Prometheus API answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # firing / pending
    severity: str
    labels: dict[str, str]
    active_at: str | None

    @property
    def where(self) -> str:
        return self.labels.get("node") or self.labels.get("instance") or self.labels.get("phase") or ""

    def active_since(self) -> float | None:
        """`activeAt` as a Unix time (Prometheus writes RFC 3339, up to nanoseconds); None if absent or
        unreadable: how long an alert has been active is a detail, never a reason to fail the check."""
        if not self.active_at:
            return None
        try:
            return datetime.fromisoformat(self.active_at).timestamp()
        except ValueError:
            return None


def parse_alerts(data: Any) -> list[Alert]:
    """`data` of GET /api/v1/alerts."""
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise ParseError("prometheus /api/v1/alerts", "no `alerts` list in the answer")
    alerts = []
    for item in data["alerts"]:
        labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
        alerts.append(
            Alert(
                name=labels.get("alertname", "?"),
                state=str(item.get("state", "")),
                severity=labels.get("severity", "none"),
                labels=labels,
                active_at=item.get("activeAt"),
            )
        )
    return alerts


def parse_vector(data: Any) -> list[tuple[dict[str, str], float]]:
    """`data` of an instant query: (labels, value) per series; NaN and infinities are left out."""
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise ParseError("prometheus /api/v1/query", f"expected a vector result, got {kind}")
    out = []
    for item in data.get("result") or []:
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            out.append(({str(k): str(v) for k, v in (item.get("metric") or {}).items()}, value))
    return out
