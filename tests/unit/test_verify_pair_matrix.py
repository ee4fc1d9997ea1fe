"""Blame on synthetic all -> all matrices: the slow node, the slow link, asymmetry, the JSON shape."""

from __future__ import annotations

import itertools
import json

import pytest
from rich.console import Console

from tooling.verify.pair_matrix import (
    PairMatrix,
    asymmetries,
    blame,
    from_measurements,
    slow_allreduce_pairs,
    tables,
    to_json,
)

RATIO = 0.8


def _matrix(n: int, slow: dict[tuple[str, str], float] | None = None, fast: float = 10.0) -> PairMatrix:
    nodes = [f"node{i + 1}" for i in range(n)]
    gbps: dict[tuple[str, str], float | None] = {d: fast for d in itertools.permutations(nodes, 2)}
    gbps.update(slow or {})
    busbw = {frozenset(p): 0.5 for p in itertools.combinations(nodes, 2)}
    return from_measurements(nodes, gbps, busbw)


def test_healthy_matrix_names_nobody() -> None:
    matrix = _matrix(4)
    assert blame(matrix, RATIO) == []
    assert asymmetries(matrix, RATIO) == []
    assert slow_allreduce_pairs(matrix, RATIO) == []


def test_a_node_slow_on_all_its_outgoing_links_is_the_node() -> None:
    matrix = _matrix(4, {("node2", "node1"): 1.0, ("node2", "node3"): 1.2, ("node2", "node4"): 0.9})
    [culprit] = blame(matrix, RATIO)
    assert (culprit.kind, culprit.host, culprit.peer) == ("node", "node2", None)
    assert "sends slowly" in culprit.evidence
    assert {a.slow for a in asymmetries(matrix, RATIO)} == {
        ("node2", "node1"),
        ("node2", "node3"),
        ("node2", "node4"),
    }


def test_a_node_slow_both_ways_is_named_once() -> None:
    slow = {d: 1.0 for d in itertools.permutations([f"node{i}" for i in range(1, 5)], 2) if "node3" in d}
    [culprit] = blame(_matrix(4, slow), RATIO)
    assert (culprit.kind, culprit.host) == ("node", "node3")
    assert "sends and receives" in culprit.evidence


def test_a_single_slow_direction_is_the_link() -> None:
    matrix = _matrix(4, {("node3", "node4"): 2.0})
    [culprit] = blame(matrix, RATIO)
    assert (culprit.kind, culprit.host, culprit.peer) == ("link", "node3", "node4")
    [asym] = asymmetries(matrix, RATIO)
    assert asym.slow == ("node3", "node4") and asym.ratio == 0.2


def test_two_nodes_name_the_slow_direction_as_a_link() -> None:
    matrix = _matrix(2, {("node2", "node1"): 0.05})
    [culprit] = blame(matrix, RATIO)
    assert (culprit.kind, culprit.host, culprit.peer) == ("link", "node2", "node1")
    assert "cannot be told apart" in culprit.evidence
    assert [a.slow for a in asymmetries(matrix, RATIO)] == [("node2", "node1")]


def test_asymmetry_just_above_the_ratio_is_not_flagged() -> None:
    assert asymmetries(_matrix(2, {("node1", "node2"): 8.1}), RATIO) == []
    assert len(asymmetries(_matrix(2, {("node1", "node2"): 7.9}), RATIO)) == 1


def test_an_absolute_floor_catches_a_uniformly_slow_cluster() -> None:
    matrix = _matrix(3, fast=0.1)
    assert blame(matrix, RATIO) == []
    named = blame(matrix, RATIO, floor_gbps=0.2)
    assert sorted(c.host for c in named) == ["node1", "node2", "node3"]


def test_missing_directions_are_neither_slow_nor_asymmetric() -> None:
    matrix = _matrix(3, {("node1", "node2"): None})
    assert blame(matrix, RATIO) == []
    assert asymmetries(matrix, RATIO) == []


def test_a_slow_allreduce_pair_is_flagged() -> None:
    matrix = _matrix(3)
    matrix.busbw_gbs[frozenset(("node1", "node3"))] = 0.05
    assert slow_allreduce_pairs(matrix, RATIO) == [frozenset(("node1", "node3"))]


def test_json_shape() -> None:
    matrix = _matrix(3, {("node2", "node1"): 1.0, ("node2", "node3"): 1.0})
    doc = json.loads(json.dumps(to_json(matrix, RATIO)))
    assert set(doc) == {
        "nodes",
        "asymmetry_ratio",
        "gbps",
        "allreduce_busbw_gbs",
        "asymmetric",
        "culprits",
        "slow_allreduce_pairs",
    }
    assert doc["gbps"]["node2"]["node1"] == 1.0 and doc["gbps"]["node1"]["node2"] == 10.0
    assert "node1" not in doc["gbps"]["node1"]
    assert doc["allreduce_busbw_gbs"]["node1"]["node3"] == 0.5
    assert doc["culprits"] == [
        {"kind": "node", "host": "node2", "peer": None, "evidence": doc["culprits"][0]["evidence"]}
    ]
    assert {tuple(a["slow"]) for a in doc["asymmetric"]} == {("node2", "node1"), ("node2", "node3")}
    assert all(a["ratio"] == 0.1 for a in doc["asymmetric"])


def test_tables_show_every_cell_and_mark_the_slow_ones() -> None:
    console = Console(record=True, width=120, color_system=None)
    for table in tables(_matrix(3, {("node2", "node1"): 1.0}), RATIO):
        console.print(table)
    text = console.export_text()
    assert "1.00" in text and "10.00" in text and "0.50" in text
    styled = Console(record=True, width=120, force_terminal=True)
    styled.print(tables(_matrix(3, {("node2", "node1"): 1.0}), RATIO)[0])
    assert "\x1b[31m" in styled.export_text(styles=True)


def test_measurements_outside_the_nodes_are_refused() -> None:
    with pytest.raises(ValueError, match="node9"):
        from_measurements(["node1"], {("node1", "node9"): 1.0})
