"""The all -> all network matrix of `verify-node --pairs all`, and who is to blame for a slow cell.

Pure computations over measured numbers (no parsing, no Ansible): iperf3's received Gb/s for each ordered
pair (client -> server) and the 2-process all_reduce bus bandwidth of each unordered pair.

A direction is *slow* when it is below `ratio` x the median of every measured direction (a node or link
behind its peers), or below the profile's absolute floor. A pair is *asymmetric* when its slower direction
is below `ratio` x its faster one. Blame, from the slow directions:
- a node all of whose outgoing directions are slow (it has at least two peers) sends slowly: the node;
  the same for incoming (receives slowly) and both (slow on all its links);
- any other slow direction is that link's.
With one peer a node and its link cannot be told apart, so the direction is named as a link.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.table import Table

Direction = tuple[str, str]  # (client, server): traffic flows client -> server


@dataclass(frozen=True)
class Asymmetry:
    fast: Direction
    slow: Direction
    fast_gbps: float
    slow_gbps: float

    @property
    def ratio(self) -> float:
        return self.slow_gbps / self.fast_gbps if self.fast_gbps > 0 else 0.0


@dataclass(frozen=True)
class Culprit:
    kind: Literal["node", "link"]
    host: str
    peer: str | None  # the link's other end (server); None for a node
    evidence: str


@dataclass
class PairMatrix:
    nodes: list[str]
    gbps: dict[Direction, float | None] = field(default_factory=dict)  # None: measured nothing
    busbw_gbs: dict[frozenset[str], float | None] = field(default_factory=dict)

    def cell(self, client: str, server: str) -> float | None:
        return self.gbps.get((client, server))

    def measured(self) -> dict[Direction, float]:
        return {d: v for d, v in self.gbps.items() if v is not None}


def slow_directions(matrix: PairMatrix, ratio: float, floor_gbps: float | None = None) -> set[Direction]:
    measured = matrix.measured()
    if not measured:
        return set()
    bar = ratio * statistics.median(measured.values())
    if floor_gbps is not None:
        bar = max(bar, floor_gbps)
    return {d for d, v in measured.items() if v < bar}


def asymmetries(matrix: PairMatrix, ratio: float) -> list[Asymmetry]:
    found = []
    measured = matrix.measured()
    for (a, b), ab in sorted(measured.items()):
        ba = measured.get((b, a))
        if ba is None or (a, b) > (b, a):
            continue  # each unordered pair once, and only with both directions measured
        fast, slow = ((a, b), (b, a)) if ab >= ba else ((b, a), (a, b))
        item = Asymmetry(fast, slow, max(ab, ba), min(ab, ba))
        if item.ratio < ratio:
            found.append(item)
    return found


def _peers(matrix: PairMatrix, host: str, outgoing: bool) -> list[Direction]:
    return [d for d in matrix.measured() if d[0 if outgoing else 1] == host]


def blame(matrix: PairMatrix, ratio: float, floor_gbps: float | None = None) -> list[Culprit]:
    slow = slow_directions(matrix, ratio, floor_gbps)
    culprits: list[Culprit] = []
    explained: set[Direction] = set()
    for host in matrix.nodes:
        sending = _peers(matrix, host, outgoing=True)
        receiving = _peers(matrix, host, outgoing=False)
        out_slow = len(sending) >= 2 and all(d in slow for d in sending)
        in_slow = len(receiving) >= 2 and all(d in slow for d in receiving)
        if not (out_slow or in_slow):
            continue
        what = "sends and receives" if out_slow and in_slow else "sends" if out_slow else "receives"
        involved = (sending if out_slow else []) + (receiving if in_slow else [])
        explained.update(involved)
        values = ", ".join(f"{c}->{s} {matrix.gbps[(c, s)]:.2f}" for c, s in sorted(involved))
        culprits.append(Culprit("node", host, None, f"{host} {what} slowly to every peer (Gb/s: {values})"))
    single_peer = len(matrix.nodes) <= 2
    for client, server in sorted(slow - explained):
        value = matrix.gbps[(client, server)]
        reverse = matrix.cell(server, client)
        back = f", {server} -> {client} {reverse:.2f} Gb/s" if reverse is not None else ""
        note = "; one peer: the node and its link cannot be told apart" if single_peer else ""
        culprits.append(Culprit("link", client, server, f"{client} -> {server} {value:.2f} Gb/s{back}{note}"))
    return culprits


def slow_allreduce_pairs(matrix: PairMatrix, ratio: float) -> list[frozenset[str]]:
    """Pairs whose all_reduce busbw is below `ratio` x the median pair's."""
    measured = {k: v for k, v in matrix.busbw_gbs.items() if v is not None}
    if len(measured) < 2:
        return []
    bar = ratio * statistics.median(measured.values())
    return sorted((k for k, v in measured.items() if v < bar), key=sorted)


