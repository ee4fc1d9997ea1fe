"""The state root: every command finds the same state from any working directory, nothing is written into
the source tree, ansible-runner artifacts are rotated, old ./runs state is pointed out once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ddp.config_errors import ConfigError
from tests.unit.fixtures.gates.recorded import FIXTURES
from tests.unit.panel_text import flat
from tooling import home
from tooling.cli import app
from tooling.plan.phases import load_phases

ROOT = Path(__file__).resolve().parents[2]
# Not source: tools' caches and the virtual environment change whenever anything runs.
UNTRACKED_NOISE = {
    ".venv",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
    ".ansible",
}
runner = CliRunner()


def _recorded_run(directory: Path) -> Path:
    """A finished phase-1 run (summary.json) in `directory`, as a local rehearsal leaves it."""
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text((FIXTURES / "phase1_4rank_cpu.json").read_text())
    return directory


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root (size, mtime), tool caches and the venv left out."""
    found: dict[str, tuple[int, int]] = {}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in UNTRACKED_NOISE and not d.endswith(".egg-info")]
        for name in files:
            path = Path(directory, name)
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


def test_root_comes_from_tooling_home_then_xdg_then_the_home_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(home.HOME_ENV, str(tmp_path / "mine"))
    assert home.root() == tmp_path / "mine"
    assert home.decisions() == tmp_path / "mine" / "decisions"
    monkeypatch.delenv(home.HOME_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert home.root() == tmp_path / "xdg" / "ddp-toolkit"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # invalid per the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert home.root() == tmp_path / "user" / ".local" / "state" / "ddp-toolkit"


def test_phases_from_another_directory_sees_the_decision_recorded_earlier(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    # No --run: the gate finds the newest phase-1 run under the state root's runs/.
    _recorded_run(home.runs() / "phase1")
    gate = runner.invoke(app, ["gate", "--phase", "1", "--json"])
    assert gate.exit_code == 1, gate.output  # NO-GO, and the decision is kept
    record_files = json.loads(gate.stdout)["record_files"]
    assert all(Path(f).parent == home.decisions() for f in record_files)
    # A separate process in another working directory, as an operator's next shell would be.
    shown = subprocess.run(
        [sys.executable, "-m", "tooling.cli", "phases", "--json"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    phase1 = next(row for row in json.loads(shown.stdout) if row["phase"] == "1")
    assert phase1["decision"] == "NO-GO" and phase1["record"] == record_files[0]
    assert not (here / "runs").exists() and not (elsewhere / "runs").exists()


def test_commands_leave_the_source_tree_as_it_was(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from the checkout itself, where the old defaults (./runs/...) wrote state into the tree."""
    monkeypatch.chdir(ROOT)
    run = _recorded_run(tmp_path / "run")
    before = _tree(ROOT)
    gate = runner.invoke(app, ["gate", "--phase", "1", "--run", str(run)])
    assert gate.exit_code == 1, gate.output
    report = runner.invoke(app, ["report", "--phase", "1", "--run", str(run)])
    assert report.exit_code == 0, report.output
    assert runner.invoke(app, ["phases"]).exit_code == 0
    status = runner.invoke(app, ["status", "--inventory", str(ROOT / "inventory" / "production")])
    assert status.exit_code == 2 and "no deployment recorded" in flat(status.output)
    after = _tree(ROOT)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert changed == [], f"commands wrote into the source tree: {changed[:20]}"
    assert len(list(home.reports().glob("phase1-*/*.md"))) == 1
    assert len(list(home.decisions().glob("phase1-*.json"))) == 1


def test_status_names_the_state_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--home", str(tmp_path / "state"), "status", "--inventory", str(tmp_path)])
    assert f"state root: {tmp_path / 'state'}" in flat(result.output)
    assert result.exit_code == 2  # no deployment recorded there


def test_artifact_rotation_keeps_the_newest_and_only_touches_artifact_dirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    names = [f"2026010{d}T12000{s}.000000Z-deploy" for d in range(1, 6) for s in range(5)]  # 25, in age order
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / "notes").mkdir()  # not an artifact dir: never counted, never removed
    monkeypatch.setenv(home.KEEP_ARTIFACTS_ENV, "10")
    removed = home.rotate_artifacts(tmp_path)
    assert [p.name for p in removed] == names[:16]
    # With the run about to be made, ten remain: the newest nine kept here.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names[16:], "notes"])
    monkeypatch.setenv(home.KEEP_ARTIFACTS_ENV, "0")
    with pytest.raises(ConfigError, match="TOOLING_KEEP_ARTIFACTS: '0': expected a whole number"):
        home.rotate_artifacts(tmp_path)


def test_old_runs_state_is_pointed_out_once_and_left_in_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = tmp_path / "runs" / "decisions"
    old.mkdir(parents=True)
    (old / "phase1-20260101T000000Z.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["phases"])
    assert first.exit_code == 0, first.output
    assert f"{tmp_path / 'runs'} holds state from before the state root" in flat(first.output)
    again = runner.invoke(app, ["phases"])
    assert "holds state from before" not in flat(again.output)
    assert (old / "phase1-20260101T000000Z.json").exists()


def test_phase_options_list_the_plans_phases_in_help() -> None:
    names = "[" + "|".join(name for name, _ in load_phases().ordered()) + "]"
    for command in ("deploy", "gate", "check", "soak", "sweep", "report", "verify-node", "rehearse"):
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert names in result.output, (command, result.output)
        assert "1, 2a, 2b or 2c" not in result.output
