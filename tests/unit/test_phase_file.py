"""The light read of the plan that help screens use (tooling.plan.phase_file.phase_names) names the same
phases, in the same order, as the validated plan, and says which key is wrong where it cannot read them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ddp.config_errors import ConfigError
from tooling.plan.phase_file import DEFAULT_PHASES_FILE, PHASES_FILE_ENV, phase_names, plan_file
from tooling.plan.phases import load_phases


def _site(tmp_path: Path, edit: dict[str, object]) -> Path:
    data = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    data["phases"].update(edit)
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(data, sort_keys=False))
    return site


def test_the_project_plan_names_its_phases_in_roll_out_order() -> None:
    assert phase_names() == [name for name, _ in load_phases().ordered()]
    assert phase_names()[0] == "1"  # the smallest phase first, whatever the file's order


def test_a_site_file_is_read_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A phase written first in the file but larger than the others comes last, as in the validated plan.
    data = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    phases = data["phases"]
    data["phases"] = {"2c": phases.pop("2c"), **phases, "0": {**phases["1"], "group": "phase0"}}
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv(PHASES_FILE_ENV, str(site))
    assert plan_file() == site
    assert phase_names() == ["0", "1", "2a", "2b", "2c"]
    assert phase_names() == [name for name, _ in load_phases().ordered()]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"2a": {"nodes": "two"}}, "phases.2a.nodes: expected a whole number of nodes"),
        ({"2a": {"nodes": True}}, "phases.2a.nodes: expected a whole number of nodes"),
        ({"2a": "phase2a"}, "phases.2a.nodes: expected a whole number of nodes"),
    ],
)
def test_a_phase_without_a_node_count_names_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: dict[str, object], problem: str
) -> None:
    site = _site(tmp_path, edit)
    monkeypatch.setenv(PHASES_FILE_ENV, str(site))
    with pytest.raises(ConfigError) as caught:
        phase_names()
    assert caught.value.source == str(site)
    assert caught.value.problems == [problem]


def test_a_file_without_phases_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site.yml"
    site.write_text("rendezvous: {}\n")
    monkeypatch.setenv(PHASES_FILE_ENV, str(site))
    with pytest.raises(ConfigError, match="phases: expected a mapping of phase names to phases"):
        phase_names()
