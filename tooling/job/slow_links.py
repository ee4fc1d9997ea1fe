"""Slow links as the ranks' status files report them (ddp/links.py): which node pairs, and the node at
fault when the slow links share one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def slow_pairs(nodes_links: Iterable[tuple[str, list[dict[str, Any]] | None]]) -> dict[frozenset[str], float]:
    """Each slow link once (both ends report it), with the longest round trip either end measured."""
    pairs: dict[frozenset[str], float] = {}
    for node, links in nodes_links:
        for link in links or []:
            if link.get("slow"):
                pair = frozenset((node, str(link["peer"])))
                pairs[pair] = max(pairs.get(pair, 0.0), float(link.get("rtt_seconds") or 0.0))
    return pairs


def node_at_fault(pairs: Iterable[frozenset[str]], nodes: int) -> str | None:
    """The one node every slow link touches, when that singles it out: on two nodes the one link has two
    ends and nothing tells them apart; on more, a node whose links to two or more peers are slow while
    the links between those peers are not."""
    pairs = list(pairs)
    if nodes < 3 or len(pairs) < 2:
        return None
    common = frozenset.intersection(*pairs)
    return next(iter(common)) if len(common) == 1 else None


def describe(nodes_links: Iterable[tuple[str, list[dict[str, Any]] | None]], nodes: int) -> str | None:
    """The status line naming slow links, or None when there are none."""
    pairs = slow_pairs(nodes_links)
    if not pairs:
        return None
    shown = ", ".join(
        f"{' <-> '.join(sorted(pair))} ({1000 * rtt:.0f} ms)"
        for pair, rtt in sorted(pairs.items(), key=lambda item: sorted(item[0]))
    )
    fault = node_at_fault(pairs, nodes)
    where = f"; every one touches {fault}: look at its link" if fault else ""
    return (
        f"slow links: {shown}{where}. The round trip between these nodes grew while each rank's own compute "
        "stayed within the straggler margin: steps wait on the network, not on a slow rank"
    )
