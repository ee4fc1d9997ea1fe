"""Why torchrun restarted its workers, from the lines it logs when a worker dies.

torchrun (torch.distributed.elastic) logs, for the first worker that failed in a group:
    failed (exitcode: -9) local_rank: 1 (pid: 4353) of binary: /usr/bin/python3
A negative exit code is the signal that ended the process.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass

from tooling.soak.samples import Sample

_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+) \(pid: (\d+)\)")
_NODE = re.compile(r"^([A-Za-z0-9_.-]+): ")
# What the launcher log shows that explains a restart; everything else it prints is left alone.
RELEVANT = ("failed (exitcode:", "attempts left", "Received", "death signal")


@dataclass(frozen=True)
class WorkerFailure:
    exitcode: int
    local_rank: int
    pid: int
    node: str | None = None

    def how(self) -> str:
        if self.exitcode < 0:
            try:
                name = signal.Signals(-self.exitcode).name
            except ValueError:
                name = f"signal {-self.exitcode}"
            return f"killed by {name}"
        return f"exited with code {self.exitcode}"


def is_relevant(line: str) -> bool:
    return any(marker in line for marker in RELEVANT)


def parse_failure(line: str) -> WorkerFailure | None:
    """`node: text` lines (from a cluster) carry their node; local lines have none."""
    match = _FAILED.search(line)
    if match is None:
        return None
    node = _NODE.match(line)
    return WorkerFailure(
        int(match.group(1)), int(match.group(2)), int(match.group(3)), node.group(1) if node else None
    )


def describe(failure: WorkerFailure, history: list[Sample]) -> str:
    """'rank 1 (local rank 1, pid 4353, node vm) killed by SIGKILL at step 60', naming the global rank
    when a sample of the failed incarnation shows which rank ran under that pid (latest sample first)."""
    where = [f"local rank {failure.local_rank}", f"pid {failure.pid}"]
    rank = next(
        (
            obs
            for sample in reversed(history)
            for obs in sample.ranks.values()
            if obs.ran_as(failure.pid) and (failure.node is None or obs.node in (None, failure.node))
        ),
        None,
    )
    node = failure.node or (rank.node if rank else None)
    if node:
        where.append(f"node {node}")
    who = f"rank {rank.rank}" if rank else "a worker"
    at = f" at step {rank.step}" if rank else ""
    return f"{who} ({', '.join(where)}) {failure.how()}{at}"


def explain(lines: list[str], history: list[Sample]) -> list[str]:
    """One cause per failed worker the lines name; duplicates (the same pid logged twice) collapse."""
    causes: list[str] = []
    seen: set[tuple[str | None, int]] = set()
    for line in lines:
        failure = parse_failure(line)
        if failure is None or (failure.node, failure.pid) in seen:
            continue
        seen.add((failure.node, failure.pid))
        causes.append(describe(failure, history))
    return causes
