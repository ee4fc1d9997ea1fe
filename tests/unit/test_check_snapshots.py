"""The daily snapshot file: one complete JSON line per check run, never a torn one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tooling.check import snapshots

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC


def test_records_append_one_line_each_to_the_utc_day_file(tmp_path: Path) -> None:
    first = snapshots.append(tmp_path, {"ts": NOW, "verdict": "PASS"})
    second = snapshots.append(tmp_path, {"ts": NOW + 60, "verdict": "FAIL"})
    assert first == second == tmp_path / "2027-01-15.jsonl"
    lines = first.read_text().splitlines()
    assert [json.loads(line)["verdict"] for line in lines] == ["PASS", "FAIL"]
    tomorrow = snapshots.append(tmp_path, {"ts": NOW + 86400, "verdict": "WARN"})
    assert tomorrow.name == "2027-01-16.jsonl"


def test_a_crash_while_writing_leaves_the_day_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = snapshots.append(tmp_path, {"ts": NOW, "n": 1})
    before = path.read_bytes()

    def crash(target: Path, data: bytes, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshots, "atomic_write_bytes", crash)
    with pytest.raises(OSError, match="No space left"):
        snapshots.append(tmp_path, {"ts": NOW + 1, "n": 2, "big": "x" * 100_000})
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_readers_skip_lines_they_cannot_parse(tmp_path: Path) -> None:
    path = snapshots.day_file(tmp_path, NOW)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"ts": 1, "n": 1}\n{"ts": 2, "n": tor')  # hand-edited, no final newline
    snapshots.append(tmp_path, {"ts": NOW, "n": 3})
    assert [r["n"] for r in snapshots.read_day(path)] == [1, 3]
    assert path.read_text().endswith('"n": 3, "ts": 1800000000.0}\n')


def test_load_recent_reads_the_window_oldest_first(tmp_path: Path) -> None:
    for back in (20, 3, 1, 0):
        snapshots.append(tmp_path, {"ts": NOW - back * 86400, "back": back})
    records = snapshots.load_recent(tmp_path, 14, NOW)
    assert [r["back"] for r in records] == [3, 1, 0]
    assert snapshots.load_recent(tmp_path / "none", 14, time.time()) == []
