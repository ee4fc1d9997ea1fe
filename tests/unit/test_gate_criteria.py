"""The gate criteria in tooling/phases.yml and a site's overrides: the plan's numbers, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ddp.config_errors import ConfigError
from tooling.gates.site import effective_criteria, load_site
from tooling.plan.bounds import Bound, parse_bound
from tooling.plan.criteria import specs_of
from tooling.plan.phases import DEFAULT_PHASES_FILE, load_phases


def _bounds(phase: str) -> dict[str, tuple[str, float, str, float]]:
    return {
        name: (c.target.op, c.target.value, c.minimum.op, c.minimum.value)
        for name, c in effective_criteria(phase, load_phases().get(phase)).items()
    }


def test_phase1_has_the_plan_numbers() -> None:
    b = _bounds("1")
    assert b["throughput"] == (">=", 270, ">=", 250)
    assert b["throughput_sigma"] == ("<", 10, "<", 20)
    assert b["comm_overhead"] == ("<=", 0.10, "<=", 0.15)
    assert b["gpu_utilisation"] == (">", 0.85, ">", 0.75)
    assert b["memory_pressure"] == ("<", 0.85, "<", 0.90)
    assert b["grad_sync_accuracy"] == (">=", 0.9999, ">=", 0.999)
    assert b["packet_loss"] == ("==", 0, "<", 0.001)
    assert b["thermal_throttling"] == ("==", 0, "<", 2)
    assert b["uptime"] == (">=", 0.999, ">=", 0.999)
    assert b["world_size"] == ("==", 4, "==", 4)  # derived from nodes x nproc_per_node


@pytest.mark.parametrize(
    ("phase", "throughput", "efficiency", "uptime"),
    [("2a", 500, 1.05, 0.9995), ("2b", 800, 1.08, 0.999), ("2c", 1000, 1.10, 0.999)],
)
def test_later_phases_scale_and_keep_the_health_criteria(
    phase: str, throughput: float, efficiency: float, uptime: float
) -> None:
    b = _bounds(phase)
    assert b["throughput"][:2] == (">=", throughput)
    assert b["scaling_efficiency"][:2] == (">=", efficiency)
    assert b["uptime"][:2] == (">=", uptime)
    assert b["world_size"][1] == load_phases().get(phase).world_size
    for health in ("nonfinite_losses", "grad_sync_accuracy", "memory_pressure", "packet_loss"):
        assert b[health] == _bounds("1")[health]
    assert "throughput_sigma" not in b


def test_phase_specific_criteria() -> None:
    assert _bounds("2b")["efficiency_degradation"] == ("<", 0.05, "<", 0.05)
    assert _bounds("2c")["ranks_in_sync"] == ("==", 0, "==", 0)
    assert _bounds("2a")["comm_overhead"][:2] == ("<=", 0.15)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (">= 270", Bound(">=", 270)),
        ("<10", Bound("<", 10)),
        (">= 99.9%", Bound(">=", 0.999)),
        (5, Bound(">=", 5)),
    ],
)
def test_bounds_parse(raw: object, expected: Bound) -> None:
    assert parse_bound(raw, default_op=">=", percent_allowed=True) == expected


def _plan_variant(tmp_path: Path, phase: str, gate: dict) -> Path:
    data = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    data["phases"][phase]["gate"] = gate
    path = tmp_path / "phases.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        (
            {"throughput": {"target": "< 270", "minimum": 250}},
            "phases.1.gate.throughput.target: throughput: higher",
        ),
        ({"throughput": {"target": 240, "minimum": 250}}, "target >= 240 is looser than minimum >= 250"),
        ({"throughputt": {"target": 270, "minimum": 250}}, "phases.1.gate.throughputt: unknown key"),
        ({"throughput": {"target": "lots", "minimum": 250}}, "expected a comparison like '>= 250'"),
        ({"throughput": {"target": "270%", "minimum": 250}}, "a percentage is only meaningful for ratios"),
        ({"uptime": {"target": ">= 99.9%"}}, "phases.1.gate.uptime.minimum: required key is missing"),
    ],
)
def test_bad_gate_sections_name_file_and_key(tmp_path: Path, gate: dict, expected: str) -> None:
    path = _plan_variant(tmp_path, "1", gate)
    with pytest.raises(ConfigError) as info:
        load_phases(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def _site(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_site_changes_bounds_and_waives(tmp_path: Path) -> None:
    plan = load_phases()
    path = _site(
        tmp_path,
        {
            "gate_criteria": {
                "all": {"packet_loss": {"waive": "no node_exporter on this site"}},
                "1": {"throughput": {"target": ">= 120", "minimum": ">= 100"}},
            }
        },
    )
    criteria = effective_criteria("1", plan.get("1"), load_site(path, plan), path)
    assert criteria["throughput"].target == Bound(">=", 120)
    assert criteria["throughput"].changed_by == str(path)
    assert criteria["packet_loss"].waived == "no node_exporter on this site"
    later = effective_criteria("2a", plan.get("2a"), load_site(path, plan), path)
    assert later["throughput"].target == Bound(">=", 500)  # the phase-1 entry stays in phase 1
    assert later["packet_loss"].waived


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"gate_criteria": {"3": {}}}, "gate_criteria.3: unknown phase; expected one of: all, 1, 2a, 2b, 2c"),
        ({"gate_criteria": {"1": {"thruput": {"target": 1}}}}, "gate_criteria.1.thruput: unknown key"),
        (
            {"gate_criteria": {"1": {"throughput": {}}}},
            "gate_criteria.1.throughput: expected target, minimum or waive",
        ),
        (
            {"gate_criteria": {"1": {"throughput": {"target": 200}}}},
            "gate_criteria.1.throughput: target >= 200 is looser",
        ),
        ({"gate_criteria": {"1": {"uptime": {"waive": ""}}}}, "gate_criteria.1.uptime.waive"),
        ({"gate_criteria": {"1": {"world_size": {"target": 1, "minimum": 1}}}}, "expected only waive"),
        ({"gate_criteria": {"1": {"scaling_efficiency": {"target": 1}}}}, "expected both target and minimum"),
        ({"criteria": {}}, "criteria: unknown key"),
    ],
)
def test_bad_site_files_name_file_and_key(tmp_path: Path, body: dict, expected: str) -> None:
    plan = load_phases()
    path = _site(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        effective_criteria("1", plan.get("1"), load_site(path, plan), path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_every_phase_gate_is_consistent() -> None:
    for phase in load_phases().phases.values():
        for spec in specs_of(phase.gate).values():
            assert spec.target.at_least_as_strict_as(spec.minimum)


def test_the_shipped_example_site_file_loads() -> None:
    plan = load_phases()
    path = DEFAULT_PHASES_FILE.parent / "gates" / "site-criteria.example.yml"
    criteria = effective_criteria("1", plan.get("1"), load_site(path, plan), path)
    assert criteria["throughput"].minimum == Bound(">=", 100)
    assert criteria["thermal_throttling"].waived
