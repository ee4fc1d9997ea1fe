"""The ddp_trainer role's job-state helper (templates/ddp-job-state.j2), rendered by Ansible from the role's
defaults and run as the unit runs it: what it writes for node_exporter's textfile collector at a start, a
failed or a planned end, and that the TrainerRankDown rule reads every series it writes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.local_playbook import ROOT, run_local_playbook

ROLE = ROOT / "roles" / "ddp_trainer"
RULES = ROOT / "roles" / "prometheus" / "files" / "rules" / "ddp_trainer.alerts.yml"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("job-state")
    script, state = tmp_path / "ddp-job-state", tmp_path / "textfile" / "ddp-trainer.prom"
    render = {
        "name": "Render the helper",
        "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "ddp-job-state.j2"),
            "dest": str(script),
            "mode": "0755",
        },
        "vars": {
            "ddp_trainer_service_name": DEFAULTS["ddp_trainer_service_name"],
            "ddp_trainer_start_grace_s": DEFAULTS["ddp_trainer_start_grace_s"],
            "_ddp_trainer_job_state_file": str(state),
        },
    }
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": [render]}]
    result = run_local_playbook(tmp_path, play)
    assert result.returncode == 0, f"rendering failed:\n{result.stdout}\n{result.stderr}"
    return script, state


def _run(
    helper: tuple[Path, Path], *args: str, result: str | None = None
) -> dict[str, tuple[dict[str, str], float]]:
    script, state = helper
    env = {"PATH": "/usr/bin:/bin", **({"SERVICE_RESULT": result} if result else {})}
    done = subprocess.run(["sh", str(script), *args], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    families = text_string_to_metric_families(state.read_text())
    return {s.name: (s.labels, s.value) for family in families for s in family.samples}


def test_a_start_expects_the_ranks_and_gives_them_the_start_grace(helper: tuple[Path, Path]) -> None:
    before = time.time()
    written = _run(helper, "start")
    labels, expected = written["ddp_trainer_job_expected"]
    assert (labels["result"], expected) == ("running", 1.0)
    assert before - 1 <= written["ddp_trainer_job_state_timestamp_seconds"][1] <= time.time() + 1
    assert written["ddp_trainer_start_grace_seconds"][1] == DEFAULTS["ddp_trainer_start_grace_s"]


@pytest.mark.parametrize(("result", "expected"), [("success", 0.0), ("exit-code", 1.0), ("timeout", 1.0)])
def test_an_end_expects_the_ranks_only_after_a_failure(
    helper: tuple[Path, Path], result: str, expected: float
) -> None:
    labels, value = _run(helper, "stop", result=result)["ddp_trainer_job_expected"]
    assert (labels["result"], value) == (result, expected)


def test_init_keeps_a_recorded_state(helper: tuple[Path, Path]) -> None:
    _run(helper, "start")
    assert _run(helper, "init")["ddp_trainer_job_expected"][0]["result"] == "running"
    helper[1].unlink()
    assert _run(helper, "init")["ddp_trainer_job_expected"] == (
        {"unit": DEFAULTS["ddp_trainer_service_name"], "result": "none"},
        0.0,
    )


def test_the_rank_down_rule_reads_every_series_the_helper_writes(helper: tuple[Path, Path]) -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    expr = next(r["expr"] for r in rules if r.get("alert") == "TrainerRankDown")
    unread = [name for name in _run(helper, "start") if f"{name}{{" not in expr]
    assert not unread, f"{RULES.name}: TrainerRankDown does not read {unread}"
