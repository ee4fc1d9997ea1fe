"""`tooling logs` on the cluster: every rank's ECS log read from the node it ran on (the node its status file
is on), filtered by rank and by node, an unknown rank refused, and `-f` ended by Ctrl-C with exit 0.

It reads the run the roll-out left (test_02's phase 2a soak, stopped, its logs kept on the nodes); run
alone, it deploys a short phase 2a run first."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.sandbox_harness import ROOT, Sandbox, explain
from tests.integration.sandbox_jobs import SMALL_RUN, deploy_run, forget_run

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]

LINE = re.compile(r"^(node\d+) rank(\d+) \| ", re.MULTILINE)


def _status(box: Sandbox) -> dict[str, object]:
    shown = box.tooling("status", "--inventory", str(box.inventory), "--json", timeout=60)
    if shown.returncode == 2 and "no deployment recorded" in shown.stderr:
        forget_run(box, "logs-2a")
        deploy_run(box, "2a", "logs-2a", [*SMALL_RUN, "training.max_steps=20"])
        shown = box.tooling("status", "--inventory", str(box.inventory), "--json", timeout=60)
    assert shown.returncode in (0, 1), explain(shown)
    document: dict[str, object] = json.loads(shown.stdout)
    return document


def test_logs_reads_each_rank_where_it_ran(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    status = _status(box)
    world_size = int(str(status["world_size"]))
    where = {
        rank["rank"]: node["host"]
        for node in status["nodes"]  # type: ignore[attr-defined]
        for rank in node["ranks"]
    }
    assert len(where) == world_size, status

    every = box.tooling("logs", "--inventory", str(box.inventory), "-n", "3", timeout=60)
    assert every.returncode == 0, explain(every)
    shown = {(host, int(rank)) for host, rank in LINE.findall(every.stdout)}
    assert shown == {(host, rank) for rank, host in where.items()}, every.stdout[-2000:]
    assert "INFO" in every.stdout  # ECS JSON rendered as time, level, message

    one = box.tooling("logs", "--inventory", str(box.inventory), "--rank", "3", "-n", "2", timeout=60)
    assert one.returncode == 0, explain(one)
    assert set(LINE.findall(one.stdout)) == {(where[3], "3")}, one.stdout

    node2 = box.tooling("logs", "--inventory", str(box.inventory), "--node", "node2", timeout=60)
    assert node2.returncode == 0 and {h for h, _ in LINE.findall(node2.stdout)} == {"node2"}, explain(node2)

    unknown = box.tooling("logs", "--inventory", str(box.inventory), "--rank", str(world_size), timeout=60)
    assert unknown.returncode == 2 and f"its ranks are 0..{world_size - 1}" in unknown.stderr, explain(
        unknown
    )

    # -f: polled until Ctrl-C, which ends it cleanly.
    follow = subprocess.Popen(
        [sys.executable, "-m", "tooling.cli", "logs", "--inventory", str(box.inventory), "-f", "-n", "1"],
        cwd=ROOT,
        env=box.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)
    follow.send_signal(signal.SIGINT)
    out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err
    assert LINE.search(out), out
