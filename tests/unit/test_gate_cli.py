"""`tooling gate` and `tooling phases` end to end on recorded runs: exit codes, records, the critical path."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.unit.fixtures.gates.recorded import FIXTURES
from tests.unit.panel_text import flat, squeezed
from tests.unit.tls_prometheus import PASSWORD, USER, make_pki, serve
from tooling.cli import app

runner = CliRunner()
WAIVE_HOST_LIMITS = {
    "gate_criteria": {
        "all": {
            name: {"waive": "sandbox rehearsal: no node_exporter, no soak"}
            for name in ("packet_loss", "thermal_throttling", "uptime")
        }
        | {"stragglers": {"waive": "recorded before the trainer measured its ranks' compute"}},
        "1": {
            "throughput_sigma": {"target": "< 2000", "minimum": "< 3000"},
            "comm_overhead": {"target": "<= 80%", "minimum": "<= 90%"},
        },
    }
}


def _run_dir(tmp_path: Path, fixture: str) -> Path:
    run = tmp_path / "runs" / fixture
    run.mkdir(parents=True)
    (run / "summary.json").write_text((FIXTURES / f"{fixture}.json").read_text())
    return run


def _gate(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["gate", "--decisions", str(tmp_path / "decisions"), *args])
    return result.exit_code, result.output


def test_no_go_exits_1_and_keeps_the_decision(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, "phase1_4rank_cpu")
    code, out = _gate(tmp_path, "--phase", "1", "--run", str(run))
    assert code == 1, out
    assert "NO-GO" in out and "NO DATA" in out and "SKIP" in out
    records = list((tmp_path / "decisions").glob("phase1-*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["decision"] == "NO-GO"
    assert record["run"]["run_id"] == "phase1" and record["run"]["world_size"] == 4
    assert record["window"]["start"] < record["window"]["end"]
    assert record["sources"]["summary"] == str(run / "summary.json")
    rows = {r["criterion"]: r for r in record["criteria"]}
    assert rows["throughput"]["target"] == {"op": ">=", "value": 270.0}
    assert rows["throughput"]["source"] == "summary"
    markdown = records[0].with_suffix(".md").read_text()
    assert "# Phase 1 gate: NO-GO" in markdown and "| throughput |" in markdown


def test_go_with_site_criteria_then_phases_moves_on(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, "phase1_4rank_cpu")
    site = tmp_path / "gate_criteria.yml"
    site.write_text(yaml.safe_dump(WAIVE_HOST_LIMITS))
    code, out = _gate(tmp_path, "--phase", "1", "--run", str(run), "--criteria", str(site), "--json")
    assert code == 0, out
    record = json.loads(out)
    assert record["decision"] == "GO"
    assert set(record["waivers"]) == {"packet_loss", "thermal_throttling", "uptime", "stragglers"}
    assert record["sources"]["criteria_file"] == str(site)

    result = runner.invoke(app, ["phases", "--decisions", str(tmp_path / "decisions"), "--json"])
    assert result.exit_code == 0, result.output
    path = {row["phase"]: row for row in json.loads(result.output)}
    assert path["1"]["decision"] == "GO" and not path["1"]["next"]
    assert path["2a"]["decision"] is None and path["2a"]["next"]
    table = runner.invoke(app, ["phases", "--decisions", str(tmp_path / "decisions")])
    assert "next: phase 2a" in table.output and "not run" in table.output

    # Phase 2a's efficiency is measured against phase 1's decision of record.
    run2 = _run_dir(tmp_path, "phase2a_2x4_cpu")
    code, out = _gate(tmp_path, "--phase", "2a", "--run", str(run2), "--json")
    assert code == 1
    record2 = json.loads(out)
    assert record2["scaling"]["baseline"]["throughput"] == record["measurements"]["throughput"]["value"]
    assert record2["scaling"]["baseline"]["source"].startswith("decision record ")
    assert 0 < record2["scaling"]["efficiency"] < 1


def test_bad_criteria_file_is_a_usage_error(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, "phase1_4rank_cpu")
    site = tmp_path / "site.yml"
    site.write_text("gate_criteria:\n  '1':\n    throughput: {target: fast, minimum: 250}\n")
    code, out = _gate(tmp_path, "--phase", "1", "--run", str(run), "--criteria", str(site))
    assert code == 2
    # The panel may break the long temporary path anywhere, so compare without any whitespace.
    dense = "".join(flat(out).split())
    assert "site.yml" in dense and "gate_criteria.1.throughput.target" in dense
    assert "expectedacomparisonlike'>=250'" in dense
    assert not (tmp_path / "decisions").exists()


def test_unknown_phase_and_missing_run_are_usage_errors(tmp_path: Path) -> None:
    code, out = _gate(tmp_path, "--phase", "3")
    assert code == 2 and "unknown phase '3'" in out
    code, out = _gate(tmp_path, "--phase", "1", "--run", str(tmp_path / "nowhere"))
    assert code == 2 and "no run summary here" in flat(out)


def test_default_run_is_the_newest_of_the_phase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run_dir(tmp_path, "phase1_4rank_cpu").rename(tmp_path / "runs" / "rehearsal-phase1-20260101-000000")
    code, out = _gate(tmp_path, "--phase", "1", "--runs-dir", str(tmp_path / "runs"), "--json")
    assert code == 1
    assert "rehearsal-phase1-20260101-000000" in json.loads(out)["sources"]["summary"]


def test_unreachable_prometheus_falls_back_to_the_summary(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    run = _run_dir(tmp_path, "phase1_4rank_cpu")
    code, out = _gate(tmp_path, "--phase", "1", "--run", str(run), "--prometheus", url, "--json")
    assert code == 1
    record = json.loads(out[out.index("{") :])
    assert url in record["sources"]["prometheus_error"]
    assert "cannot be reached" in record["sources"]["prometheus_error"]
    assert {r["source"] for r in record["criteria"]} <= {"summary", "previous phase"}


def test_measured_elsewhere(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, "phase1_4rank_cpu")
    code, out = _gate(tmp_path, "--phase", "1", "--run", str(run), "--measured", "uptime=99.95%", "--json")
    rows = {r["criterion"]: r for r in json.loads(out)["criteria"]}
    assert rows["uptime"]["measured"] == pytest.approx(0.9995) and rows["uptime"]["source"] == "given"
    code, out = _gate(tmp_path, "--phase", "1", "--run", str(run), "--measured", "uptim=1")
    assert code == 2 and "expected NAME=VALUE" in out


def test_prometheus_behind_basic_auth_and_tls(tmp_path: Path) -> None:
    """The Prometheus options reach the queries; a refused password stops the gate (exit 2) instead of a
    decision from other evidence, and the password is in no output and no record."""
    pki = make_pki(tmp_path / "pki")
    run = _run_dir(tmp_path, "phase1_4rank_cpu")
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(PASSWORD + "\n")
    wrong.write_text("guess\n")
    with serve(pki) as url:
        args = ["--phase", "1", "--run", str(run), "--prometheus", url, "--prometheus-user", USER]
        trusted = [*args, "--prometheus-ca", str(pki.ca)]
        decisions = ["--decisions", str(tmp_path / "decisions")]
        ok = runner.invoke(
            app, ["gate", *decisions, *trusted, "--json", "--prometheus-password-file", str(right)]
        )
        refused = _gate(tmp_path, *trusted, "--prometheus-password-file", str(wrong))
        untrusted = _gate(tmp_path, *args, "--prometheus-password-file", str(right))
    assert ok.exit_code in (0, 1), ok.output
    sources = json.loads(ok.stdout)["sources"]
    assert sources["prometheus_url"] == url and sources["prometheus_error"] is None
    assert sources["prometheus_figures"], "no figure came from Prometheus"
    assert refused[0] == 2
    assert squeezed(f"user '{USER}' and the password in {wrong} were refused") in squeezed(refused[1])
    assert untrusted[0] == 2 and "--prometheus-ca" in flat(untrusted[1])
    records = list((tmp_path / "decisions").iterdir())
    assert len(records) == 2, "only the run that got in keeps a decision (.json and .md)"
    for text in [ok.output, refused[1], untrusted[1], *(r.read_text() for r in records)]:
        assert PASSWORD not in text


def test_prometheus_password_never_goes_over_plain_http_unasked(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, "phase1_4rank_cpu")
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD)
    run_args = ["--phase", "1", "--run", str(run)]
    auth = ["--prometheus-user", USER, "--prometheus-password-file", str(secret)]
    code, out = _gate(tmp_path, *run_args, *auth, "--prometheus", "http://127.0.0.1:9")
    assert code == 2 and "refusing to send the password of user" in flat(out)
    assert "--allow-insecure-http" in flat(out)
    code, out = _gate(tmp_path, *run_args, "--prometheus-user", USER)
    assert code == 2 and "go together" in flat(out)
    assert not (tmp_path / "decisions").exists()
