"""The arithmetic behind the Prometheus figures: counter increases through restarts, and uptime."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tooling.gates.prometheus import increase, uptime
from tooling.prometheus_api import parse_duration


def test_increase_counts_through_a_restart() -> None:
    # A trainer counter: 0 -> 5, the process restarts (back to 0), then 3 more.
    points = [(0.0, 0.0), (1.0, 5.0), (2.0, 1.0), (3.0, 3.0)]
    assert increase(points, from_zero=True) == 5 + 1 + 2
    # A node_exporter counter already at 1000 when the window opens: only the change counts.
    assert increase([(0.0, 1000.0), (1.0, 1004.0)], from_zero=False) == 4
    assert increase([], from_zero=True) is None


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50))
def test_increase_of_a_monotonic_counter_is_last_minus_first(values: list[float]) -> None:
    values = sorted(values)
    points = [(float(i), v) for i, v in enumerate(values)]
    assert abs((increase(points, from_zero=False) or 0.0) - (values[-1] - values[0])) < 1e-6 * (
        1 + values[-1]
    )


def test_uptime_counts_gaps_missing_ranks_and_stalls_as_down() -> None:
    step = 2.0
    times = [100.0 + step * k for k in range(11)]  # 10 intervals
    ranks = [(t, 4.0) for t in times]
    ranks[3] = (times[3], 3.0)  # one rank not scraped
    progress = [(t, float(10 * k)) for k, t in enumerate(times)]
    progress[6] = (times[6], progress[5][1])  # no step taken (stalled)
    del progress[8], ranks[8]  # the whole job missing from Prometheus
    share, intervals = uptime(ranks, progress, 4, step, times[-1]) or (0.0, 0)
    assert intervals == 10
    # down: (2,3) rank missing; (5,6) stall; (7,8) and (8,9) no series
    assert share == 6 / 10


def test_uptime_of_nothing_is_no_data() -> None:
    assert uptime([], [], 4, 1.0, 10.0) is None


def test_scrape_intervals_parse() -> None:
    assert parse_duration("15s") == 15
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    assert parse_duration("") is None
