"""Quarantine: `tooling deploy --phase P --exclude NODE` runs P on the nodes left (the launch, the plays'
limit, the Prometheus targets, the pre-flight), continues P's recorded run from its newest checkpoint, keeps
the node out of every later deploy, shows it in `status` and `phases`, and lets it back only when
`verify-node` passes on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plugins.filter.ddp_launch import ddp_launch
from tests.unit.test_deploy_plan import inventory
from tests.unit.test_deploy_preview import options, run_plan, site_inventory
from tooling import home
from tooling.cli import app
from tooling.console import ToolingError
from tooling.findings import CLUSTER, Finding
from tooling.job import deploy as deploy_module
from tooling.job import exclude as exclude_module
from tooling.job import quarantine, records
from tooling.job.deploy import DeployRequest, build_plan, preparation_steps
from tooling.job.exclude import excluding_request
from tooling.plan.launch import LaunchError, ansible_groups, derive_launch
from tooling.plan.phases import load_phases
from tooling.runner import RunResult
from tooling.verify import run as verify_run

PLAN = load_phases()
NODES = ["node1", "node2", "node3"]
THREE = inventory(
    {
        "phase1": ["node1"],
        "phase2a": ["node1", "node2"],
        "phase2b": NODES,
        "nodes": NODES,
        "monitoring": ["mon"],
    }
)
GROUPS = ansible_groups(THREE)
HOSTVARS = THREE["_meta"]["hostvars"]


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An inventory path whose loading gives THREE (deploy and exclude read it through load_inventory)."""
    monkeypatch.setattr(deploy_module, "load_inventory", lambda _path: THREE)
    monkeypatch.setattr(exclude_module, "load_inventory", lambda _path: THREE)
    return tmp_path / "inventory"


def _record(site: Path, phase: str = "2b", hosts: list[str] = NODES) -> None:
    records.save(
        records.Deployment(
            phase=phase,
            group=f"phase{phase}",
            run_id=f"phase{phase}-20261201-120000",
            inventory=str(site.resolve()),
            hosts=hosts,
            run_root="/var/lib/ddp/runs",
            world_size=4 * len(hosts),
            overrides=["training.max_steps=400"],
        )
    )


def test_the_launch_of_the_nodes_left() -> None:
    launch = derive_launch(PLAN, GROUPS, HOSTVARS, phase="2b", exclude=["node2"])
    assert (launch.hosts, launch.excluded, launch.world_size) == (["node1", "node3"], ["node2"], 8)
    assert launch.nnodes == "2:2"
    assert [t.node for t in launch.metrics_targets] == ["node1"] * 4 + ["node3"] * 4
    assert launch.rdzv_host == "node1"


def test_an_excluded_rendezvous_host_hands_the_rendezvous_to_the_first_node_left() -> None:
    launch = derive_launch(PLAN, GROUPS, HOSTVARS, phase="2b", exclude=["node1"], rendezvous_host="node1")
    assert launch.rdzv_host == "node2"
    assert launch.rdzv_endpoint.startswith(HOSTVARS["node2"]["ansible_host"] + ":")


def test_the_play_may_leave_out_only_the_excluded_nodes() -> None:
    # What `ansible-playbook site.yml -l 'phase2b:!node3' -e '{"ddp_trainer_exclude": ["node3"]}'` derives.
    kept = derive_launch(PLAN, GROUPS, HOSTVARS, phase="2b", play_hosts=["node1", "node2"], exclude=["node3"])
    assert kept.hosts == ["node1", "node2"]
    with pytest.raises(LaunchError, match=r"missing: node3 \(check -l; a node left out on purpose"):
        derive_launch(PLAN, GROUPS, HOSTVARS, phase="2b", play_hosts=["node1", "node2"])


