"""The soak record: <home>/soak/<id>/soak.json (for the gate and reports) and soak.md (for people).

Both are written atomically, so the gate never reads half a record. An interrupted soak still gets a
record (status "interrupted") so the figures so far are not lost; the gate does not take it as evidence.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jinja2

from ddp.atomic import atomic_write_json, atomic_write_text
from tooling.console import ToolingError
from tooling.soak.duration import format_duration
from tooling.soak.state import SoakState, soak_path
from tooling.soak.uptime import Analysis

SCHEMA = 1
RECORD_FILE = "soak.json"
# Soaks whose uptime covers the whole planned window; an interrupted one covers only part of it.
FINISHED = ("completed", "ended-early")
UPTIME_DEFINITION = (
    "share of judged time in intervals where every expected rank reported, the job's global step passed "
    "the highest step seen before and no worker-group restart happened; intervals longer than twice the "
    "sampling interval are unobserved and count neither way"
)

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=False,  # Markdown, not HTML
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def _utc(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t is not None else None


def build_record(
    state: SoakState,
    analysis: Analysis,
    status: str,
    *,
    final: dict[str, Any] | None = None,
    job_left_running: bool = False,
    now: float | None = None,
) -> dict[str, Any]:
    samples = state.samples
    end = samples[-1].t if samples else None
    if status in FINISHED and state.end_at is not None:
        end = state.end_at
    watched = (end - state.watch_start) if end is not None and state.watch_start is not None else None
    steps = [s.global_step(state.world_size) for s in samples]
    known_steps = [s for s in steps if s is not None]
    return {
        "schema": SCHEMA,
        "kind": "soak",
        "id": state.id,
        "phase": state.phase,
        "mode": state.mode,
        "run_id": state.job.get("run_id", state.id),
        "run_dir": state.job.get("run_dir"),
        "launcher_log": state.job.get("log_path"),
        "world_size": state.world_size,
        "phase_world_size": state.phase_world_size,
        "status": status,
        "job_left_running": job_left_running,
        "ended": state.ended,
        "started_at": state.started_at,
        "start": state.watch_start,
        "start_utc": _utc(state.watch_start),
        "planned_end": state.end_at,
        "end": end,
        "end_utc": _utc(end),
        "duration_s": state.duration_s,
        "watched_s": watched,
        "interval_s": state.interval_s,
        "samples": sum(1 for s in samples if not s.after_end),  # in the window; after_end has the rest
        "resumed_at": state.resumed_at,
        "uptime": {
            "ratio": analysis.uptime_ratio,
            "up_s": analysis.up_seconds,
            "down_s": analysis.down_seconds,
            "unobserved_s": analysis.unobserved_seconds,
            "coverage_ratio": analysis.coverage_ratio,
            "intervals": sum(1 for i in analysis.intervals if i.kind != "gap"),
            "up_intervals": sum(1 for i in analysis.intervals if i.kind == "up"),
            "definition": UPTIME_DEFINITION,
        },
        "incidents": [i.as_dict() for i in analysis.incidents],
        # Down time past the planned end (the soak waiting for a restart to finish) is lost time too.
        "time_lost_s": sum(i.seconds + i.after_end_s for i in analysis.incidents),
        "after_end": analysis.after_end,
        "restarts": {
            "count": sum(r.count_after - r.count_before for r in analysis.restarts),
            "events": [r.as_dict() for r in analysis.restarts],
            "failures_without_restart": analysis.unrestarted_failures,
        },
        "throughput": analysis.throughput,
        "steps": {
            "first": known_steps[0] if known_steps else None,
            "last": known_steps[-1] if known_steps else None,
        },
        "final": final,
        "overrides": state.overrides,
        "notes": state.notes,
        "written_at": now if now is not None else time.time(),
    }


def render_markdown(record: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3%}"

    def num(value: float | None, spec: str = ".1f") -> str:
        return "n/a" if value is None else format(value, spec)

    _ENV.filters.update(pct=pct, num=num, dur=format_duration, utc=lambda t: _utc(t) or "n/a")
    return _ENV.get_template("soak.md.j2").render(r=record)


def write_record(root: Path, record: dict[str, Any]) -> tuple[Path, Path]:
    directory = soak_path(root, record["id"])
    json_path = directory / RECORD_FILE
    md_path = directory / "soak.md"
    atomic_write_json(json_path, record)
    atomic_write_text(md_path, render_markdown(record))
    return json_path, md_path


def read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolingError(f"{path}: cannot read the soak record: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "soak" or "uptime" not in data:
        raise ToolingError(f"{path}: not a soak record (expected kind: soak and an uptime section)")
    return data


def resolve_record(ref: str, root: Path) -> Path:
    """A soak id (under root), its directory, or its soak.json."""
    given = Path(ref)
    for path in (given / RECORD_FILE, given, root / ref / RECORD_FILE):
        if path.is_file():
            return path
    raise ToolingError(
        f"no soak record {ref!r} (looked for {root / ref / RECORD_FILE})",
        hint="pass --soak with a soak id, its directory or its soak.json; `ls` the soak directory",
    )


def latest_record(root: Path, phase: str) -> tuple[dict[str, Any], Path] | None:
    """The phase's most recently written soak record under root (unreadable files are skipped)."""
    best: tuple[float, dict[str, Any], Path] | None = None
    for path in root.glob(f"*/{RECORD_FILE}"):
        try:
            record = read_record(path)
        except ToolingError:
            continue
        if str(record.get("phase")) != phase:
            continue
        written = float(record.get("written_at") or path.stat().st_mtime)
        if best is None or written > best[0]:
            best = (written, record, path)
    return (best[1], best[2]) if best else None
