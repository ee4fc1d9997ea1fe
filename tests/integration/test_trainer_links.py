"""Two nodes on this machine (two torchrun agents, one rank each, told apart by DDP_NODE_NAME): each
node's local rank 0 learns the other's metrics endpoint at the start and times a handshake to it on its
probe thread, writes the link into its status file, and a healthy run names no slow link."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.trainer_harness import (
    MONITOR_INTERVAL_S,
    free_port_block,
    run_dir,
    trainer_env,
    write_config,
)

pytestmark = pytest.mark.slow

RUN = "links"


def _agent(config: Path, node_rank: int, rendezvous: int) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=1",
        f"--node-rank={node_rank}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{rendezvous}",
        f"--rdzv-id={RUN}",
        f"--monitor-interval={MONITOR_INTERVAL_S}",
        "-m",
        "ddp.real_ddp_trainer",
        "--config",
        str(config),
    ]
    env = {**trainer_env(), "DDP_NODE_NAME": f"node{node_rank + 1}"}
    return subprocess.Popen(
        command, env=env, cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_two_nodes_probe_each_others_link_and_a_healthy_run_names_none(tmp_path: Path) -> None:
    rendezvous = free_port_block()
    agents = []
    for node_rank in range(2):
        changes = {
            # ~100 steps of 30 ms: a few seconds, many probe rounds at 0.1 s.
            "workload": {
                "kind": "synthetic",
                "input_dim": 16,
                "hidden_dim": 16,
                "num_samples": 512,
                "device_time_ms": 30,
            },
            "training": {"max_steps": 100, "log_every_steps": 20},
            "checkpoint": {"enabled": False},
            "metrics": {
                "enabled": True,
                "bind_address": "127.0.0.1",
                "base_port": free_port_block(),
                "status_every_steps": 5,
                "link_probe_every_s": 0.1,
            },
        }
        node_dir = tmp_path / f"node{node_rank + 1}"
        node_dir.mkdir()
        config = write_config(node_dir, RUN, changes)
        agents.append(_agent(config, node_rank, rendezvous))
    outputs = [agent.communicate(timeout=240)[0] for agent in agents]
    assert [a.returncode for a in agents] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    for node, peer in (("node1", "node2"), ("node2", "node1")):
        status = json.loads(
            (run_dir(tmp_path / node, RUN) / "status" / f"rank{int(node[-1]) - 1}.json").read_text()
        )
        (link,) = status["links"]
        assert link["peer"] == peer and link["error"] is None, link
        assert 0 < link["best_seconds"] <= link["rtt_seconds"] < 1.0 and link["slow"] is False, link
    summary = json.loads((run_dir(tmp_path / "node1", RUN) / "summary.json").read_text())
    assert [r["slow_link_events"] for r in summary["ranks"]] == [0, 0], summary["ranks"]
