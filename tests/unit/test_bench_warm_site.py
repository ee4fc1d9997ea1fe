"""bench/warm_site.py's arithmetic: the per-host cost is what each host past the first adds, the projection
grows linearly from the one-host run, and a limit of one host cannot give a per-host cost."""

from __future__ import annotations

import pytest

from bench.warm_site import WarmCost, warm_cost


def test_the_per_host_cost_is_the_slope_between_one_and_n_hosts() -> None:
    cost = warm_cost([30.0, 31.0, 29.0], [45.0, 44.0, 47.0], hosts=4)
    assert (cost.one_host_s, cost.all_hosts_s) == (30.0, 45.0)
    assert cost.per_host_s == pytest.approx(5.0)
    assert cost.projected_s(4) == pytest.approx(45.0)
    assert cost.projected_s(100) == pytest.approx(30.0 + 99 * 5.0)
    assert cost.projected_s(1000) == pytest.approx(30.0 + 999 * 5.0)


def test_a_faster_n_host_run_costs_nothing_per_host() -> None:
    # Noise can make the n-host median the shorter one; a host never makes the run faster.
    cost = WarmCost(one_host_s=30.0, hosts=4, all_hosts_s=29.0)
    assert cost.per_host_s == 0.0 and cost.projected_s(1000) == 30.0


def test_one_host_gives_no_per_host_cost() -> None:
    with pytest.raises(ValueError, match="two hosts"):
        _ = WarmCost(one_host_s=30.0, hosts=1, all_hosts_s=30.0).per_host_s
    with pytest.raises(ValueError, match="at least one"):
        warm_cost([], [1.0], hosts=2)
