"""`tooling gate` takes uptime (and restarts) from the phase's soak record, with source "soak"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.fixtures.gates.recorded import FIXTURES
from tests.unit.test_soak_uptime import KILL_LINE, sample
from tooling.cli import app
from tooling.soak import record as records
from tooling.soak.state import SoakState
from tooling.soak.uptime import analyse

runner = CliRunner()


def make_soak(
    root: Path,
    soak_id: str,
    *,
    phase: str = "1",
    world: int = 4,
    status: str = "completed",
    written_at: float = 1000.0,
    stall: bool = False,
) -> dict[str, Any]:
    # Rank 1 is killed after step 300; the group resumes below it (250) and passes 300 again (or not).
    samples = [sample(10 * i, s, world=world) for i, s in enumerate([0, 100, 200, 300])]
    samples.append(sample(40, 250, world=world, restart=1, events=(KILL_LINE,), pid_base=5000))
    samples.append(sample(50, 280 if stall else 400, world=world, restart=1, pid_base=5000))
    state = SoakState(soak_id, phase, "cluster", world, 4, 50.0, 10.0, 256, watch_start=0.0, end_at=50.0)
    state.samples = samples
    analysis = analyse(samples, world, 256, 10.0, planned_end=50.0)
    record = records.build_record(state, analysis, status, now=written_at)
    records.write_record(root, record)
    return record


def gate(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    run = tmp_path / "runs" / "phase1"
    run.mkdir(parents=True, exist_ok=True)
    (run / "summary.json").write_text((FIXTURES / "phase1_4rank_cpu.json").read_text())
    result = runner.invoke(
        app,
        ["gate", "--phase", "1", "--run", str(run), "--decisions", str(tmp_path / "decisions"), "--json",
         "--soak-dir", str(tmp_path / "soak"), *args],
    )  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.output[result.output.index("{") :])


def rows(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["criterion"]: r for r in record["criteria"]}


def test_without_a_soak_uptime_has_no_data_and_says_how_to_get_it(tmp_path: Path) -> None:
    _, record = gate(tmp_path)
    uptime = rows(record)["uptime"]
    assert uptime["verdict"] == "NO DATA" and uptime["source"] == "summary"
    assert "tooling soak --phase P" in uptime["note"]


def test_latest_soak_of_the_phase_gives_uptime_and_restarts(tmp_path: Path) -> None:
    soak = tmp_path / "soak"
    make_soak(soak, "older", written_at=1000.0)
    make_soak(soak, "newest", written_at=3000.0, stall=True)
    make_soak(soak, "other-phase", phase="2a", written_at=9000.0)
    _, record = gate(tmp_path)
    uptime = rows(record)["uptime"]
    # newest: the interval of the restart went back (250 after 300), the next one stayed below 300.
    assert uptime["source"] == "soak"
    assert uptime["measured"] == pytest.approx(0.6)
    assert uptime["verdict"] == "FAIL"
    assert "soak newest" in uptime["note"] and "1 restart(s)" in uptime["note"]
    assert "killed by SIGKILL" in uptime["note"]
    restarts = record["measurements"]["restarts"]
    assert restarts["value"] == 1 and restarts["source"] == "soak"
    md = Path(record["record_files"][1]).read_text()
    assert f"soak record: {soak / 'newest' / 'soak.json'} (completed)" in md

    _, chosen = gate(tmp_path, "--soak", "older")
    assert rows(chosen)["uptime"]["measured"] == pytest.approx(0.8)
    assert "soak older" in rows(chosen)["uptime"]["note"]


def test_a_soak_that_is_not_evidence_gives_no_data_with_the_reason(tmp_path: Path) -> None:
    soak = tmp_path / "soak"
    make_soak(soak, "cut", status="interrupted")
    uptime = rows(gate(tmp_path)[1])["uptime"]
    assert uptime["verdict"] == "NO DATA" and uptime["source"] == "soak"
    assert "is interrupted" in uptime["note"] and "tooling soak --resume cut" in uptime["note"]

    make_soak(soak, "small", world=2, written_at=5000.0)
    uptime = rows(gate(tmp_path)[1])["uptime"]
    assert uptime["verdict"] == "NO DATA" and "ran 2 processes; phase 1 has 4" in uptime["note"]


def test_given_uptime_still_wins_over_the_soak(tmp_path: Path) -> None:
    make_soak(tmp_path / "soak", "s")
    uptime = rows(gate(tmp_path, "--measured", "uptime=99.99%")[1])["uptime"]
    assert uptime["source"] == "given"


def test_a_wrong_soak_is_a_usage_error(tmp_path: Path) -> None:
    soak = tmp_path / "soak"
    make_soak(soak, "phase2a-soak", phase="2a")
    base = ["gate", "--phase", "1", "--decisions", str(tmp_path / "d"), "--soak-dir", str(soak)]
    run = tmp_path / "runs" / "phase1"
    run.mkdir(parents=True)
    (run / "summary.json").write_text((FIXTURES / "phase1_4rank_cpu.json").read_text())
    wrong = runner.invoke(app, [*base, "--run", str(run), "--soak", "phase2a-soak"])
    assert wrong.exit_code == 2 and "is a soak of phase 2a, not phase 1" in " ".join(wrong.output.split())
    absent = runner.invoke(app, [*base, "--run", str(run), "--soak", "nope"])
    assert absent.exit_code == 2 and "no soak record 'nope'" in " ".join(absent.output.split())
