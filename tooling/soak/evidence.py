"""What a soak record gives the gate: uptime (judged) and restarts (kept in the decision record).

Only a finished soak of the phase's full size is evidence. An interrupted soak covers part of its window
and a local soak with fewer processes is not the phase: both give NO DATA with the reason, never a pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tooling.console import ToolingError
from tooling.plan.measurements import Measurement, missing
from tooling.soak.duration import format_duration
from tooling.soak.record import FINISHED, latest_record, read_record, resolve_record

SOURCE = "soak"


def _restart_note(record: dict[str, Any]) -> str:
    restarts = record.get("restarts") or {}
    count = int(restarts.get("count") or 0)
    causes = [c for e in restarts.get("events", []) for c in e.get("causes", [])]
    return f"{count} restart(s)" + (f": {'; '.join(causes[:3])}" if causes else "")


def measurements(record: dict[str, Any], path: Path, phase: str, world_size: int) -> dict[str, Measurement]:
    soak = f"soak {record.get('id')} ({path})"
    if str(record.get("phase")) != phase:
        raise ToolingError(f"{soak} is a soak of phase {record.get('phase')}, not phase {phase}")
    restarts = record.get("restarts") or {}
    out = {
        "restarts": Measurement(float(restarts.get("count") or 0), SOURCE, f"{soak}: {_restart_note(record)}")
    }
    status = record.get("status")
    uptime = record.get("uptime") or {}
    if status not in FINISHED:
        out["uptime"] = missing(
            SOURCE,
            f"{soak} is {status}: it covers part of its window; "
            f"finish it with `tooling soak --resume {record.get('id')}`",
        )
    elif record.get("world_size") != world_size:
        out["uptime"] = missing(
            SOURCE,
            f"{soak} ran {record.get('world_size')} processes; phase {phase} has {world_size}",
        )
    elif uptime.get("ratio") is None:
        out["uptime"] = missing(SOURCE, f"{soak} judged no interval")
    else:
        incidents = record.get("incidents") or []
        coverage = uptime.get("coverage_ratio")
        parts = [
            f"{soak}: {format_duration(record.get('watched_s') or 0)} watched every "
            f"{format_duration(record.get('interval_s') or 0)}",
            f"{len(incidents)} incident(s), {format_duration(record.get('time_lost_s') or 0)} lost",
            _restart_note(record),
        ]
        if coverage is not None and coverage < 1:
            parts.append(f"{coverage:.1%} of the window observed")
        if status == "ended-early":
            parts.append(f"the job ended early ({(record.get('ended') or {}).get('reason')})")
        out["uptime"] = Measurement(float(uptime["ratio"]), SOURCE, "; ".join(parts))
    return out


def soak_evidence(
    phase: str, world_size: int, soak: str | None, soak_dir: Path
) -> tuple[dict[str, Measurement], str | None]:
    """The measurements from `--soak` (an id, directory or soak.json) or, without it, from the phase's
    latest soak record; nothing (and no source line) when the phase has no soak at all."""
    if soak is not None:
        path = resolve_record(soak, soak_dir)
        record = read_record(path)
    else:
        found = latest_record(soak_dir, phase)
        if found is None:
            return {}, None
        record, path = found
    return measurements(record, path, phase, world_size), f"soak record: {path} ({record.get('status')})"
