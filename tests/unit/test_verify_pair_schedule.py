"""The pair schedule of `verify-node --pairs`: every pair once, rounds disjoint, n - 1 rounds."""

from __future__ import annotations

import itertools

import pytest

from tooling.verify.pair_schedule import PairMode, circle_rounds, ring_pairs, schedule


def _nodes(n: int) -> list[str]:
    return [f"node{i + 1}" for i in range(n)]


@pytest.mark.parametrize("n", range(2, 65))
def test_circle_rounds_cover_every_pair_once_in_disjoint_rounds(n: int) -> None:
    nodes = _nodes(n)
    rounds = circle_rounds(nodes)
    seen = [frozenset(pair) for r in rounds for pair in r]
    assert sorted(seen, key=sorted) == sorted(
        (frozenset(p) for p in itertools.combinations(nodes, 2)), key=sorted
    )
    assert len(seen) == len(set(seen)) == n * (n - 1) // 2
    for r in rounds:
        members = [node for pair in r for node in pair]
        assert len(members) == len(set(members)), f"round {r} uses a node twice"
    # n even: n - 1 rounds of n / 2 pairs; n odd: a bye each round, n rounds of (n - 1) / 2 pairs.
    assert len(rounds) == (n - 1 if n % 2 == 0 else n)
    assert all(len(r) == n // 2 for r in rounds)


@pytest.mark.parametrize("n", [3, 5, 9])
def test_odd_counts_give_each_node_exactly_one_bye(n: int) -> None:
    nodes = _nodes(n)
    byes = [set(nodes) - {x for pair in r for x in pair} for r in circle_rounds(nodes)]
    assert all(len(b) == 1 for b in byes)
    assert sorted(x for b in byes for x in b) == sorted(nodes)


@pytest.mark.parametrize("n", [2, 4, 5])
def test_all_measures_both_directions_in_disjoint_rounds(n: int) -> None:
    rounds = schedule(_nodes(n), PairMode.all)
    assert len(rounds) == 2 * len(circle_rounds(_nodes(n)))
    for r in rounds:
        members = [node for pair in r for node in pair]
        assert len(members) == len(set(members))
    ordered = [pair for r in rounds for pair in r]
    assert len(ordered) == len(set(ordered)) == n * (n - 1)
    assert set(ordered) == set(itertools.permutations(_nodes(n), 2))


def test_all_on_four_nodes() -> None:
    rounds = schedule(_nodes(4), PairMode.all)
    assert len(rounds) == 6
    ordered = [pair for r in rounds for pair in r]
    assert len(ordered) == len(set(ordered)) == 12
    assert set(ordered) == set(itertools.permutations(_nodes(4), 2))


def test_ring_stays_the_default_shape() -> None:
    assert ring_pairs(_nodes(2)) == [("node1", "node2")]
    assert ring_pairs(_nodes(3)) == [("node1", "node2"), ("node2", "node3"), ("node3", "node1")]
    assert schedule(_nodes(1), PairMode.ring) == []
    assert schedule(_nodes(1), PairMode.all) == []


def test_repeated_names_are_refused() -> None:
    with pytest.raises(ValueError, match="node2"):
        circle_rounds(["node1", "node2", "node2"])
