"""`--grid` parsing, short names, combinations, and validation before anything runs (exit 2, nothing
launched, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ddp.config import load_config
from tests.unit.panel_text import flat
from tests.unit.sweep_fakes import FakeTrials, install_fake, use_production_dir
from tooling.cli import app
from tooling.console import ToolingError
from tooling.sweep.grid import (
    SHORT_NAMES,
    as_overrides,
    check_sets,
    describe,
    parse_grid,
    raw_combinations,
    validate,
)

PHASE1 = Path(__file__).resolve().parents[2] / "ddp" / "configs" / "phase1.yaml"
runner = CliRunner()


def test_short_names_are_real_config_keys() -> None:
    config = load_config(PHASE1)
    for key in SHORT_NAMES.values():
        section, leaf = key.split(".")
        assert hasattr(getattr(config, section), leaf), key
    assert SHORT_NAMES == {
        "batch_size": "training.batch_size",
        "grad_accum": "ddp.grad_accum_steps",
        "lr": "optimizer.lr",
        "bucket_cap_mb": "ddp.bucket_cap_mb",
    }


def test_parse_short_and_dotted_names_and_the_combinations() -> None:
    axes = parse_grid(["batch_size=16,32", "lr=0.01, 0.1", "ddp.static_graph=true,false"])
    assert [(a.name, a.key, a.values) for a in axes] == [
        ("batch_size", "training.batch_size", ("16", "32")),
        ("lr", "optimizer.lr", ("0.01", "0.1")),
        ("ddp.static_graph", "ddp.static_graph", ("true", "false")),
    ]
    combos = raw_combinations(axes)
    assert len(combos) == 8
    # First axis slowest: trial numbers follow the order the operator wrote.
    assert combos[0] == {"training.batch_size": "16", "optimizer.lr": "0.01", "ddp.static_graph": "true"}
    assert combos[1]["ddp.static_graph"] == "false"
    assert combos[-1] == {"training.batch_size": "32", "optimizer.lr": "0.1", "ddp.static_graph": "false"}
    assert as_overrides(combos[0]) == [
        "training.batch_size=16",
        "optimizer.lr=0.01",
        "ddp.static_graph=true",
    ]
    assert describe(combos[0], axes) == "batch_size=16 lr=0.01 ddp.static_graph=true"


def test_validate_returns_values_as_the_trainer_reads_them() -> None:
    axes = parse_grid(["grad_accum=1,2", "lr=1e-2", "bucket_cap_mb=10"])
    combos = validate(axes, PHASE1, ["training.max_steps=5"])
    assert combos == [
        {"ddp.grad_accum_steps": 1, "optimizer.lr": 0.01, "ddp.bucket_cap_mb": 10.0},
        {"ddp.grad_accum_steps": 2, "optimizer.lr": 0.01, "ddp.bucket_cap_mb": 10.0},
    ]
    assert isinstance(combos[0]["optimizer.lr"], float)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["lr"], r"--grid lr: expected NAME=V1,V2"),
        (["=1,2"], r"expected NAME=V1,V2"),
        (["speed=1,2"], r"--grid speed=1,2: unknown name 'speed'"),
        (["lr=0.1,,0.2"], r"--grid lr=0.1,,0.2: optimizer.lr: expected a comma-separated list"),
        (["lr=0.1,0.1"], r"optimizer.lr: value\(s\) listed twice: 0.1"),
        (["training.max_steps=5,10"], r"training.max_steps cannot be swept: use --steps"),
        (["batch_size=8", "training.batch_size=16"], r"--grid training.batch_size=16: .*already swept"),
        ([], r"at least one --grid"),
    ],
)
def test_malformed_grids_are_refused(args: list[str], match: str) -> None:
    with pytest.raises(ToolingError, match=match) as caught:
        parse_grid(args)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            ["batch_size=16,0"],
            r"--grid batch_size=16,0: training.batch_size=0: training.batch_size: .*greater",
        ),
        (["lr=0.1,fast"], r"--grid lr=0.1,fast: optimizer.lr=fast: optimizer.lr: expected a valid number"),
        (["training.bogus=1,2"], r"--grid training.bogus=1,2: training.bogus=1: training.bogus: unknown key"),
        (["optimizer.name=sgd,lion"], r"--grid optimizer.name=sgd,lion: optimizer.name=lion"),
    ],
)
def test_bad_values_name_the_grid_argument_and_key(args: list[str], match: str) -> None:
    with pytest.raises(ToolingError, match=match):
        validate(parse_grid(args), PHASE1, [])


def test_bad_combination_names_every_argument() -> None:
    # Each value is fine alone; together they break the checkpoint section's own rule.
    axes = parse_grid(["checkpoint.every_steps=null", "checkpoint.every_minutes=null"])
    with pytest.raises(ToolingError, match=r"--grid checkpoint.every_steps=null --grid .*is invalid"):
        validate(axes, PHASE1, [])


def test_sets_are_checked_too() -> None:
    with pytest.raises(ToolingError, match=r"--set: training.batch_size"):
        validate(parse_grid(["lr=0.1"]), PHASE1, ["training.batch_size=-1"])
    with pytest.raises(ToolingError, match=r"--set run.name=x: run.name is set by the sweep"):
        check_sets(["run.name=x"])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--grid", "lr=0.01,x"], ["--grid lr=0.01,x", "optimizer.lr=x"]),
        (["--grid", "batch_size=16", "--grid", "bogus=1"], ["--grid bogus=1", "unknown name 'bogus'"]),
        (["--grid", "lr=0.1", "--set", "training.batch_size=x"], ["--set", "training.batch_size"]),
        (["--grid", "lr=0.1", "--set", "training.max_steps=9"], ["use --steps"]),
        (["--grid", "lr=0.1", "--trial", "2"], ["--trial"]),
    ],
)
def test_cli_usage_errors_exit_2_launch_nothing_and_write_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], words: list[str]
) -> None:
    use_production_dir(monkeypatch, tmp_path)
    fake = install_fake(monkeypatch, FakeTrials())
    sweeps = tmp_path / "sweeps"
    result = runner.invoke(
        app, ["sweep", "--phase", "1", "--local", "--sweeps-dir", str(sweeps), "--id", "s1", *args]
    )
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in flat(result.output)
    assert fake.modes == [] and fake.prepared == [] and fake.ran == []
    assert not sweeps.exists()


def test_cli_unknown_phase_and_bad_id_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_production_dir(monkeypatch, tmp_path)
    install_fake(monkeypatch, FakeTrials())
    sweeps = str(tmp_path / "sweeps")
    result = runner.invoke(
        app, ["sweep", "--phase", "9", "--local", "--grid", "lr=0.1", "--sweeps-dir", sweeps]
    )
    assert result.exit_code == 2 and "unknown phase '9'" in flat(result.output)
    result = runner.invoke(
        app, ["sweep", "--phase", "1", "--local", "--grid", "lr=0.1", "--sweeps-dir", sweeps, "--id", "../x"]
    )
    assert result.exit_code == 2 and "sweep id '../x'" in flat(result.output)
    assert not Path(sweeps).exists()
