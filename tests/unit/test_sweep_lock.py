"""Locking a sweep's winner: new versions never overwrite old ones, evidence sits beside each, the pointer
moves last, a failure part-way leaves the previous version current; deploys and local runs then start
from the locked config, with the user's --config and --set still on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ddp.config import load_config
from ddp.config_errors import ConfigError
from tests.unit.sweep_fakes import use_production_dir
from tooling.console import ToolingError
from tooling.job import deploy as deploy_module
from tooling.job import production
from tooling.job.deploy import DeployRequest, build_plan
from tooling.job.torchrun import local_launch
from tooling.plan.phases import load_phases
from tooling.sweep import lock as lock_module
from tooling.sweep.grid import parse_grid
from tooling.sweep.lock import lock
from tooling.sweep.records import SweepPlan, TrialRecord

PHASE1 = "ddp/configs/phase1.yaml"
INVENTORY = {
    "phase1": {"hosts": ["node1"]},
    "phase2a": {"hosts": ["node1", "node2"]},
    "_meta": {"hostvars": {"node1": {"ansible_host": "192.0.2.1"}, "node2": {"ansible_host": "192.0.2.2"}}},
}


def _plan(measured_over: dict[str, Any] | None = None) -> SweepPlan:
    axes = parse_grid(["batch_size=16,32", "lr=0.01,0.1"])
    combos = [{"training.batch_size": b, "optimizer.lr": lr} for b in (16, 32) for lr in (0.01, 0.1)]
    return SweepPlan("s1", "1", axes, combos, 20, [], "local", None, 0.0, measured_over, created_by="ops@ctl")


def _records(plan: SweepPlan) -> list[TrialRecord]:
    throughputs = [100.0, 400.0, 300.0, 200.0]
    return [
        TrialRecord(
            n,
            combo,
            f"s1-t{n:02d}",
            "ok",
            throughput=throughputs[n - 1],
            throughput_sigma=2.0,
            comm_overhead=0.05,
            loss_first=2.3,
            loss_last=1.0 if n != 2 else 2.5,
            nonfinite=0,
        )
        for n, combo in enumerate(plan.combinations, 1)
    ]


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return use_production_dir(monkeypatch, tmp_path)


def _current_name(folder: Path) -> str:
    return (folder / "phase1.current").read_text().strip()


def test_lock_best_then_another_trial_as_v2(folder: Path) -> None:
    plan = _plan()
    records = _records(plan)
    first = lock(plan, records, PHASE1)
    # Trial 2 is fastest but its loss rose: trial 3 is the best that qualifies.
    assert (first.version, first.trial.trial, first.previous) == (1, 3, None)
    v1 = folder / "phase1-v1.yaml"
    assert first.config == v1 and _current_name(folder) == "phase1-v1.yaml"
    data = yaml.safe_load(v1.read_text())
    assert (v1.parent / data.pop("base")).resolve() == (production.PROJECT_ROOT / PHASE1).resolve()
    assert data == {"training": {"batch_size": 32}, "optimizer": {"lr": 0.01}}  # only the chosen keys
    config = load_config(v1)
    assert (config.training.batch_size, config.optimizer.lr, config.run.name) == (32, 0.01, "phase1")
    v1_text = v1.read_text()

    second = lock(plan, records, PHASE1, trial=4)
    assert (second.version, second.trial.trial, second.previous) == (2, 4, "phase1-v1.yaml")
    assert v1.read_text() == v1_text  # an earlier version is never touched
    assert _current_name(folder) == "phase1-v2.yaml"
    assert load_config(folder / "phase1-v2.yaml").optimizer.lr == 0.1
    evidence = json.loads((folder / "phase1-v2.evidence.json").read_text())
    assert evidence["sweep"]["id"] == "s1" and evidence["chosen"]["trial"] == 4
    assert evidence["previous"] == "phase1-v1.yaml" and evidence["version"] == 2
    assert len(evidence["trials"]) == 4 and evidence["trials"][1]["throughput"] == 400.0
    assert evidence["ranking"]["excluded"] == [{"trial": 2, "why": "loss did not fall: 2.3 -> 2.5"}]
    assert "@" in evidence["locked_by"] and evidence["locked_at"] > 0
    current = production.current("1", PHASE1)
    assert current is not None and current.version == 2


def test_a_version_number_is_never_reused(folder: Path) -> None:
    folder.mkdir()
    (folder / "phase1-v2.evidence.json").write_text("{}")  # left by someone; its config is gone
    assert lock(_plan(), _records(_plan()), PHASE1).version == 3


def test_failure_part_way_leaves_the_previous_version_current(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, records = _plan(), _records(_plan())
    lock(plan, records, PHASE1)
    before = sorted(p.name for p in folder.iterdir())

    def disk_full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lock_module, "atomic_write_text", disk_full)  # the pointer's move fails
    with pytest.raises(OSError, match="No space"):
        lock(plan, records, PHASE1, trial=4)
    assert sorted(p.name for p in folder.iterdir()) == before
    current = production.current("1", PHASE1)
    assert current is not None and current.version == 1

    real_create = lock_module._create
    calls: list[Path] = []

    def fail_on_config(path: Path, text: str) -> None:
        calls.append(path)
        if path.suffix == ".yaml":
            raise OSError(5, "I/O error")
        real_create(path, text)

    monkeypatch.setattr(lock_module, "_create", fail_on_config)
    with pytest.raises(OSError, match="I/O error"):
        lock(plan, records, PHASE1, trial=4)
    assert [p.name for p in calls] == ["phase1-v2.evidence.json", "phase1-v2.yaml"]
    assert sorted(p.name for p in folder.iterdir()) == before  # the evidence written first is gone too


def test_lock_builds_on_the_production_config_the_sweep_measured(folder: Path) -> None:
    below = {
        "config": "phase1-v1.yaml",
        "version": 1,
        "settings": {"training": {"batch_size": 64}, "ddp": {"bucket_cap_mb": 50}},
    }
    axes = parse_grid(["lr=0.01,0.1"])
    plan = SweepPlan(
        "s2", "1", axes, [{"optimizer.lr": 0.01}, {"optimizer.lr": 0.1}], 20, [], "local", None, 0.0, below
    )
    records = [
        TrialRecord(
            1,
            {"optimizer.lr": 0.01},
            "s2-t01",
            "ok",
            throughput=10.0,
            loss_first=2.0,
            loss_last=1.0,
            nonfinite=0,
        ),
        TrialRecord(
            2,
            {"optimizer.lr": 0.1},
            "s2-t02",
            "ok",
            throughput=20.0,
            loss_first=2.0,
            loss_last=1.0,
            nonfinite=0,
        ),
    ]
    locked = lock(plan, records, PHASE1)
    config = load_config(locked.config)
    assert (config.training.batch_size, config.ddp.bucket_cap_mb, config.optimizer.lr) == (64, 50.0, 0.1)


@pytest.mark.parametrize(
    ("trial", "finished", "match"),
    [
        (2, 4, "trial 2 cannot be locked: loss did not fall"),
        (9, 4, "trial 9 cannot be locked: no such trial"),
        (None, 3, "has run 3 of 4 trials"),
    ],
)
def test_lock_refuses_what_does_not_qualify(
    folder: Path, trial: int | None, finished: int, match: str
) -> None:
    plan = _plan()
    with pytest.raises(ToolingError, match=match):
        lock(plan, _records(plan)[:finished], PHASE1, trial=trial)
    assert not folder.exists() or not any(folder.iterdir())


# ---- deploys and local runs start from the locked config


@pytest.fixture
def locked_v1(folder: Path) -> Path:
    plan = _plan()
    return lock(plan, _records(plan), PHASE1).config


def test_deploy_lays_the_locked_config_under_config_and_set(
    locked_v1: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deploy_module, "load_inventory", lambda _path: INVENTORY)
    plan = build_plan(DeployRequest(phase="1", inventory=tmp_path), load_phases())
    assert plan.extravars["ddp_trainer_config_overrides"] == {
        "training": {"batch_size": 32},
        "optimizer": {"lr": 0.01},
    }
    assert "production config: phase1-v1.yaml" in capsys.readouterr().out

    site = tmp_path / "site.yaml"
    site.write_text("optimizer: {lr: 0.5}\n")
    plan = build_plan(DeployRequest(phase="1", inventory=tmp_path, config=site), load_phases())
    assert plan.extravars["ddp_trainer_config_overrides"] == {
        "training": {"batch_size": 32},
        "optimizer": {"lr": 0.5},
    }

    # --set is validated over the locked config too.
    with pytest.raises(ConfigError, match=r"training\.batch_size"):
        build_plan(
            DeployRequest(phase="1", inventory=tmp_path, overrides=["training.batch_size=0"]), load_phases()
        )
    # Phase 2a has no lock: unchanged behaviour.
    plan = build_plan(DeployRequest(phase="2a", inventory=tmp_path), load_phases())
    assert "ddp_trainer_config_overrides" not in plan.extravars


def test_local_runs_start_from_the_locked_config(locked_v1: Path, tmp_path: Path) -> None:
    command = local_launch(load_phases(), "1", tmp_path, "r1", []).command
    assert command[command.index("--config") + 1] == str(locked_v1)
    other = local_launch(load_phases(), "2a", tmp_path, "r2", []).command
    assert other[other.index("--config") + 1].endswith("ddp/configs/phase2a.yaml")


def test_a_broken_pointer_is_an_error_not_a_silent_fallback(folder: Path, tmp_path: Path) -> None:
    folder.mkdir()
    (folder / "phase1.current").write_text("phase1-v7.yaml\n")
    with pytest.raises(ToolingError, match=r"names phase1-v7\.yaml, which does not exist"):
        production.current("1", PHASE1)
    (folder / "phase1-v7.yaml").write_text("base: ../elsewhere.yaml\n")
    with pytest.raises(ToolingError, match="base: expected the phase's config"):
        production.current("1", PHASE1)
