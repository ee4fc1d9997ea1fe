"""Decision records: what each gate decided and on what evidence, as JSON (for tools) and Markdown (people).

Files are `<decisions dir>/phase<P>-<UTC time>.{json,md}` (by default <home>/decisions, tooling.home),
written atomically; the newest JSON for a phase is that phase's decision of record (the next phase's
scaling baseline, `tooling phases`, reports).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_json, atomic_write_text

SCHEMA = 1


def record_stem(phase: str, decided_at: float) -> str:
    return f"phase{phase}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(decided_at))}"


def write_record(directory: Path, record: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    stem = record_stem(record["phase"], record["decided_at"])
    json_path = directory / f"{stem}.json"
    n = 1
    while json_path.exists():  # two gates in one second: keep both
        n += 1
        json_path = directory / f"{stem}-{n}.json"
    md_path = json_path.with_suffix(".md")
    atomic_write_json(json_path, record)
    atomic_write_text(md_path, markdown)
    return json_path, md_path


def load_records(directory: Path, phase: str) -> list[dict[str, Any]]:
    """Every readable record of the phase, oldest first; unreadable files are skipped, not fatal."""
    records: list[dict[str, Any]] = []
    for path in directory.glob(f"phase{phase}-*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("phase") == phase and "decided_at" in data:
            data["_path"] = str(path)
            records.append(data)
    return sorted(records, key=lambda r: float(r["decided_at"]))


def latest_record(directory: Path, phase: str) -> dict[str, Any] | None:
    records = load_records(directory, phase)
    return records[-1] if records else None