def _nested(nodes: Sequence[str], value: Any) -> dict[str, dict[str, float | None]]:
    return {a: {b: value(a, b) for b in nodes if b != a} for a in nodes}


def to_json(matrix: PairMatrix, ratio: float, floor_gbps: float | None = None) -> dict[str, Any]:
    """`--json`'s "pairs" object: gbps[client][server], busbw_gbs[a][b] (symmetric), what is flagged."""
    return {
        "nodes": matrix.nodes,
        "asymmetry_ratio": ratio,
        "gbps": _nested(matrix.nodes, matrix.cell),
        "allreduce_busbw_gbs": _nested(matrix.nodes, lambda a, b: matrix.busbw_gbs.get(frozenset((a, b)))),
        "asymmetric": [
            {
                "fast": list(item.fast),
                "slow": list(item.slow),
                "fast_gbps": item.fast_gbps,
                "slow_gbps": item.slow_gbps,
                "ratio": round(item.ratio, 4),
            }
            for item in asymmetries(matrix, ratio)
        ],
        "culprits": [
            {"kind": c.kind, "host": c.host, "peer": c.peer, "evidence": c.evidence}
            for c in blame(matrix, ratio, floor_gbps)
        ],
        "slow_allreduce_pairs": [sorted(pair) for pair in slow_allreduce_pairs(matrix, ratio)],
    }


def _grid(title: str, nodes: Sequence[str], value: Any, flagged: Iterable[Direction]) -> Table:
    marked = set(flagged)
    table = Table(title=title, title_justify="left")
    table.add_column("from \\ to", style="bold")
    for node in nodes:
        table.add_column(node, justify="right")
    for a in nodes:
        cells = []
        for b in nodes:
            v = value(a, b) if a != b else None
            text = "-" if a == b else "n/a" if v is None else f"{v:,.2f}"
            cells.append(f"[red]{text}[/red]" if (a, b) in marked else text)
        table.add_row(a, *cells)
    return table


def tables(matrix: PairMatrix, ratio: float, floor_gbps: float | None = None) -> list[Table]:
    """Two node x node grids: iperf3 Gb/s (row = sender) with slow directions in red, and the pairs'
    all_reduce busbw in GB/s."""
    slow_pairs = slow_allreduce_pairs(matrix, ratio)
    slow_cells = {(a, b) for pair in slow_pairs for a in pair for b in pair if a != b}
    return [
        _grid(
            "iperf3 Gb/s (row sends to column)",
            matrix.nodes,
            matrix.cell,
            slow_directions(matrix, ratio, floor_gbps),
        ),
        _grid(
            "pairwise all_reduce busbw GB/s",
            matrix.nodes,
            lambda a, b: matrix.busbw_gbs.get(frozenset((a, b))),
            slow_cells,
        ),
    ]


def from_measurements(
    nodes: Sequence[str],
    gbps: Mapping[Direction, float | None],
    busbw_gbs: Mapping[frozenset[str], float | None] | None = None,
) -> PairMatrix:
    unknown = sorted({h for d in gbps for h in d} - set(nodes))
    if unknown:
        raise ValueError(f"measurements name hosts outside the matrix: {', '.join(unknown)}")
    return PairMatrix(list(nodes), dict(gbps), dict(busbw_gbs or {}))
