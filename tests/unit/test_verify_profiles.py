"""Verification profiles: the built-ins load, and a bad file names the file, the key and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ddp.config_errors import ConfigError
from tooling.verify.profiles import PROFILES_DIR, Band, VersionRule, load_profile


def test_builtin_profiles_load_with_the_plan_values() -> None:
    prod = load_profile("production")
    assert prod.cpu_cores == Band(min=16, warn_above=32)
    assert prod.memory_gb.min == 256
    assert prod.openmpi == VersionRule(min="4.1")
    assert prod.cuda == VersionRule(min="12.1")
    assert prod.torch == VersionRule(exact="2.13.0")
    assert prod.inter_node_gbps.warn_below == 400
    assert prod.gloo_required and prod.nccl_required_on_cuda
    sandbox = load_profile("sandbox")
    assert sandbox.cpu_cores.min is not None and sandbox.cpu_cores.min <= 2
    assert sandbox.torch == prod.torch


def test_profile_by_path(tmp_path: Path) -> None:
    copy = tmp_path / "mine.yml"
    copy.write_text((PROFILES_DIR / "sandbox.yml").read_text())
    assert load_profile(copy) == load_profile("sandbox")


def _write(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((PROFILES_DIR / "production.yml").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"cpu_cores": {"min": 32, "warn_below": 16}}, "cpu_cores: min (32) must not exceed warn_below (16)"),
        ({"memory_gb": {"minimum": 256}}, "memory_gb.minimum: unknown key"),
        ({"memory_gb": {"min": "lots"}}, "memory_gb.min: expected a valid number"),
        ({"openmpi": {"min": "four"}}, "openmpi.min: expected a version like 4.1 or 2.13.0 (got 'four')"),
        ({"torch": {"exact": "2.13.0", "min": "2.0"}}, "torch: exact pins one version"),
        ({"cuda": None}, "cuda: required key is missing"),
        ({"numa_nodes": {}}, "numa_nodes: give at least one of min"),
    ],
)
def test_bad_profile_names_file_key_and_expectation(tmp_path: Path, changes: dict, expected: str) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert info.value.source == str(path)
    assert any(problem.startswith(expected) for problem in info.value.problems), info.value.problems


def test_missing_and_unknown_profiles(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_profile(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match="one of: production, sandbox"):
        load_profile("staging")
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="file is empty"):
        load_profile(empty)


def test_band_describe() -> None:
    assert Band(min=16, warn_above=32).describe("cores") == ">= 16 cores (target <= 32)"
    assert Band(min=1, max=4).describe() == "1-4"
    assert VersionRule(exact="2.13.0").describe() == "== 2.13.0"
