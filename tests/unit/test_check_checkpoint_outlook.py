"""Tomorrow's checkpoints from the run's trend: the interval, the count by this time tomorrow, what
keep_last keeps, the disk left (by the checkpoints or the filesystem's own trend), and when it would fill."""

from __future__ import annotations

import json

import pytest

from tooling.check.checkpoint_outlook import HORIZON_S, Listed, Listing, outlook
from tooling.check.judge import judge_checkpoint_outlook
from tooling.check.parsers import DiskUsage, ParseError, parse_checkpoint_listing
from tooling.check.trend import Trend

NOW = 1_000_000.0
GIB = 1 << 30


def _listing(times: list[float], size: int = GIB, keep_last: int | None = 3) -> Listing:
    return Listing("/runs/r/checkpoints", keep_last, [Listed(i, size, t) for i, t in enumerate(times)])


def _usage(avail: int) -> DiskUsage:
    return DiskUsage("/runs/r", "/dev/vda1", 100 * GIB, 100 * GIB - avail, avail, "/")


@pytest.mark.parametrize("interval", [600.0, 3600.0, 5000.0])
def test_count_and_bytes_by_tomorrow_follow_the_interval(interval: float) -> None:
    last = NOW - 100.0
    listing = _listing([last - 2 * interval, last - interval, last], keep_last=None)
    seen = outlook(listing, 500 * GIB, None, NOW)
    assert seen is not None
    expected_new = int((NOW + HORIZON_S - last) // interval)
    assert seen.interval_s == pytest.approx(interval)
    assert seen.new_checkpoints == expected_new
    assert seen.kept_tomorrow == 3 + expected_new
    assert seen.bytes_written == expected_new * GIB == seen.growth_bytes
    assert seen.avail_tomorrow == 500 * GIB - expected_new * GIB


def test_keep_last_caps_what_stays_and_a_save_still_needs_one_more() -> None:
    listing = _listing([NOW - 7200, NOW - 3600, NOW], keep_last=3)
    roomy = outlook(listing, 2 * GIB, None, NOW)
    assert roomy is not None and roomy.growth_bytes == 0 and roomy.kept_tomorrow == 3
    assert not roomy.fills
    tight = outlook(listing, GIB - 1, None, NOW)  # less than one checkpoint free: the next save fails
    assert tight is not None and tight.fills
    growing = outlook(_listing([NOW - 3600, NOW], keep_last=5), 3 * GIB, None, NOW)
    assert growing is not None and growing.growth_bytes == 3 * GIB and growing.fills


def test_the_filesystem_trend_counts_when_it_is_worse() -> None:
    listing = _listing([NOW - 7200, NOW - 3600, NOW], keep_last=3)
    filling = Trend(-10 * GIB / HORIZON_S, "Prometheus deriv over 6h")
    seen = outlook(listing, 8 * GIB, filling, NOW)
    assert seen is not None and seen.by_trend and seen.avail_tomorrow == pytest.approx(-2 * GIB, abs=1)
    assert seen.fills
    freeing = Trend(GIB / HORIZON_S, "snapshots")
    seen = outlook(listing, 8 * GIB, freeing, NOW)
    assert seen is not None and not seen.by_trend and seen.avail_tomorrow == 8 * GIB


def test_one_checkpoint_gives_no_interval() -> None:
    assert outlook(_listing([NOW]), GIB, None, NOW) is None
    row = judge_checkpoint_outlook("node1", _listing([NOW]), _usage(GIB), None, NOW)
    assert row.status == "SKIP" and "no interval" in row.reason
    row = judge_checkpoint_outlook("node1", _listing([]), _usage(GIB), None, NOW)
    assert row.status == "SKIP" and row.measured == "no checkpoint"


def test_the_finding_warns_naming_the_figures() -> None:
    listing = _listing([NOW - 7200, NOW - 3600, NOW], size=4 * GIB, keep_last=None)
    row = judge_checkpoint_outlook("node1", listing, _usage(20 * GIB), None, NOW)
    assert row.status == "WARN" and row.check == "checkpoint.tomorrow"
    assert "one every 60 min, 4.0 GiB each: 24 more by this time tomorrow" in row.reason
    assert "the disk would fill" in row.reason
    assert judge_checkpoint_outlook("node1", listing, _usage(200 * GIB), None, NOW).status == "PASS"


def test_the_listing_parser_names_bad_output() -> None:
    entries = [
        {"file": "a", "step": 2, "bytes": 5, "saved_at": 9.0},
        {"file": "b", "step": 1, "bytes": 5, "saved_at": 3.0},
    ]
    text = json.dumps({"directory": "/d", "keep_last": 2, "entries": entries})
    listing = parse_checkpoint_listing("noise\n" + text)
    assert listing.keep_last == 2 and [e.saved_at for e in listing.entries] == [3.0, 9.0]
    with pytest.raises(ParseError, match="no output"):
        parse_checkpoint_listing("")
    with pytest.raises(ParseError, match="unreadable listing"):
        parse_checkpoint_listing('{"entries": []}')