@pytest.mark.parametrize(
    ("exclude", "message"),
    [(["node9"], "cannot exclude node9: not a node of phase 2b"), (NODES, "every node is excluded")],
)
def test_exclusions_that_leave_no_launch_are_refused(exclude: list[str], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        derive_launch(PLAN, GROUPS, HOSTVARS, phase="2b", exclude=exclude)


def test_the_roles_filter_takes_the_exclusion() -> None:
    derived = ddp_launch(
        str(Path(deploy_module.PROJECT_ROOT) / "tooling" / "phases.yml"),
        hostvars=HOSTVARS,
        groups=GROUPS,
        phase="2b",
        exclude=["node3"],
    )
    assert (derived["hosts"], derived["excluded"], derived["world_size"]) == (
        ["node1", "node2"],
        ["node3"],
        8,
    )


def test_the_list_keeps_the_first_reason_and_lets_nodes_go(tmp_path: Path) -> None:
    site = tmp_path / "inv"
    quarantine.add(site, ["node3"], "ECC errors")
    quarantine.add(site, ["node3", "node2"], "again")
    assert [(q.node, q.reason) for q in quarantine.load(site)] == [
        ("node3", "ECC errors"),
        ("node2", "again"),
    ]
    assert "node3 (since " in quarantine.load(site)[0].describe()
    assert [q.node for q in quarantine.release(site, ["node3", "node1"])] == ["node3"]
    assert quarantine.names(site) == ["node2"]
    assert list(quarantine.every()) == [str(site.resolve())]
    assert quarantine.load(tmp_path / "elsewhere") == []


def test_an_unreadable_list_is_an_error_not_an_empty_quarantine(tmp_path: Path) -> None:
    site = tmp_path / "inv"
    quarantine.add(site, ["node3"], "ECC errors")
    (path,) = home.quarantine().glob("*.json")
    path.write_text('{"nodes": [{"node": "node3"')
    with pytest.raises(ToolingError, match=f"quarantine list {path} is unreadable"):
        quarantine.load(site)


def test_every_deploy_leaves_the_quarantined_nodes_out(site: Path) -> None:
    quarantine.add(site, ["node3"], "ECC errors")
    plan = build_plan(DeployRequest(phase="2b", inventory=site, run_id="r1"), PLAN)
    assert (plan.hosts, plan.excluded, plan.world_size) == (["node1", "node2"], ["node3"], 8)
    assert plan.extravars["ddp_trainer_exclude"] == ["node3"]
    assert plan.limit == "phase2b:!node3"
    request = DeployRequest(phase="2b", inventory=site, provision=True)
    assert [s.limit for s in preparation_steps(request, plan)] == ["phase2b:!node3:monitoring"]
    configure = DeployRequest(phase="2b", inventory=site, provision=False)
    assert [s.limit for s in preparation_steps(configure, plan)] == ["phase2b:!node3", "phase2b:!node3"]
    # A phase without the node is untouched.
    smaller = build_plan(DeployRequest(phase="2a", inventory=site, run_id="r1"), PLAN)
    assert (smaller.excluded, smaller.limit, "ddp_trainer_exclude" in smaller.extravars) == (
        [],
        "phase2a",
        False,
    )


def test_exclude_quarantines_and_continues_the_recorded_run(site: Path) -> None:
    _record(site)
    request = excluding_request(DeployRequest(phase="2b", inventory=site), PLAN, ["node2"], "slow link")
    assert (request.run_id, request.restart, request.provision) == ("phase2b-20261201-120000", True, False)
    assert request.overrides == ["training.max_steps=400"]
    assert [(q.node, q.reason) for q in quarantine.load(site)] == [("node2", "slow link")]
    assert build_plan(request, PLAN).hosts == ["node1", "node3"]


def test_exclude_brings_a_fallen_back_run_home_without_the_node(site: Path) -> None:
    _record(site, phase="1", hosts=["node1"])
    fallen_back = records.load(site)
    records.save(records.Deployment(**{**fallen_back.__dict__, "fallback_from": "2b"}))
    request = excluding_request(DeployRequest(phase="2b", inventory=site), PLAN, ["node3"])
    assert (request.run_id, request.restart) == ("phase1-20261201-120000", True)


def test_exclude_without_a_run_of_the_phase_starts_a_new_one(site: Path) -> None:
    _record(site, phase="2a", hosts=["node1", "node2"])
    request = excluding_request(DeployRequest(phase="2b", inventory=site), PLAN, ["node2"])
    assert (request.run_id, request.restart, request.provision) == (None, False, True)
    assert quarantine.load(site)[0].reason == quarantine.DEFAULT_REASON


@pytest.mark.parametrize(
    ("already", "exclude", "message"),
    [
        ([], ["node7"], "--exclude node7: not a node of phase 2b"),
        (["node1", "node2"], ["node3"], "every node of phase 2b would be quarantined"),
    ],
)
def test_refused_exclusions_write_nothing(
    site: Path, already: list[str], exclude: list[str], message: str
) -> None:
    if already:
        quarantine.add(site, already, "earlier")
    with pytest.raises(ToolingError, match=message):
        excluding_request(DeployRequest(phase="2b", inventory=site), PLAN, exclude)
    assert quarantine.names(site) == already


def _rows(*rows: tuple[str, str]) -> list[Finding]:
    return [Finding(host, "cores", status, "-", "-", "-") for host, status in rows]


def test_only_a_verify_without_fail_lets_a_node_back(tmp_path: Path) -> None:
    site = tmp_path / "inv"
    quarantine.add(site, ["node2", "node3"], "ECC errors")
    shown = []
    out = type("Out", (), {"print": lambda _self, line: shown.append(line)})()
    verify_run._release_passed(site, _rows(("node2", "PASS"), ("node3", "FAIL")), ["node2", "node3"], out)
    assert quarantine.names(site) == ["node3"]
    assert "node2 leaves quarantine" in shown[0]
    # A failed check across the nodes clears none of them.
    verify_run._release_passed(site, _rows(("node3", "PASS"), (CLUSTER, "FAIL")), ["node3"], out)
    assert quarantine.names(site) == ["node3"]


def test_plan_without_a_node_follows_the_role_and_quarantines_nothing(tmp_path: Path) -> None:
    inventory_dir = site_inventory(tmp_path / "inventory")
    code, out, err, state = run_plan(
        tmp_path, inventory_dir, "--phase", "2a", "--offline", "--json", "--exclude", "gpu-a07"
    )
    assert code == 0, err
    assert not state.exists(), "a plan must write no state, quarantine included"
    shown = json.loads(out)
    assert (shown["excluded"], shown["world_size"], shown["nnodes"]) == (["gpu-a07"], 4, "1:1")
    (node,) = shown["nodes"]
    assert node["host"] == "gpu-b12" and node["rendezvous_host"]
    assert options(node["command"])["--nnodes"] == "1:1"
    assert options(node["command"])["--rdzv-endpoint"] == f"{node['address']}:{load_phases().rendezvous.port}"
    assert shown["steps"] == [{"playbook": "site.yml", "limit": "phase2a:!gpu-a07:monitoring"}]


def test_reason_goes_with_exclude(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "--phase", "2a", "-i", str(tmp_path), "--reason", "ECC"])
    assert result.exit_code == 2
    assert "--reason goes with --exclude" in result.stderr


