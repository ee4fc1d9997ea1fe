"""Which node pairs `verify-node --pairs` measures, and in which rounds.

`ring`: consecutive nodes, closed into a ring from three nodes on (the default, n pairs).
`all`: every unordered pair once, grouped by the circle method into n - 1 rounds (n even) or n rounds
(n odd, one node sits out each round) of disjoint pairs, so a round's pairs can run at the same time
without two measurements sharing a node. Each round is measured one direction, then the other: a node is
only a client or only a server at a time, so a direction's figure is not shared with its reverse.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import StrEnum

Pair = tuple[str, str]


class PairMode(StrEnum):
    ring = "ring"
    all = "all"


def ring_pairs(nodes: Sequence[str]) -> list[Pair]:
    """The default schedule, as playbooks/verify.yml's `_verify_ring` builds it."""
    pairs = list(itertools.pairwise(nodes))
    if len(nodes) > 2:
        pairs.append((nodes[-1], nodes[0]))
    return pairs


def circle_rounds(nodes: Sequence[str]) -> list[list[Pair]]:
    """Round-robin by the circle method: the first node stays put while the rest rotate one place per
    round; round r pairs position i with position n - 1 - i. A bye (None) pads odd counts: the node
    facing it sits the round out, so n odd also gives n rounds of (n - 1) / 2 pairs."""
    if len(set(nodes)) != len(nodes):
        dupes = sorted({n for n in nodes if list(nodes).count(n) > 1})
        raise ValueError(f"node names repeat: {', '.join(dupes)}")
    slots: list[str | None] = list(nodes)
    if len(slots) % 2:
        slots.append(None)
    size = len(slots)
    rounds: list[list[Pair]] = []
    for _ in range(size - 1):
        pairs = [(slots[i], slots[size - 1 - i]) for i in range(size // 2)]
        rounds.append([(a, b) for a, b in pairs if a is not None and b is not None])
        # Rotate everything but the first slot one place to the right.
        slots = [slots[0], slots[-1], *slots[1:-1]]
    return [r for r in rounds if r]


def schedule(nodes: Sequence[str], mode: PairMode) -> list[list[Pair]]:
    """Rounds of (client, server) measurements. The ring is one round run one pair after the other,
    as before; `all` is each circle round as it is, then reversed: asymmetry needs both directions."""
    if mode is PairMode.ring:
        return [ring_pairs(nodes)] if len(nodes) > 1 else []
    return [half for r in circle_rounds(nodes) for half in (list(r), [(b, a) for a, b in r])]
