"""The daily record of check runs: one JSON line per run in <checks dir>/<UTC date>.jsonl (by default
<home>/checks, tooling.home).

The day file is rewritten whole (temp file, fsync, rename) under a lock, so a crash leaves the old file
or the new one and never half a line, and two check runs at once do not lose each other's line.
Readers still skip a line they cannot parse (a file edited by hand, say).
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_bytes

LOCK_NAME = ".lock"


def day_file(directory: Path, ts: float) -> Path:
    return directory / f"{time.strftime('%Y-%m-%d', time.gmtime(ts))}.jsonl"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_NAME).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append(directory: Path, record: dict[str, Any]) -> Path:
    """Add `record` (which carries its own `ts`) as the last line of its day's file; returns the file."""
    path = day_file(directory, float(record["ts"]))
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
    with _locked(path.parent):
        try:
            existing = path.read_bytes()
        except FileNotFoundError:
            existing = b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"  # a hand-edited file without its final newline
        atomic_write_bytes(path, existing + line)
    return path


def read_day(path: Path) -> list[dict[str, Any]]:
    records = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def load_recent(directory: Path, days: int, now: float) -> list[dict[str, Any]]:
    """Records of the last `days` UTC days (today included), oldest day first."""
    records: list[dict[str, Any]] = []
    for back in range(days, -1, -1):
        records.extend(read_day(day_file(directory, now - back * 86400.0)))
    return records
