"""The doctor's verdict from what was collected (tooling/doctor/node_probe.py's documents, one per node):
pure, so every rule is tested on made-up evidence.

Always reported: a node that could not be reached, a rendezvous endpoint that does not resolve or connect,
a rank whose process is gone or stopped (state T), a rank missing from the run, a rank's own straggler
flag. A hang (no rank's status has moved for K x the median step time x the steps between status writes,
or on demand) adds the ranks behind the others, and the collective each blocked rank waits in.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tooling.doctor.stacks import collective

Kind = Literal["hang", "straggler", "dead", "unreachable"]
DEFAULT_K = 5.0
# Below this no stall counts as a hang: a checkpoint or a heartbeat pauses a healthy run for seconds.
MIN_STALL_S = 30.0
UNKNOWN_HOST = "(unknown)"
# Process states that still run: R running, S sleeping (a collective's wait), D disk, I idle.
STOPPED_STATES = {"T", "t"}


@dataclass(frozen=True)
class DoctorFinding:
    kind: Kind
    rank: int | None
    host: str
    evidence: str
    # False for a rank that only waits on the ones at fault, or stalls with everyone at the same step.
    at_fault: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NodeEvidence:
    """One node as seen: its probe document, or why it could not be read."""

    host: str
    document: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ranks(self) -> list[dict[str, Any]]:
        return list(self.document.get("ranks") or [])


@dataclass(frozen=True)
class Settings:
    k: float = DEFAULT_K
    now: bool = False  # diagnose a hang without waiting for the stall to last
    world_size: int | None = None


def _age(node: NodeEvidence, rank: dict[str, Any]) -> float | None:
    """Seconds since the rank last wrote its status, on the node's own clock (no skew between machines)."""
    now, then = node.document.get("node_time"), rank.get("updated_at")
    return None if now is None or then is None else max(0.0, float(now) - float(then))


def stall_threshold_s(ranks: list[dict[str, Any]], k: float) -> float:
    """K x the median step time x the steps between status writes, never under MIN_STALL_S."""
    steps = [r["step_seconds"] * (r.get("status_every_steps") or 1) for r in ranks if r.get("step_seconds")]
    return max(MIN_STALL_S, k * statistics.median(steps)) if steps else MIN_STALL_S


def _where(rank: dict[str, Any]) -> str:
    place = collective((rank.get("process") or {}).get("stack"))
    if place is not None:
        return f"in {place}"
    error = (rank.get("process") or {}).get("stack_error")
    return f"collective unknown ({error})" if error else "collective unknown (no Python frame names one)"


def _culprit(rank: dict[str, Any]) -> tuple[str, str] | None:
    """Why this rank itself stops the group (a word for its peers' findings, the full evidence), or None."""
    process = rank.get("process") or {}
    state = process.get("state")
    pid = rank.get("pid")
    if rank.get("state") in ("completed", "stopped", "failed"):
        return None  # it ended and said so; not a hang
    if state is None:
        return "gone", f"process {pid} is gone (status says {rank.get('state')!r} at step {rank.get('step')})"
    if state in STOPPED_STATES:
        return (
            "stopped",
            f"process {pid} is stopped (state {state} in /proc/{pid}/stat) at step {rank.get('step')}",
        )
    return None


def diagnose(nodes: list[NodeEvidence], settings: Settings) -> list[DoctorFinding]:
    findings: list[DoctorFinding] = []
    reachable = [n for n in nodes if n.error is None]
    # Nodes that reached the rendezvous endpoint: while some do, one that cannot connect is cut off itself.
    connected = [
        n.host for n in reachable if (n.document.get("rendezvous") or {}).get("error", "unchecked") is None
    ]
    for node in nodes:
        if node.error is not None:
            findings.append(
                DoctorFinding(
                    "unreachable",
                    None,
                    node.host,
                    f"node not read (down, cut off or its collector failed): {node.error}",
                )
            )
        rendezvous = node.document.get("rendezvous") or {}
        if rendezvous.get("error"):
            evidence = f"rendezvous endpoint {rendezvous['endpoint']} from {node.host}: {rendezvous['error']}"
            if rendezvous.get("failed") == "connect" and connected:
                evidence = f"cut off: {evidence}, while {', '.join(connected)} connect"
                findings.append(DoctorFinding("unreachable", None, node.host, evidence))
            else:
                findings.append(
                    DoctorFinding("unreachable", None, rendezvous.get("host") or node.host, evidence)
                )
    seen = [(node, rank) for node in reachable for rank in node.ranks]
    culprits: dict[int, str] = {}
    for node, rank in seen:
        cause = _culprit(rank)
        if cause is not None:
            culprits[rank["rank"]], why = cause
            kind: Kind = "dead" if (rank.get("process") or {}).get("state") is None else "hang"
            findings.append(DoctorFinding(kind, rank["rank"], node.host, f"{why}; {_where(rank)}"))
    missing = _missing(seen, settings.world_size, unreachable=len(reachable) < len(nodes))
    for number in missing:
        culprits[number] = "missing"
        findings.append(DoctorFinding("dead", number, UNKNOWN_HOST, f"rank {number} has no status file"))
    for node, rank in seen:
        if rank.get("straggler") and rank.get("state") == "running":
            ratio = rank.get("compute_ratio_to_median")
            detail = f"{ratio:.2f}x the median rank's compute" if ratio else "over the trainer's margin"
            findings.append(DoctorFinding("straggler", rank["rank"], node.host, f"flagged itself: {detail}"))
    findings.extend(_hang(seen, culprits, settings))
    return findings


def _missing(
    seen: list[tuple[NodeEvidence, dict[str, Any]]], world_size: int | None, unreachable: bool
) -> list[int]:
    """Ranks with no status file; unknown while a node is unreachable (its ranks may be fine)."""
    if world_size is None or unreachable:
        return []
    present = {rank.get("rank") for _, rank in seen}
    return [r for r in range(world_size) if r not in present]


def _hang(
    seen: list[tuple[NodeEvidence, dict[str, Any]]], culprits: dict[int, str], settings: Settings
) -> list[DoctorFinding]:
    running = [(n, r) for n, r in seen if r.get("state") == "running" and r["rank"] not in culprits]
    if not running:
        return []
    ages = [age for n, r in running if (age := _age(n, r)) is not None]
    threshold = stall_threshold_s([r for _, r in running], settings.k)
    stalled = bool(ages) and min(ages) > threshold
    if not (stalled or settings.now or culprits):
        return []
    stall = f"no status moved for {min(ages):.0f} s (threshold {threshold:.0f} s)" if ages else "stalled"
    top = max(int(r.get("step") or 0) for _, r in running)
    slack = max(int(r.get("status_every_steps") or 1) for _, r in running)
    findings = []
    waited_for = ", ".join(
        f"rank {n} ({why.split(' (')[0].split(';')[0]})" for n, why in sorted(culprits.items())
    )
    for node, rank in running:
        step = int(rank.get("step") or 0)
        behind = False
        if culprits:
            evidence = f"{_where(rank)} at step {step}, waiting for {waited_for}"
        elif (stalled or settings.now) and step + slack <= top:
            evidence = f"behind: step {step} while others reached {top}; {_where(rank)}; {stall}"
            behind = True
        elif stalled:
            evidence = f"{_where(rank)} at step {step}; {stall}"
        else:
            continue
        findings.append(DoctorFinding("hang", rank["rank"], node.host, evidence, at_fault=behind))
    return findings
