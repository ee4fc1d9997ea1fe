"""The phase plan is the one source of truth; its mistakes are caught with the file and key named."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from ddp.config import load_config
from ddp.config_errors import ConfigError
from tooling.plan.phases import DEFAULT_PHASES_FILE, load_phases

ROOT = Path(__file__).resolve().parents[2]


def test_plan_matches_the_roll_out() -> None:
    plan = load_phases()
    sizes = {name: (p.nodes, p.nproc_per_node, p.world_size) for name, p in plan.phases.items()}
    assert sizes == {"1": (1, 4, 4), "2a": (2, 4, 8), "2b": (3, 4, 12), "2c": (4, 4, 16)}
    assert [name for name, _ in plan.ordered()] == ["1", "2a", "2b", "2c"]


def test_groups_nest() -> None:
    members = load_phases().group_members([f"node{i}" for i in range(1, 5)])
    assert members["phase1"] == ["node1"]
    assert members["phase2c"] == ["node1", "node2", "node3", "node4"]
    groups = list(members.values())
    assert all(set(a) < set(b) for a, b in itertools.pairwise(groups))


def test_every_phase_config_exists_and_validates() -> None:
    for phase in load_phases().phases.values():
        assert load_config(ROOT / phase.config).run.name.startswith("phase")


def test_unknown_phase_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown phase '3'; expected one of: 1, 2a, 2b, 2c"):
        load_phases().get("3")


def _variant(tmp_path: Path, edit: dict) -> Path:
    data = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    for phase, changes in edit.items():
        data["phases"][phase].update(changes)
    path = tmp_path / "phases.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"2a": {"nodes": "two"}}, "phases.2a.nodes: expected a valid integer"),
        ({"2a": {"min_nodes": 3}}, "min_nodes (3) must not exceed nodes (2)"),
        ({"2b": {"previous": "9"}}, "previous '9' is not a defined phase"),
        ({"2b": {"nodes": 1, "min_nodes": 1}}, "cannot be smaller than '2a'"),
        ({"1": {"colour": "red"}}, "phases.1.colour: unknown key"),
    ],
)
def test_bad_plans_are_rejected(tmp_path: Path, edit: dict, expected: str) -> None:
    path = _variant(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_phases(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)
