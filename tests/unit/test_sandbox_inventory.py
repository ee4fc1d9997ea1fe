from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from tooling.plan.phases import load_phases
from tooling.sandbox import inventory
from tooling.sandbox.addresses import allocate
from tooling.sandbox.settings import SandboxSettings


def _settings(tmp_path: Path, nodes: int) -> SandboxSettings:
    return SandboxSettings(nodes=nodes, state_dir=tmp_path / "state", inventory_dir=tmp_path / "inv")


def _members(groups: dict[str, Any], name: str) -> set[str]:
    """Resolve a group's hosts the way Ansible does: its own hosts plus its children's."""
    group = groups[name] or {}
    hosts = set(group.get("hosts") or {})
    for child in group.get("children") or {}:
        hosts |= _members(groups, child)
    return hosts


def _render(tmp_path: Path, nodes: int) -> dict[str, Any]:
    settings = _settings(tmp_path, nodes)
    return inventory.render_hosts(settings, allocate(settings.subnet, settings.host_names))


def test_phase_groups_nest_and_match_phases_yml(tmp_path: Path) -> None:
    groups = _render(tmp_path, 4)["all"]["children"]
    plan = load_phases()
    expected = plan.group_members(["node1", "node2", "node3", "node4"])
    for group, hosts in expected.items():
        assert _members(groups, group) == set(hosts)
    assert _members(groups, "phase1") < _members(groups, "phase2a") < _members(groups, "phase2b")
    assert _members(groups, "phase2b") < _members(groups, "phase2c")
    assert _members(groups, "nodes") == {"node1", "node2", "node3", "node4"}
    assert _members(groups, "monitoring") == {"monitor"}


def test_a_small_sandbox_gets_only_the_phases_it_can_hold(tmp_path: Path) -> None:
    groups = _render(tmp_path, 2)["all"]["children"]
    assert {"phase1", "phase2a"} <= set(groups)
    assert "phase2b" not in groups and "phase2c" not in groups
    assert _members(groups, "phase2a") == {"node1", "node2"}


def test_connection_settings_pin_key_and_host_keys(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 2)
    data = inventory.render_hosts(settings, allocate(settings.subnet, settings.host_names))
    all_vars = data["all"]["vars"]
    assert all_vars["ansible_user"] == "root"
    assert all_vars["ansible_ssh_private_key_file"] == str(settings.key_path)
    assert "StrictHostKeyChecking=yes" in all_vars["ansible_ssh_common_args"]
    assert str(settings.known_hosts_path) in all_vars["ansible_ssh_common_args"]
    node1 = data["all"]["children"]["nodes"]["hosts"]["node1"]
    assert node1["ansible_host"] == "10.213.31.11"
    assert node1["sandbox_container"] == "ddp-sandbox-node1"


def test_rootless_hosts_get_their_published_port(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 1)
    endpoints = allocate(settings.subnet, settings.host_names, rootless=True)
    node1 = inventory.render_hosts(settings, endpoints)["all"]["children"]["nodes"]["hosts"]["node1"]
    assert node1["ansible_host"] == "127.0.0.1"
    assert node1["ansible_port"] == endpoints["node1"].ssh_port


def test_no_monitor_means_no_monitoring_group(tmp_path: Path) -> None:
    settings = dataclasses.replace(_settings(tmp_path, 1), monitor=False)
    data = inventory.render_hosts(settings, allocate(settings.subnet, settings.host_names))
    assert "monitoring" not in data["all"]["children"]


def test_group_vars_carry_accelerator_and_the_hosts_extra_cas(tmp_path: Path) -> None:
    (tmp_path / "b.crt").write_text("b")
    (tmp_path / "a.crt").write_text("a")
    (tmp_path / "ignored.pem").write_text("x")
    cas = inventory.extra_ca_certificates(str(tmp_path / "*.crt"))
    assert cas == [str(tmp_path / "a.crt"), str(tmp_path / "b.crt")]
    state = Path("/srv/sandbox-state")
    offline = {
        "pytorch_wheelhouse": "/srv/sandbox-state/wheelhouse-torch",
        "pytorch_wheelhouse_prepare": True,
        "node_exporter_extra_args": [
            f"--collector.filesystem.fs-types-exclude={inventory.SANDBOX_FS_TYPES_EXCLUDE}"
        ],
    }
    # The containers' overlay root holds the checkpoints: node_exporter must report it.
    excluded = inventory.SANDBOX_FS_TYPES_EXCLUDE
    assert "overlay" not in excluded and "proc" in excluded
    assert inventory.render_group_vars(cas, state) == {
        "accelerator": "cpu",
        **offline,
        "common_extra_ca_certificates": cas,
    }
    assert inventory.render_group_vars([], state) == {"accelerator": "cpu", **offline}


def test_written_files_are_valid_yaml_and_down_removes_only_them(tmp_path: Path) -> None:
    settings = _settings(tmp_path, 4)
    hosts = inventory.write_inventory(settings, allocate(settings.subnet, settings.host_names))
    data = yaml.safe_load(hosts.read_text())
    assert set(data["all"]["children"]) >= {"nodes", "monitoring", "phase1", "phase2c"}
    assert (
        yaml.safe_load((settings.inventory_dir / "group_vars" / "all.yml").read_text())["accelerator"]
        == "cpu"
    )
    assert not list(settings.inventory_dir.rglob("*.tmp"))
    keep = settings.inventory_dir / "notes.txt"
    keep.write_text("mine")
    inventory.remove_inventory(settings)
    assert keep.is_file() and not hosts.exists()
    keep.unlink()
    inventory.write_inventory(settings, allocate(settings.subnet, settings.host_names))
    inventory.remove_inventory(settings)
    assert not settings.inventory_dir.exists()


def test_a_failed_write_leaves_no_hosts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, 4)

    def boom(*_: object) -> dict[str, Any]:
        raise RuntimeError("render failed")

    monkeypatch.setattr(inventory, "render_group_vars", boom)
    with pytest.raises(RuntimeError):
        inventory.write_inventory(settings, allocate(settings.subnet, settings.host_names))
    assert not (settings.inventory_dir / inventory.HOSTS_FILE).exists()


def test_omitted_phase_groups_are_named() -> None:
    plan = load_phases()
    assert inventory.omitted_groups(plan, ["node1", "node2"]) == ["phase2b", "phase2c"]
    assert inventory.omitted_groups(plan, ["node1", "node2", "node3", "node4"]) == []
