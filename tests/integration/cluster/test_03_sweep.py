"""`tooling sweep` on the sandbox cluster: two trials of phase 2a (8 ranks over both nodes), each re-launched
by the sweep on the provisioned nodes with its own settings, measured from the run's summary fetched back
from node1, and ranked. (Locking the winner is a local file operation, tested in test_sweep_local.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import RUN_ROOT, SMALL_RUN, on_node

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]

STEPS = 80


def test_sweep_runs_ranked_trials_on_the_cluster(phase2a_cluster: Sandbox) -> None:
    box = phase2a_cluster
    sweeps = box.tmp / "sweeps"
    swept = box.tooling(
        "sweep", "--phase", "2a", "--inventory", str(box.inventory), "--id", "sandbox-2a",
        "--sweeps-dir", str(sweeps), "--grid", "batch_size=8,16", "--steps", str(STEPS),
        "--trial-timeout", "600", "--restart", *[a for s in SMALL_RUN for a in ("--set", s)],
    )  # fmt: skip
    assert swept.returncode == 0, explain(swept)
    done = json.loads((sweeps / "sandbox-2a" / "sweep.json").read_text())
    trials = {t["trial"]: t for t in done["trials"]}
    assert set(trials) == {1, 2}, trials
    for t in trials.values():
        assert t["status"] == "ok", t
        assert t["throughput"] > 0 and t["nonfinite"] == 0 and t["steps"] == STEPS, t
        # The copy kept beside the sweep is the run the nodes made: 8 ranks on 2 nodes, this trial's batch.
        summary = json.loads(Path(t["summary"]).read_text())
        assert (summary["world_size"], summary["nodes"]) == (8, 2), summary
        assert summary["config"]["training"]["batch_size"] == t["combination"]["training.batch_size"]
        on_nodes = on_node(box, "node1", f"cat {RUN_ROOT}/{t['run_id']}/summary.json")
        assert on_nodes.rc == 0 and json.loads(on_nodes.stdout) == summary, on_nodes
    assert done["best"] in trials and done["ranking"]["ranked"][0] == done["best"]
    assert "sandbox-2a" in (sweeps / "sandbox-2a" / "sweep.md").read_text()