def test_phases_shows_the_quarantined_nodes(tmp_path: Path) -> None:
    quarantine.add(tmp_path / "inv", ["node3"], "ECC errors")
    result = CliRunner().invoke(app, ["phases", "--decisions", str(tmp_path / "decisions")])
    assert result.exit_code == 0, result.output
    assert "quarantined" in result.stdout and "node3" in result.stdout and "ECC errors" in result.stdout


def test_the_excluded_nodes_trainer_is_halted_and_an_unreachable_one_named(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    quarantine.add(site, ["node3"], "ECC errors")
    request = DeployRequest(phase="2b", inventory=site, run_id="r1")
    plan = build_plan(request, PLAN)
    ran: list[tuple[str, str | None]] = []

    def playbook(
        _req: DeployRequest, _plan: object, name: str, _label: str, limit: str | None = None
    ) -> RunResult:
        ran.append((name, limit))
        return RunResult(4, "failed", "unreachable", site, site, unreachable={"node3": "No route to host"})

    monkeypatch.setattr(deploy_module, "_playbook", playbook)
    deploy_module._halt_excluded(request, plan)  # an unreachable node is named, not fatal
    assert ran == [("playbooks/quarantine.yml", "node3")]
    shown = " ".join(capsys.readouterr().out.split())  # as read, whatever the console's wrapping
    assert "left out: node3 (since" in shown and "ECC errors" in shown and "runs on node1, node2" in shown
    assert "node3: its trainer could not be halted (unreachable: No route to host)" in shown
