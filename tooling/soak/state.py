"""A soak's working state (<home>/soak/<id>/state.json), rewritten atomically after every sample.

It holds everything `tooling soak --resume ID` needs to find the same job again and carry on: the
settings, the planned end, where the launcher log was read up to, and every sample so far. Killing the soak
process therefore loses at most the sample it was taking.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_json
from tooling.console import ToolingError
from tooling.soak.samples import Sample

SCHEMA = 1
STATE_FILE = "state.json"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SoakState:
    id: str
    phase: str
    mode: str  # "local" or "cluster"
    world_size: int  # ranks the job runs (what uptime expects to hear from)
    phase_world_size: int  # ranks the phase defines (a local soak may run fewer)
    duration_s: float
    interval_s: float
    samples_per_step: int | None  # job-wide samples per optimizer step, for throughput
    overrides: list[str] = field(default_factory=list)
    job: dict[str, Any] = field(default_factory=dict)  # what the job backend needs to find the job again
    started_at: float = field(default_factory=time.time)
    watch_start: float | None = None  # first sample: every rank had reported
    end_at: float | None = None  # watch_start + duration
    status: str = "starting"  # starting | watching | interrupted | finished
    ended: dict[str, Any] | None = None  # {"at": t, "reason": why} when the job ended by itself
    resumed_at: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    schema: int = SCHEMA

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = [s.to_json() for s in self.samples]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SoakState:
        data = dict(data)
        samples = [Sample.from_json(s) for s in data.pop("samples", [])]
        return cls(**data, samples=samples)


def check_id(soak_id: str) -> str:
    if not ID_PATTERN.match(soak_id):
        raise ToolingError(
            f"soak id {soak_id!r}: expected letters, digits, '.', '_' or '-' (it names a directory)"
        )
    return soak_id


def soak_path(root: Path, soak_id: str) -> Path:
    return root / check_id(soak_id)


def save(state: SoakState, root: Path) -> Path:
    path = soak_path(root, state.id) / STATE_FILE
    atomic_write_json(path, state.to_json())
    return path


def load(root: Path, soak_id: str) -> SoakState:
    path = soak_path(root, soak_id) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = sorted(p.parent.name for p in root.glob(f"*/{STATE_FILE}"))
        raise ToolingError(
            f"no soak {soak_id!r} under {root} (no {path})",
            hint=f"known soaks: {', '.join(known[-10:])}"
            if known
            else "start one with `tooling soak --phase P`",
        ) from None
    except (OSError, ValueError) as exc:
        raise ToolingError(f"{path}: unreadable soak state: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ToolingError(f"{path}: not a soak state this version understands (schema {SCHEMA})")
    try:
        return SoakState.from_json(data)
    except (TypeError, KeyError, ValueError, IndexError) as exc:
        raise ToolingError(f"{path}: unreadable soak state: {exc}") from None
