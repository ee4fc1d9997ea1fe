"""A sweep on disk: <home>/sweeps/<id>/ with plan.json (what to run), trials.jsonl (one complete line per
finished trial, appended and fsynced as each one ends) and, once every trial has run, sweep.json and sweep.md.

An interrupted sweep therefore keeps every trial that finished, and `--resume ID` runs only the rest.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_json, atomic_write_text
from tooling.console import ToolingError
from tooling.sweep.grid import Axis, Combination

PLAN_FILE = "plan.json"
TRIALS_FILE = "trials.jsonl"
RESULT_FILE = "sweep.json"
REPORT_FILE = "sweep.md"
SCHEMA = 1
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER: a bare container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class SweepPlan:
    id: str
    phase: str
    axes: list[Axis]
    combinations: list[Combination]
    steps: int
    sets: list[str]
    mode: str  # local | cluster
    inventory: str | None
    loss_margin: float
    # The locked production config the trials ran over (file name and settings), None when there was none:
    # a lock from this sweep builds on it, because that is what was measured.
    measured_over: dict[str, Any] | None
    created_at: float = field(default_factory=time.time)
    created_by: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = SCHEMA
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepPlan:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["axes"] = [
            Axis(a["arg"], a["name"], a["key"], tuple(a["values"])) for a in data.get("axes", [])
        ]
        return cls(**values)


@dataclass
class TrialRecord:
    trial: int  # 1-based, in the order of the plan's combinations
    combination: Combination
    run_id: str
    status: str  # ok | failed
    reason: str | None = None
    throughput: float | None = None  # mean global samples/s over the run's heartbeats
    throughput_sigma: float | None = None
    comm_overhead: float | None = None
    loss_first: float | None = None
    loss_last: float | None = None
    nonfinite: int | None = None
    loss_fell: bool | None = None
    steps: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    summary: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def record_from_summary(
    trial: int,
    combination: Combination,
    run_id: str,
    summary: dict[str, Any] | None,
    error: str | None,
    started_at: float,
    summary_path: str | None = None,
) -> TrialRecord:
    """A trial's figures from its run's summary.json; any reason it cannot be ranked goes in `reason`."""
    record = TrialRecord(trial, combination, run_id, "failed", error, started_at=started_at)
    record.finished_at = time.time()
    record.summary = summary_path
    if summary is None:
        record.reason = error or "the run left no summary"
        return record
    throughput = summary.get("throughput") or {}
    loss = summary.get("loss") or {}
    record.throughput = _number(throughput.get("global_samples_per_second_mean"))
    record.throughput_sigma = _number(throughput.get("global_samples_per_second_stddev"))
    record.comm_overhead = _number(summary.get("comm_overhead_ratio"))
    record.loss_first = _number(loss.get("first"))
    record.loss_last = _number(loss.get("last"))
    record.nonfinite = summary.get("nonfinite_loss_count")
    record.steps = summary.get("steps")
    if record.loss_first is not None and record.loss_last is not None:
        record.loss_fell = record.loss_last < record.loss_first
    status = summary.get("status")
    if error is not None:
        record.reason = error
    elif status != "completed":
        record.reason = f"run ended {status}: {summary.get('reason') or 'no reason given'}"
    elif record.throughput is None:
        record.reason = "no throughput measured (too few steps for two heartbeats? raise --steps)"
    else:
        record.status = "ok"
    return record


class SweepStore:
    def __init__(self, root: Path, sweep_id: str) -> None:
        if not ID_PATTERN.match(sweep_id):
            raise ToolingError(
                f"sweep id {sweep_id!r}: expected letters, digits, '_', '.' or '-' (it names a directory "
                "and every trial's run)"
            )
        self.id = sweep_id
        self.dir = root / sweep_id

    @property
    def trials_path(self) -> Path:
        return self.dir / TRIALS_FILE

    @property
    def run_dir(self) -> Path:
        return self.dir / "trials"

    def exists(self) -> bool:
        return (self.dir / PLAN_FILE).is_file()

    def ensure_new(self) -> None:
        if self.exists():
            raise ToolingError(
                f"sweep {self.id} already exists in {self.dir}",
                hint=f"continue it with --resume {self.id}, or choose another --id",
            )

    def create(self, plan: SweepPlan) -> None:
        self.ensure_new()
        atomic_write_json(self.dir / PLAN_FILE, plan.to_json())

    def load_plan(self) -> SweepPlan:
        path = self.dir / PLAN_FILE
        try:
            return SweepPlan.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ToolingError(
                f"no sweep {self.id} in {self.dir.parent}", hint="`ls` that directory for the sweep ids"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolingError(f"{path} is unreadable: {exc}") from None

    def _read(self) -> tuple[list[TrialRecord], int]:
        """The complete records and the byte length they fill: a line cut short by a crash is not one."""
        try:
            data = self.trials_path.read_bytes()
        except FileNotFoundError:
            return [], 0
        records: list[TrialRecord] = []
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                records.append(TrialRecord.from_json(json.loads(line)))
            except (ValueError, TypeError):
                break
            good += len(line)
        return records, good

    def trials(self) -> list[TrialRecord]:
        """The finished trials, one per trial number (the last record of a trial wins)."""
        by_trial = {r.trial: r for r in self._read()[0]}
        return [by_trial[n] for n in sorted(by_trial)]

    def append(self, record: TrialRecord) -> None:
        _, good = self._read()
        self.trials_path.parent.mkdir(parents=True, exist_ok=True)
        with self.trials_path.open("ab") as handle:
            if handle.tell() != good:  # drop a torn line so the new record starts on its own
                handle.truncate(good)
            handle.write((json.dumps(record.to_json(), sort_keys=True) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())

    def write_result(self, result: dict[str, Any], markdown: str) -> tuple[Path, Path]:
        json_path, md_path = self.dir / RESULT_FILE, self.dir / REPORT_FILE
        atomic_write_json(json_path, result)
        atomic_write_text(md_path, markdown)
        return json_path, md_path


def latest_sweep(root: Path, phase: str) -> str | None:
    """The id of the phase's most recently created sweep under `root`."""
    best: tuple[float, str] | None = None
    for path in root.glob(f"*/{PLAN_FILE}"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("phase") == phase:
            key = (float(data.get("created_at", 0)), path.parent.name)
            if best is None or key > best:
                best = key
    return best[1] if best else None
