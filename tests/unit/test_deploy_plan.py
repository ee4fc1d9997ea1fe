"""What `tooling deploy` works out before anything runs (the phase's launch, derived by tooling/plan/launch.py
as the roles derive it), what it records from the launch playbook's published stats, and how it reads the
ranks' status."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from ddp.config_errors import ConfigError
from tooling.console import CheckFailed, ToolingError
from tooling.job import deploy as deploy_module
from tooling.job import records, status
from tooling.job.deploy import DeployRequest, build_plan
from tooling.plan.launch import (
    DEFAULT_RUN_ROOT,
    LaunchError,
    ansible_groups,
    derive_launch,
    host_port,
    run_root,
)
from tooling.plan.phases import load_phases
from tooling.remote import SshTarget
from tooling.runner import RunResult

ROOT = Path(__file__).resolve().parents[2]


def inventory(groups: dict[str, list[str]]) -> dict[str, Any]:
    data: dict[str, Any] = {name: {"hosts": hosts} for name, hosts in groups.items()}
    hosts = sorted({h for members in groups.values() for h in members})
    # Not documentation addresses (192.0.2.0/24): deploy refuses those as the example inventory's.
    data["_meta"] = {"hostvars": {h: {"ansible_host": f"172.16.0.{i + 1}"} for i, h in enumerate(hosts)}}
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
    text = f"1700000000.5\n{status.SEPARATOR}\n{json.dumps(rank)}\n{status.SEPARATOR}\n{{half\n"
    report = status.parse_status_output("node2", text)
    assert report.node_time == 1700000000.5 and report.ranks == [rank]
    full = [status.NodeReport("n1", [{"state": "completed"}] * 2, 0.0)]
    assert status.job_state(full, 2) == "completed"
    assert status.job_state(full, 4) == "starting"
    assert status.job_state([*full, status.NodeReport("n2", [], None, "timed out")], 2) == "partial"
    mixed = [status.NodeReport("n1", [{"state": "stopped"}, {"state": "completed"}], 0.0)]
    assert status.job_state(mixed, 2) == "stopped"


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
    record = records.Deployment("2a", "phase2a", "r1", str(tmp_path / "inv"), ["node1", "node2"], "/runs", 8)
    records.save(record, tmp_path)
    assert records.load(tmp_path / "inv", tmp_path) == record
    assert record.run_dir == "/runs/r1"
    with pytest.raises(ToolingError, match="no deployment recorded"):
        records.load(tmp_path / "other", tmp_path)


# --- the launch, derived once (tooling/plan/launch.py) and read back from what launch.yml published ---


def test_launch_follows_the_nodes_group_order_and_prefers_the_node_address() -> None:
    plan = load_phases()
    groups = {
        "nodes": ["node1", "node2", "node3"],
        "phase2b": ["node3", "node2", "node1"],
        "phase1": ["node1"],
    }
    hostvars = {
        "node1": {"ansible_host": "127.0.0.1", "ddp_trainer_node_address": "10.0.0.1"},
        "node2": {"ansible_host": "192.0.2.2", "ddp_trainer_run_root": "/scratch/runs"},
        "node3": {"ddp_trainer_node_address": "fd00::3"},
    }
    launch = derive_launch(plan, groups, hostvars, phase="2b")
    spec, base = plan.get("2b"), plan.metrics.base_port
    # The nested group lists its newest node first; the roll-out order is the nodes group's.
    assert launch.hosts == ["node1", "node2", "node3"]
    assert launch.rdzv_endpoint == f"10.0.0.1:{plan.rendezvous.port}"
    assert launch.nnodes == f"{spec.min_nodes}:{spec.nodes}" and launch.world_size == 12
    assert launch.addresses == {"node1": "10.0.0.1", "node2": "192.0.2.2", "node3": "fd00::3"}
    # What Prometheus scrapes: the node address (ddp_trainer_node_address), not ansible_host.
    assert launch.metrics_endpoints[0] == f"http://10.0.0.1:{base}/metrics"
    assert launch.metrics_endpoints[-1] == f"http://[fd00::3]:{base + spec.nproc_per_node - 1}/metrics"
    assert launch.run_root == DEFAULT_RUN_ROOT
    moved = derive_launch(plan, groups, hostvars, phase="2b", rendezvous_host="node2")
    assert (moved.rdzv_host, moved.rdzv_endpoint) == ("node2", f"192.0.2.2:{plan.rendezvous.port}")


def test_an_ipv6_rendezvous_endpoint_is_bracketed() -> None:
    plan = load_phases()
    groups = {"nodes": ["gpu-a", "gpu-b"], "phase2a": ["gpu-a", "gpu-b"]}
    hostvars = {"gpu-a": {"ansible_host": "2001:db8::1"}, "gpu-b": {"ansible_host": "[2001:db8::2]"}}
    launch = derive_launch(plan, groups, hostvars, phase="2a")
    port = plan.rendezvous.port
    assert launch.rdzv_endpoint == f"[2001:db8::1]:{port}"
    moved = derive_launch(plan, groups, hostvars, phase="2a", rendezvous_host="gpu-b")
    # An address the inventory already brackets is not bracketed twice.
    assert moved.rdzv_endpoint == f"[2001:db8::2]:{port}"
    assert host_port("192.0.2.7", port) == f"192.0.2.7:{port}"
    assert host_port("gpu-a.example.org", port) == f"gpu-a.example.org:{port}"


def test_run_root_default_is_the_trainer_roles() -> None:
    defaults = yaml.safe_load((ROOT / "roles" / "ddp_trainer" / "defaults" / "main.yml").read_text())
    assert defaults["ddp_trainer_run_root"] == DEFAULT_RUN_ROOT
    assert run_root(None) == run_root("") == DEFAULT_RUN_ROOT
    assert run_root("/scratch/runs") == "/scratch/runs"


@pytest.mark.parametrize(
    ("groups", "kwargs", "message"),
    [
        ({"phase1": ["node1"]}, {"phase": "9"}, "phase '9' is not in the plan; expected one of: 1, 2a"),
        ({"phase1": ["node1"]}, {"phase": "2a"}, "the inventory has no group 'phase2a' for phase 2a"),
        (
            {"phase2a": ["node1"]},
            {"phase": "2a"},
            r"phase 2a needs 2 node\(s\) in group 'phase2a'.* has 1: node1",
        ),
        (
            {"phase1": ["node1"], "phase2a": ["node1", "node2"]},
            {"play_hosts": ["node1", "node3"]},
            "Cannot tell which phase to deploy: the play's hosts node1, node3 are not exactly",
        ),
        (
            {"phase2a": ["node1", "node2"]},
            {"phase": "2a", "play_hosts": ["node1"]},
            "every node of group 'phase2a' must be in the play; missing: node2",
        ),
        (
            {"phase2a": ["node1", "node2"]},
            {"phase": "2a", "rendezvous_host": "node3"},
            "ddp_trainer_rendezvous_host 'node3' is not a node of phase 2a",
        ),
    ],
)
def test_launch_refusals_name_the_group_and_hosts(
    groups: dict[str, list[str]], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(LaunchError, match=message):
        derive_launch(load_phases(), groups, {}, **kwargs)


def test_a_loopback_rendezvous_is_refused_for_several_nodes() -> None:
    groups = {"nodes": ["node1", "node2"], "phase1": ["node1"], "phase2a": ["node1", "node2"]}
    hostvars = {"node1": {"ansible_host": "127.0.0.1"}, "node2": {"ansible_host": "127.0.0.1"}}
    with pytest.raises(LaunchError, match="loopback address the other nodes cannot reach"):
        derive_launch(load_phases(), groups, hostvars, phase="2a")
    # One node alone may rendezvous on itself.
    assert derive_launch(load_phases(), groups, hostvars, phase="1").rdzv_endpoint.startswith("127.0.0.1:")


def test_groups_from_the_inventory_list_in_ansibles_order() -> None:
    listed = {
        "all": {"children": ["nodes", "phase2b"]},
        "nodes": {"hosts": ["node1", "node2", "node3"]},
        "phase2b": {"hosts": ["node3"], "children": ["phase2a"]},
        "phase2a": {"hosts": ["node2"], "children": ["phase1"]},
        "phase1": {"hosts": ["node1"]},
        "_meta": {"hostvars": {}},
    }
    groups = ansible_groups(listed)
    assert groups["phase2b"] == ["node3", "node2", "node1"]
    assert groups["all"] == ["node1", "node2", "node3"]
    assert "_meta" not in groups


PUBLISHED = {
    "run_id": "r1",
    "phase": "2a",
    "group": "phase2a",
    "hosts": ["node1", "node2"],
    "world_size": 8,
    "rendezvous_endpoint": "10.0.0.1:29400",
    "metrics_endpoints": ["http://10.0.0.1:9500/metrics", "http://10.0.0.2:9500/metrics"],
    "run_root": "/scratch/runs",
}


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch, fake_inventory: Path) -> dict[str, Any]:
    """deploy() with Ansible and the nodes faked: the playbooks it ran and the wait it asked for."""
    seen: dict[str, Any] = {"playbooks": []}

    def run_playbook(playbook: str, **kwargs: Any) -> RunResult:
        seen["playbooks"].append((playbook, kwargs["extravars"]))
        stats = {"ddp_launch": seen.get("published", PUBLISHED)} if playbook.endswith("launch.yml") else {}
        return RunResult(0, "successful", "ok", fake_inventory, fake_inventory, custom_stats=stats)

    def wait_for_ranks(record: records.Deployment, _inv: Any, timeout_s: float, started: float) -> None:
        seen["wait"] = (record.hosts, record.run_dir, timeout_s)

    monkeypatch.setattr(deploy_module, "run_playbook", run_playbook)
    monkeypatch.setattr(deploy_module, "wait_for_ranks", wait_for_ranks)
    return seen


def _deploy(inventory: Path, wait_s: float = 600) -> records.Deployment:
    request = DeployRequest(
        phase="2a", inventory=inventory, run_id="r1", provision=False, verify=False, wait_s=wait_s
    )
    return deploy_module.deploy(request, load_phases())


def test_deploy_records_what_the_launch_published(launched: dict[str, Any], fake_inventory: Path) -> None:
    record = _deploy(fake_inventory, wait_s=600)
    # --wait reaches the role's own wait, for every playbook of the deploy.
    assert [book for book, _ in launched["playbooks"]] == ["playbooks/trainer.yml", "playbooks/launch.yml"]
    assert all(extra["ddp_trainer_launch_wait_s"] == 600 for _, extra in launched["playbooks"])
    assert launched["wait"] == (["node1", "node2"], "/scratch/runs/r1", 600)
    # Hosts, run root and endpoints as the role published them, not the inventory's ansible_host.
    assert record.metrics_endpoints == PUBLISHED["metrics_endpoints"]
    assert (record.rendezvous_endpoint, record.run_dir, record.world_size) == (
        "10.0.0.1:29400",
        "/scratch/runs/r1",
        8,
    )
    assert records.load(fake_inventory) == record


def test_deploy_on_configured_nodes_runs_launch_alone(launched: dict[str, Any], fake_inventory: Path) -> None:
    request = DeployRequest(phase="2a", inventory=fake_inventory, run_id="r1", provision=False, verify=False)
    deploy_module.deploy(replace(request, configure=False), load_phases())
    assert [book for book, _ in launched["playbooks"]] == ["playbooks/launch.yml"]
    assert records.load(fake_inventory).run_id == "r1"


@pytest.mark.parametrize(
    ("provision", "configure", "expected"),
    [
        (True, True, [("site.yml", "phase2a:monitoring")]),
        # Provisioning configures anyway: the flag is about what a re-launch adds.
        (True, False, [("site.yml", "phase2a:monitoring")]),
        (False, True, [("playbooks/trainer.yml", "phase2a"), ("playbooks/targets.yml", "phase2a")]),
        (False, False, []),
    ],
)
def test_preparation_steps(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    provision: bool,
    configure: bool,
    expected: list[tuple[str, str]],
) -> None:
    monitored = inventory({"phase1": ["node1"], "phase2a": ["node1", "node2"], "monitoring": ["mon1"]})
    monkeypatch.setattr(deploy_module, "load_inventory", lambda _path: monitored)
    request = DeployRequest(phase="2a", inventory=tmp_path, provision=provision, configure=configure)
    steps = deploy_module.preparation_steps(request, build_plan(request, load_phases()))
    assert [(step.playbook, step.limit) for step in steps] == expected


def test_deploy_without_the_published_run_fails_naming_it(
    launched: dict[str, Any], fake_inventory: Path
) -> None:
    launched["published"] = {"run_id": "r1"}
    with pytest.raises(CheckFailed, match=r"without publishing the run it started .*ddp_launch: KeyError"):
        _deploy(fake_inventory)
    with pytest.raises(ToolingError, match="no deployment recorded"):
        records.load(fake_inventory)
