"""Run summaries made from known step-time parameters, and a verify-node record holding a known bus bandwidth,
for the forecast's tests: a fit must find the parameters these were made from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BATCH = 64  # samples per rank and step


@dataclass(frozen=True)
class Truth:
    compute_s: float = 0.020
    overlap: float = 0.4
    alpha_s: float = 0.0015
    parameters: int = 2_000_000
    busbw_gbs: float = 1.25

    @property
    def gradient_bytes(self) -> float:
        return self.parameters * 4.0

    def ring_s(self, world_size: int, nodes: int) -> float:
        # Written out from the formula, not taken from the code under test.
        bandwidth = (
            2 * (world_size - 1) / world_size * self.gradient_bytes / (self.busbw_gbs * 1e9)
            if nodes > 1
            else 0.0
        )
        return bandwidth + self.alpha_s * (world_size - 1)

    def wait_s(self, world_size: int, nodes: int) -> float:
        return (1 - self.overlap) * self.ring_s(world_size, nodes)

    def throughput(self, world_size: int, nodes: int) -> float:
        return BATCH * world_size / (self.compute_s + self.wait_s(world_size, nodes))


def summary(
    truth: Truth, nodes: int, per_node: int = 4, spread: float = 0.0, wait_error: float = 0.0
) -> dict[str, Any]:
    """A trainer summary.json of a run the truth describes; `spread` is its windows' relative sigma and
    `wait_error` a relative error put on its measured wait."""
    n = nodes * per_node
    wait = truth.wait_s(n, nodes) * (1 + wait_error)
    rate = BATCH * n / (truth.compute_s + wait)
    ranks = [
        {
            "rank": r,
            "local_rank": r % per_node,
            "node": f"node{r // per_node + 1}",
            "compute_seconds_mean": truth.compute_s,
            "collective_wait_seconds_mean": wait,
        }
        for r in range(n)
    ]
    return {
        "schema": 1,
        "run": f"synthetic-{nodes}x{per_node}",
        "status": "completed",
        "world_size": n,
        "nodes": nodes,
        "nproc_per_node": per_node,
        "device": "cpu",
        "parameters": truth.parameters,
        "samples_per_step": BATCH * n,
        "config": {},
        "throughput": {
            "global_samples_per_second_mean": rate,
            "global_samples_per_second_stddev": spread * rate,
        },
        "comm_overhead_ratio": wait / (truth.compute_s + wait),
        "ranks": ranks,
        "timeline": [[1000.0 + 10 * k, 20.0 * k, rate, 1.0, 0.0] for k in range(10)],
        "written_at": 1100.0,
    }


def write_run(root: Path, name: str, data: dict[str, Any]) -> Path:
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    (run / "summary.json").write_text(json.dumps(data))
    return run


def write_verify_record(verify_dir: Path, stamp: str, busbw_gbs: float, nodes: list[str]) -> Path:
    """An ansible-runner data dir as verify-node keeps it, with the Gloo probe's answer in the final stats."""
    probe = {
        "probe": "gloo_allreduce",
        "world_size": len(nodes),
        "nnodes": len(nodes),
        "results": [
            {"size_bytes": 16777216, "iters": 10, "time_s": 0.01, "algbw_gbs": 1.0, "busbw_gbs": busbw_gbs}
        ],
        "busbw_gbs": busbw_gbs,
    }
    gloo = {nodes[0]: {"rc": 0, "stdout": json.dumps(probe), "stderr": ""}}
    gloo.update({node: {"rc": 0, "stdout": "", "stderr": ""} for node in nodes[1:]})
    stats = {"verify_net": {"nodes": nodes, "iperf": {}, "gloo": gloo}}
    data_dir = verify_dir / f"{stamp}-verify"
    events = data_dir / "artifacts" / "verify" / "job_events"
    events.mkdir(parents=True)
    (events / "1-aaaa.json").write_text(json.dumps({"event": "playbook_on_start", "event_data": {}}))
    final = {"event": "playbook_on_stats", "event_data": {"artifact_data": stats}}
    (events / "12-bbbb.json").write_text(json.dumps(final))
    return data_dir
