"""What `tooling deploy` works out before anything runs, and how it reads the ranks' status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ddp.config_errors import ConfigError
from tooling import deploy as deploy_module
from tooling import deployment, jobstatus
from tooling.console import ToolingError
from tooling.deploy import DeployRequest, build_plan
from tooling.phases import load_phases
from tooling.remote import SshTarget


def inventory(groups: dict[str, list[str]]) -> dict[str, Any]:
    data: dict[str, Any] = {name: {"hosts": hosts} for name, hosts in groups.items()}
    hosts = sorted({h for members in groups.values() for h in members})
    data["_meta"] = {"hostvars": {h: {"ansible_host": f"192.0.2.{i + 1}"} for i, h in enumerate(hosts)}}
    return data


NESTED = inventory({"phase1": ["node1"], "phase2a": ["node1", "node2"], "nodes": ["node1", "node2"]})


@pytest.fixture
def fake_inventory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(deploy_module, "load_inventory", lambda _path: NESTED)
    return tmp_path


def test_plan_for_phase_2a(fake_inventory: Path) -> None:
    request = DeployRequest(
        phase="2a", inventory=fake_inventory, overrides=["training.max_steps=50"], run_id="r1"
    )
    plan = build_plan(request, load_phases())
    assert (plan.group, plan.hosts, plan.world_size, plan.run_id) == ("phase2a", ["node1", "node2"], 8, "r1")
    assert plan.extravars["ddp_trainer_phase"] == "2a"
    assert plan.extravars["ddp_trainer_launch_overrides"] == ["training.max_steps=50"]
    assert "ddp_trainer_config_overrides" not in plan.extravars


def test_default_run_id_names_the_group(fake_inventory: Path) -> None:
    plan = build_plan(DeployRequest(phase="1", inventory=fake_inventory), load_phases())
    assert plan.run_id.startswith("phase1-")


def test_config_file_is_laid_over_the_phase_config(fake_inventory: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "site.yaml"
    overlay.write_text("workload: {kind: digits}\ntraining: {batch_size: 8}\n")
    plan = build_plan(DeployRequest(phase="1", inventory=fake_inventory, config=overlay), load_phases())
    assert plan.extravars["ddp_trainer_config_overrides"] == {
        "workload": {"kind": "digits"},
        "training": {"batch_size": 8},
    }


@pytest.mark.parametrize(
    ("request_changes", "error", "match"),
    [
        ({"phase": "9"}, ConfigError, "unknown phase '9'"),
        ({"phase": "2b"}, ToolingError, "has no group 'phase2b'"),
        ({"phase": "1", "overrides": ["training.batch_size=x"]}, ConfigError, "training.batch_size"),
    ],
)
def test_bad_requests_fail_before_anything_runs(
    fake_inventory: Path, request_changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build_plan(DeployRequest(inventory=fake_inventory, **request_changes), load_phases())


def test_group_with_the_wrong_node_count_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(deploy_module, "load_inventory", lambda _path: inventory({"phase2a": ["node1"]}))
    with pytest.raises(ToolingError, match=r"phase 2a needs 2 node\(s\) in group 'phase2a'.*has 1: node1"):
        build_plan(DeployRequest(phase="2a", inventory=tmp_path), load_phases())


def test_status_output_parsing_and_job_state() -> None:
    rank = {"rank": 1, "state": "running", "step": 5}
    text = f"1700000000.5\n{jobstatus.SEPARATOR}\n{json.dumps(rank)}\n{jobstatus.SEPARATOR}\n{{half\n"
    report = jobstatus.parse_status_output("node2", text)
    assert report.node_time == 1700000000.5 and report.ranks == [rank]
    full = [jobstatus.NodeReport("n1", [{"state": "completed"}] * 2, 0.0)]
    assert jobstatus.job_state(full, 2) == "completed"
    assert jobstatus.job_state(full, 4) == "starting"
    assert jobstatus.job_state([*full, jobstatus.NodeReport("n2", [], None, "timed out")], 2) == "partial"
    mixed = [jobstatus.NodeReport("n1", [{"state": "stopped"}, {"state": "completed"}], 0.0)]
    assert jobstatus.job_state(mixed, 2) == "stopped"


def test_ssh_target_follows_the_inventory_connection_settings() -> None:
    target = SshTarget.from_hostvars(
        "node1",
        {
            "ansible_host": "10.0.0.5",
            "ansible_port": 2222,
            "ansible_user": "ops",
            "ansible_ssh_private_key_file": "/keys/id",
            "ansible_ssh_common_args": "-o UserKnownHostsFile=/keys/known_hosts -o StrictHostKeyChecking=yes",
        },
    )
    assert (target.address, target.port, target.user, target.key_file) == (
        "10.0.0.5",
        2222,
        "ops",
        "/keys/id",
    )
    assert (target.known_hosts, target.strict_host_keys) == ("/keys/known_hosts", True)
    relaxed = SshTarget.from_hostvars("n", {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"})
    assert relaxed.strict_host_keys is False and relaxed.address == "n"


def test_deployment_record_round_trip(tmp_path: Path) -> None:
    record = deployment.Deployment(
        "2a", "phase2a", "r1", str(tmp_path / "inv"), ["node1", "node2"], "/runs", 8
    )
    deployment.save(record, tmp_path)
    assert deployment.load(tmp_path / "inv", tmp_path) == record
    assert record.run_dir == "/runs/r1"
    with pytest.raises(ToolingError, match="no deployment recorded"):
        deployment.load(tmp_path / "other", tmp_path)
