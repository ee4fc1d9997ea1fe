"""`verify-node --pairs all`: the matrix read from what playbooks/tasks/verify_pair_round.yml published,
and its findings (asymmetry, the node or link to blame). The computations are tooling/verify/pair_matrix.py's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from tooling.findings import CLUSTER, Finding
from tooling.verify import pair_matrix as pm
from tooling.verify import parsers as p
from tooling.verify.judge import ClusterFacts, CommandOutput
from tooling.verify.profiles import Profile


def _iperf_gbps(out: CommandOutput | None) -> float | None:
    if out is None or out.skipped or not out.stdout.strip():
        return None
    try:
        return p.parse_iperf3(out.stdout).received_gbps
    except p.ParseError:
        return None  # net.iperf3's own row says why


def _pair_busbw(results: Mapping[str, Any]) -> tuple[float | None, str]:
    """Either end may have been rank 0 (the one that prints): the first answer that parses, else why not."""
    problems = []
    for host, res in sorted(results.items()):
        out = CommandOutput.from_result(res)
        if out is None or out.skipped:
            continue
        if out.rc not in (0, None):
            problems.append(f"{host}: torchrun failed (rc {out.rc}): {out.error()}")
        elif out.stdout.strip():
            try:
                return p.parse_gloo_probe(out.stdout).busbw_gbs, ""
            except p.ParseError as exc:
                problems.append(f"{host}: {exc}")
    return None, "; ".join(problems) or "no rank printed a result"


def build_matrix(
    nodes: Sequence[str], raw_net: Mapping[str, Any]
) -> tuple[pm.PairMatrix, dict[frozenset[str], str]]:
    """The matrix, and why each pair all_reduce without a figure has none."""
    cluster = ClusterFacts.from_raw(raw_net)
    gbps = {(pair.client, pair.server): _iperf_gbps(pair.output) for pair in cluster.iperf}
    busbw: dict[frozenset[str], float | None] = {}
    failed: dict[frozenset[str], str] = {}
    for key, results in (raw_net.get("pair_collectives") or {}).items():
        ends = str(key).split("<->")
        if len(ends) == 2 and isinstance(results, Mapping):
            busbw[frozenset(ends)], why = _pair_busbw(results)
            if why:
                failed[frozenset(ends)] = why
    return pm.from_measurements(list(nodes), gbps, busbw), failed


def limits(profile: Profile) -> tuple[float, float | None]:
    """The asymmetry ratio and a direction's absolute floor (the iperf3 band's minimum)."""
    return profile.pair_asymmetry_ratio, profile.inter_node_gbps.min


def tables(matrix: pm.PairMatrix, profile: Profile) -> list[Table]:
    return pm.tables(matrix, *limits(profile))


def to_json(matrix: pm.PairMatrix, profile: Profile) -> dict[str, Any]:
    return pm.to_json(matrix, *limits(profile))


def pair_findings(
    matrix: pm.PairMatrix, profile: Profile, failed_pairs: Mapping[frozenset[str], str] | None = None
) -> list[Finding]:
    """FAIL for each node or link blamed and each pair all_reduce that gave no figure; WARN for each
    asymmetric pair and each pair all_reduce behind the others."""
    failed_pairs = failed_pairs or {}
    ratio, floor = limits(profile)
    expected = f"A->B >= {ratio:g} x B->A and x the median direction"
    rows = [
        Finding(
            c.host,
            "net.pair_blame" if c.peer is None else f"net.pair_blame -> {c.peer}",
            "FAIL",
            f"slow {c.kind}",
            expected,
            c.evidence,
        )
        for c in pm.blame(matrix, ratio, floor)
    ]
    for a in pm.asymmetries(matrix, ratio):
        rows.append(
            Finding(
                CLUSTER,
                f"net.pair_asymmetry {a.slow[0]}->{a.slow[1]}",
                "WARN",
                f"{a.ratio:.2f}",
                f">= {ratio:g}",
                f"{a.slow[0]} -> {a.slow[1]} {a.slow_gbps:.2f} Gb/s against "
                f"{a.fast[0]} -> {a.fast[1]} {a.fast_gbps:.2f} Gb/s",
            )
        )
    for pair in pm.slow_allreduce_pairs(matrix, ratio):
        rows.append(
            Finding(
                CLUSTER,
                f"net.pair_allreduce {'<->'.join(sorted(pair))}",
                "WARN",
                f"{matrix.busbw_gbs[pair]:.3f} GB/s",
                f">= {ratio:g} x the median pair",
                "2-process all_reduce between the pair is behind the other pairs",
            )
        )
    rows.extend(
        Finding(CLUSTER, f"net.pair_allreduce {'<->'.join(sorted(k))}", "FAIL", "-", "a result", why)
        for k, why in sorted(failed_pairs.items(), key=lambda item: sorted(item[0]))
    )
    return rows
