"""`tooling gate` records only what it may: a run of the phase's size that ran to its end or to the
operator's planned stop. Runs of another size are refused (exit 2, naming the phase they match); an
interrupted, failed or unfinished run is judged and shown but not recorded (exit 2) unless
--allow-incomplete; --no-record judges without writing anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.fixtures.gates.recorded import FIXTURES, recorded
from tests.unit.panel_text import flat
from tooling.cli import app
from tooling.gates.eligibility import completeness
from tooling.plan.phases import load_phases

runner = CliRunner()


def _run(tmp_path: Path, fixture: str, name: str | None = None) -> Path:
    run = tmp_path / "runs" / (name or fixture)
    run.mkdir(parents=True)
    (run / "summary.json").write_text((FIXTURES / f"{fixture}.json").read_text())
    return run


def _gate(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["gate", "--decisions", str(tmp_path / "decisions"), *args])
    return result.exit_code, result.stdout, result.stderr


def _written(tmp_path: Path) -> list[str]:
    decisions = tmp_path / "decisions"
    return sorted(p.name for p in decisions.iterdir()) if decisions.exists() else []


# --- the run's size ------------------------------------------------------------------------------------


def test_a_phase1_run_gated_as_phase2a_is_refused_naming_phase1(tmp_path: Path) -> None:
    run = _run(tmp_path, "phase1_4rank_cpu")
    code, out, err = _gate(tmp_path, "--phase", "2a", "--run", str(run))
    assert code == 2, out + err
    message = flat(out + err)
    assert "ran 1 node(s) x 4 = 4 processes; phase 2a is 2 node(s) x 4 = 8 processes" in message
    assert "It matches phase 1." in message and "--phase 1" in message
    assert "NO-GO" not in message and _written(tmp_path) == []


def test_a_run_of_no_phases_size_is_refused_listing_the_sizes(tmp_path: Path) -> None:
    # Eight processes on one host: a local rehearsal of 2a's world size, but not 2a's two nodes.
    run = _run(tmp_path, "phase2a_8rank_cpu")
    code, out, err = _gate(tmp_path, "--phase", "2a", "--run", str(run), "--allow-incomplete")
    assert code == 2
    message = flat(out + err)
    assert "ran 1 node(s) x 8 = 8 processes; phase 2a is 2 node(s) x 4 = 8 processes" in message
    assert "It matches no phase of the plan (1: 1 node(s) x 4 = 4 processes, 2a: 2 node(s)" in message
    assert _written(tmp_path) == []


def test_a_two_node_run_is_judged_for_2a(tmp_path: Path) -> None:
    run = _run(tmp_path, "phase2a_2x4_cpu")
    code, out, _ = _gate(tmp_path, "--phase", "2a", "--run", str(run), "--json")
    assert code == 1, out  # CPU throughput misses 2a's targets: judged, NO-GO
    record = json.loads(out)
    assert (record["run"]["nodes"], record["run"]["world_size"]) == (2, 8)
    assert record["completeness"] == {"complete": True, "why": "completed at step 200 of 200"}
    assert len(record["record_files"]) == 2 and len(_written(tmp_path)) == 2


def test_shapes_come_from_the_plan() -> None:
    plan = load_phases()
    assert plan.shaped(1, 4) == ["1"] and plan.shaped(3, 12) == ["2b"] and plan.shaped(1, 8) == []


# --- whether the run ran to its end --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "complete", "why"),
    [
        ("phase1_4rank_cpu", True, "completed at step 200 of 200"),
        # `tooling stop` on two nodes whose STOP file reached node 2 first: still the planned stop.
        ("phase2a_2x4_stopped_cpu", True, "stopped as planned at step"),
        ("phase1_4rank_interrupted_cpu", False, "interrupted at step"),
    ],
)
def test_completeness_of_real_runs(fixture: str, complete: bool, why: str) -> None:
    judged = completeness(recorded(fixture))
    assert judged.complete is complete and judged.why.startswith(why), judged


@pytest.mark.parametrize(
    ("status", "reason", "complete", "why"),
    [
        ("stopped", "stop requested (stop file /var/lib/ddp/runs/r/STOP)", True, "stopped as planned"),
        ("stopped", "stop requested (signal SIGTERM)", False, "interrupted"),
        ("stopped", "stop requested (signal on another rank)", False, "interrupted"),
        ("stopped", "stop requested (by another rank)", False, "stopped at step 120 of 200 without"),
        ("failed", "non-finite loss at step 2", False, "failed at step 120 of 200: non-finite loss"),
        ("running", None, False, "still running, or killed before its end"),
        ("paused", None, False, "unknown status 'paused'"),
    ],
)
def test_completeness_rule(status: str, reason: str | None, complete: bool, why: str) -> None:
    summary: dict[str, Any] = {**recorded("phase1_4rank_cpu"), "status": status, "reason": reason}
    summary["steps"] = 120
    judged = completeness(summary)
    assert judged.complete is complete and judged.why.startswith(why), judged


def test_an_interrupted_run_is_shown_but_not_recorded(tmp_path: Path) -> None:
    run = _run(tmp_path, "phase1_4rank_interrupted_cpu")
    code, out, err = _gate(tmp_path, "--phase", "1", "--run", str(run))
    assert code == 2, out + err
    assert "NO-GO" in out and "decision record: none written" in out  # the judgement is still shown
    message = flat(err)
    assert "run phase1-interrupted is incomplete: interrupted at step 140 of 100000" in message
    assert "signal SIGINT" in message
    assert "--allow-incomplete" in message
    assert _written(tmp_path) == []


def test_an_interrupted_run_is_recorded_as_such_when_allowed(tmp_path: Path) -> None:
    run = _run(tmp_path, "phase1_4rank_interrupted_cpu")
    code, out, _ = _gate(tmp_path, "--phase", "1", "--run", str(run), "--allow-incomplete", "--json")
    assert code == 1, out
    record = json.loads(out)
    assert record["completeness"]["complete"] is False
    assert "signal SIGINT" in record["completeness"]["why"]
    json_file, md_file = (Path(p) for p in record["record_files"])
    assert json.loads(json_file.read_text())["completeness"] == record["completeness"]
    assert "**incomplete run, recorded with --allow-incomplete**" in md_file.read_text()
    # The critical path says so wherever it shows that decision.
    decisions = ["--decisions", str(tmp_path / "decisions")]
    rows = json.loads(runner.invoke(app, ["phases", *decisions, "--json"]).stdout)
    assert [(r["phase"], r["decision"], r["complete"]) for r in rows[:2]] == [
        ("1", "NO-GO", False),
        ("2a", None, None),
    ]
    table = runner.invoke(app, ["phases", *decisions]).stdout
    assert "(incomplete" in table, table


def test_a_planned_stop_on_another_node_is_recorded(tmp_path: Path) -> None:
    run = _run(tmp_path, "phase2a_2x4_stopped_cpu")
    code, out, _ = _gate(tmp_path, "--phase", "2a", "--run", str(run), "--json")
    assert code == 1, out
    record = json.loads(out)
    assert record["completeness"]["complete"] is True
    assert "stop file on another rank" in record["completeness"]["why"]
    assert len(_written(tmp_path)) == 2


# --- --no-record ---------------------------------------------------------------------------------------


def test_no_record_judges_and_writes_nothing(tmp_path: Path) -> None:
    run = _run(tmp_path, "phase1_4rank_cpu")
    code, out, _ = _gate(tmp_path, "--phase", "1", "--run", str(run), "--no-record")
    assert code == 1 and "NO-GO" in out and "decision record: none written" in out
    code, out, _ = _gate(tmp_path, "--phase", "1", "--run", str(run), "--no-record", "--json")
    assert code == 1 and json.loads(out)["record_files"] == []
    assert not (tmp_path / "decisions").exists()
    # An incomplete run stays refused (exit 2) with --no-record: the flag only says what is written.
    interrupted = _run(tmp_path, "phase1_4rank_interrupted_cpu")
    code, _, err = _gate(tmp_path, "--phase", "1", "--run", str(interrupted), "--no-record")
    assert code == 2 and "is incomplete" in flat(err)
    assert not (tmp_path / "decisions").exists()


def test_help_states_the_rule() -> None:
    shown = flat(runner.invoke(app, ["gate", "--help"]).output)
    assert "--allow-incomplete" in shown and "--no-record" in shown
    assert "stopped by the STOP file" in shown and "stopped by a signal" in shown
