"""A real `tooling sweep --phase 1 --local` (two tiny trials under torchrun, Gloo on CPU), then `--lock`:
the locked production config loads and carries the winner's values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ddp.config import load_config
from tooling.cli import app
from tooling.plan import phases as plan_phases
from tooling.plan.phases import load_phases

pytestmark = pytest.mark.slow

TINY = [
    "workload.input_dim=16",
    "workload.hidden_dim=16",
    "workload.num_layers=1",
    "workload.num_samples=512",
    "training.log_every_steps=5",
    "schedule.warmup_steps=0",
    "metrics.enabled=false",  # no ports to collide with other runs on this machine
]


def test_local_sweep_then_lock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Phase 1 with 2 processes instead of 4: this machine has 2 cores.
    plan = load_phases()
    plan.phases["1"] = plan.phases["1"].model_copy(update={"nproc_per_node": 2})
    # `tooling sweep` imports load_phases when it runs, so the plan module's is the one to patch.
    monkeypatch.setattr(plan_phases, "load_phases", lambda: plan)
    monkeypatch.setenv("TOOLING_HOME", str(tmp_path))  # locked configs: tmp_path/production
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sweeps = tmp_path / "sweeps"
    sets = [arg for item in TINY for arg in ("--set", item)]
    runner = CliRunner()

    result = runner.invoke(
        app,
        [
            "sweep",
            "--phase",
            "1",
            "--local",
            "--id",
            "tiny",
            "--sweeps-dir",
            str(sweeps),
            "--grid",
            "batch_size=8,16",
            "--grid",
            "lr=0.05",
            "--steps",
            "20",
            "--trial-timeout",
            "120",
            *sets,
        ],
    )
    logs = "\n".join(p.read_text()[-2000:] for p in (sweeps / "tiny" / "trials").glob("*.log"))
    assert result.exit_code == 0, f"{result.output}\n{logs}"
    done = json.loads((sweeps / "tiny" / "sweep.json").read_text())
    trials = {t["trial"]: t for t in done["trials"]}
    assert set(trials) == {1, 2}
    for t in trials.values():
        assert t["status"] == "ok", t
        assert t["throughput"] > 0 and t["nonfinite"] == 0 and t["loss_fell"] is True
        assert t["steps"] == 20
        assert Path(t["summary"]).is_file()
    winner = trials[done["best"]]
    assert done["ranking"]["ranked"][0] == done["best"]

    result = runner.invoke(app, ["sweep", "--lock", "--phase", "1", "--sweeps-dir", str(sweeps)])
    assert result.exit_code == 0, result.output
    locked = tmp_path / "production" / "phase1-v1.yaml"
    assert (tmp_path / "production" / "phase1.current").read_text().strip() == locked.name
    config = load_config(locked)
    assert config.training.batch_size == winner["combination"]["training.batch_size"]
    assert config.optimizer.lr == 0.05
    assert config.run.name == "phase1"  # everything else still comes from the phase's config
    evidence = json.loads((tmp_path / "production" / "phase1-v1.evidence.json").read_text())
    assert evidence["sweep"]["id"] == "tiny" and len(evidence["trials"]) == 2
