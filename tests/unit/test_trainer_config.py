"""The trainer's config schema: every bad input names the file, the key and what was expected."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ddp.config import ConfigError, apply_overrides, load_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "ddp" / "configs").glob("*.yaml"))
MINIMAL = {"workload": {"kind": "digits"}}


def write(tmp_path: Path, data: object, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.workload.kind == "synthetic"
    assert cfg.checkpoint.enabled


def test_phase_config_inherits_base_and_overrides_name() -> None:
    cfg = load_config(ROOT / "ddp/configs/phase2b.yaml")
    base = load_config(ROOT / "ddp/configs/production_4process_config.yaml")
    assert cfg.run.name == "phase2b"
    assert cfg.model_dump(exclude={"run"}) == base.model_dump(exclude={"run"})


BAD_CASES = [
    ({"workload": {"kind": "digits"}, "trainig": {}}, "trainig: unknown key"),
    ({"workload": {"kind": "digits", "hiden_dim": 3}}, "workload.hiden_dim: unknown key"),
    (
        {"workload": {"kind": "digits"}, "training": {"batch_size": "big"}},
        "training.batch_size: expected a valid integer",
    ),
    (
        {"workload": {"kind": "digits"}, "training": {"batch_size": 0}},
        "training.batch_size: expected greater than 0",
    ),
    (
        {"workload": {"kind": "digits"}, "training": {"nonfinite_policy": "ignore"}},
        "training.nonfinite_policy: expected 'stop' or 'skip'",
    ),
    (
        {"workload": {"kind": "resnet"}},
        "workload: kind: expected one of 'synthetic', 'digits', 'import' (got 'resnet')",
    ),
    ({"workload": {"hidden_dim": 3}}, "workload: kind: required key is missing"),
    ({}, "workload: required key is missing"),
    (
        {"workload": {"kind": "import", "model": "nocolon", "dataset": "a.b:c"}},
        "workload.model: expected an import path like package.module:factory",
    ),
    (
        {"workload": {"kind": "digits"}, "metrics": {"base_port": 70000}},
        "metrics.base_port: expected less than or equal to 65535",
    ),
    (
        {"workload": {"kind": "digits"}, "ddp": {"static_graph": "maybe"}},
        "ddp.static_graph: expected a valid boolean",
    ),
    (
        {"workload": {"kind": "digits"}, "checkpoint": {"every_steps": None, "every_minutes": None}},
        "needs every_steps or every_minutes",
    ),
    (
        {"workload": {"kind": "digits"}, "distributed": {"backend": "mpi"}},
        "distributed.backend: expected 'auto', 'gloo' or 'nccl'",
    ),
    ({"workload": {"kind": "digits"}, "optimizer": {"lr": -1}}, "optimizer.lr: expected greater than 0"),
    *(
        (
            {"workload": {"kind": "digits"}, "metrics": {"bind_address": wildcard}},
            f"metrics.bind_address: a wildcard address listens on every interface of the node; expected the "
            f"node's cluster address, or null for the address its hostname resolves to (got {wildcard!r})",
        )
        for wildcard in ("0.0.0.0", "::", "[::]", "0")
    ),
]


@pytest.mark.parametrize(("data", "expected"), BAD_CASES, ids=[c[1][:40] for c in BAD_CASES])
def test_bad_config_names_file_key_and_expectation(tmp_path: Path, data: dict, expected: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "file is empty"),
        ("- a\n- b\n", "expected a mapping at the top level, got list"),
        ("workload: {kind: digits\n", "invalid YAML"),
    ],
)
def test_unparseable_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_missing_file_and_missing_base(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    child = write(tmp_path, {"base": "parent.yaml"}, "child.yaml")
    with pytest.raises(ConfigError, match=r"parent\.yaml: file not found"):
        load_config(child)


def test_circular_base_is_reported(tmp_path: Path) -> None:
    write(tmp_path, {"base": "b.yaml"}, "a.yaml")
    write(tmp_path, {"base": "a.yaml"}, "b.yaml")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, "ok.yaml")
    cfg = load_config(path, ["training.max_steps=7", "ddp.fp16_compression=true", "run.name=x1"])
    assert (cfg.training.max_steps, cfg.ddp.fp16_compression, cfg.run.name) == (7, True, "x1")
    with pytest.raises(ConfigError, match=r"training\.max_steps: expected a valid integer"):
        load_config(path, ["training.max_steps=lots"])
    with pytest.raises(ConfigError, match=r"expected KEY\.PATH=VALUE"):
        load_config(path, ["training.max_steps"])


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.7", "::1", "node1.cluster.local"])
def test_concrete_metrics_addresses_are_accepted(address: str) -> None:
    assert validate_config({**MINIMAL, "metrics": {"bind_address": address}}).metrics.bind_address == address


def test_valid_minimal_config_has_defaults() -> None:
    cfg = validate_config(MINIMAL)
    assert cfg.metrics.base_port == 9500
    assert cfg.checkpoint.writers == "every_node"


def test_cli_rejects_bad_config_without_traceback_or_launch(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "workload": {"kind": "digits"},
            "training": {"batch_size": "x"},
            "run": {"output_dir": str(tmp_path / "runs")},
        },
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ddp.real_ddp_trainer", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"{path}: training.batch_size: expected a valid integer" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists(), "nothing may be launched or written from an invalid config"


@pytest.mark.parametrize(
    "items",
    [
        ["metrics.bind_address=10.0.0.7"],
        ["metrics.bind_address=10.0.0.7", "metrics.base_port=9600", "run.name=0123"],
        ["training.schedule.kind=cosine", "new.section.key=1"],
    ],
)
def test_shared_overrides_give_the_same_result_and_leave_the_data_alone(items: list[str]) -> None:
    """share=True copies only the sections an item writes into (the plan lays each of a thousand nodes'
    items over one config): the result is the deep copy's, and the data it was laid over is unchanged."""
    data = {"run": {"name": "r"}, "metrics": {"base_port": 9500}, "training": {"schedule": {"warmup": 5}}}
    before = copy.deepcopy(data)
    shared = apply_overrides(data, items, "--set", share=True)
    assert shared == apply_overrides(data, items, "--set")
    assert data == before
    untouched = [key for key in data if not any(item.startswith(f"{key}.") for item in items)]
    assert untouched and all(shared[key] is data[key] for key in untouched)
