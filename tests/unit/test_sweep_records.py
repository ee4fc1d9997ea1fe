"""A sweep persists as it goes: one complete line per finished trial, a torn line never spoils the file,
and `--resume` runs only the trials that have no record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.sweep_fakes import FakeTrials, install_fake, summary, use_production_dir
from tooling.cli import app
from tooling.sweep.grid import parse_grid
from tooling.sweep.records import SweepPlan, SweepStore, TrialRecord, latest_sweep

runner = CliRunner()
GRID = ["--grid", "batch_size=16,32", "--grid", "lr=0.01,0.1"]


def _plan(sweep_id: str = "s1", phase: str = "1", created_at: float = 1.0) -> SweepPlan:
    axes = parse_grid(["lr=0.01,0.1"])
    return SweepPlan(
        sweep_id,
        phase,
        axes,
        [{"optimizer.lr": 0.01}, {"optimizer.lr": 0.1}],
        20,
        [],
        "local",
        None,
        0.0,
        None,
        created_at=created_at,
    )


def _record(number: int) -> TrialRecord:
    return TrialRecord(
        number, {"optimizer.lr": number / 10}, f"s1-t{number:02d}", "ok", throughput=10.0 * number
    )


def test_plan_round_trips_and_a_torn_line_is_dropped(tmp_path: Path) -> None:
    store = SweepStore(tmp_path, "s1")
    store.create(_plan())
    assert store.load_plan() == _plan()
    store.append(_record(1))
    store.append(_record(2))
    with store.trials_path.open("ab") as handle:  # a crash in the middle of the third line
        handle.write(b'{"trial": 3, "combin')
    assert [r.trial for r in store.trials()] == [1, 2]
    store.append(_record(3))
    lines = store.trials_path.read_text().splitlines()
    assert [json.loads(line)["trial"] for line in lines] == [1, 2, 3]
    assert store.trials()[2] == _record(3)


def test_an_existing_sweep_is_never_restarted_over(tmp_path: Path) -> None:
    store = SweepStore(tmp_path, "s1")
    store.create(_plan())
    with pytest.raises(Exception, match="already exists"):
        SweepStore(tmp_path, "s1").create(_plan())


def test_latest_sweep_of_a_phase(tmp_path: Path) -> None:
    SweepStore(tmp_path, "old").create(_plan("old", created_at=1.0))
    SweepStore(tmp_path, "new").create(_plan("new", created_at=2.0))
    SweepStore(tmp_path, "other").create(_plan("other", phase="2a", created_at=3.0))
    assert latest_sweep(tmp_path, "1") == "new"
    assert latest_sweep(tmp_path, "2a") == "other"
    assert latest_sweep(tmp_path, "2c") is None


def test_interrupted_sweep_keeps_finished_trials_and_resume_runs_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_production_dir(monkeypatch, tmp_path)
    sweeps = tmp_path / "sweeps"
    fake = install_fake(
        monkeypatch,
        FakeTrials({frozenset({"training.batch_size=32", "optimizer.lr=0.01"}): KeyboardInterrupt()}),
    )
    args = ["sweep", "--phase", "1", "--local", "--sweeps-dir", str(sweeps)]
    result = runner.invoke(app, [*args, "--id", "s1", *GRID, "--steps", "20"])
    assert result.exit_code == 130, result.output
    assert "--resume s1" in result.output
    store = SweepStore(sweeps, "s1")
    assert [r.trial for r in store.trials()] == [1, 2]
    assert not (store.dir / "sweep.json").exists()
    assert [s.trial for s in fake.ran] == [1, 2, 3]

    # A resumed sweep keeps its own grid: another one is a mistake, refused before anything runs.
    changed = runner.invoke(app, ["sweep", "--resume", "s1", "--sweeps-dir", str(sweeps), "--grid", "lr=1"])
    assert changed.exit_code == 2, changed.output
    assert "was started with --grid" in changed.output

    fake.outcomes.clear()
    fake.ran.clear()
    fake.default = summary(throughput=50.0)
    result = runner.invoke(app, ["sweep", "--resume", "s1", "--sweeps-dir", str(sweeps)])
    assert result.exit_code == 0, result.output
    assert "2 of 4 trials already recorded" in result.output
    assert [s.trial for s in fake.ran] == [3, 4]
    assert fake.ran[0].run_id == "s1-t03"
    assert {"training.batch_size=32", "optimizer.lr=0.01", "training.max_steps=20"} <= set(
        fake.ran[0].overrides
    )
    assert [r.trial for r in store.trials()] == [1, 2, 3, 4]
    done = json.loads((store.dir / "sweep.json").read_text())
    assert len(done["trials"]) == 4 and done["best"] in (1, 2)


def test_resume_refuses_when_the_production_config_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    production = use_production_dir(monkeypatch, tmp_path)
    sweeps = tmp_path / "sweeps"
    fake = install_fake(monkeypatch, FakeTrials({frozenset({"optimizer.lr=0.1"}): KeyboardInterrupt()}))
    result = runner.invoke(
        app,
        [
            "sweep",
            "--phase",
            "1",
            "--local",
            "--sweeps-dir",
            str(sweeps),
            "--id",
            "s1",
            "--grid",
            "lr=0.01,0.1",
        ],
    )
    assert result.exit_code == 130
    production.mkdir()
    phase1 = Path(__file__).resolve().parents[2] / "ddp" / "configs" / "phase1.yaml"
    (production / "phase1-v1.yaml").write_text(f"base: {phase1}\ntraining: {{batch_size: 8}}\n")
    (production / "phase1.current").write_text("phase1-v1.yaml\n")
    fake.ran.clear()
    result = runner.invoke(app, ["sweep", "--resume", "s1", "--sweeps-dir", str(sweeps)])
    assert result.exit_code == 2, result.output
    assert "the phase now starts from phase1-v1.yaml" in " ".join(result.output.replace("│", " ").split())
    assert fake.ran == []
