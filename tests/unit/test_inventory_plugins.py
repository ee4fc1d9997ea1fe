"""tooling.inventory_plugins: the inventory listing leaves Ansible's `auto` plugin out only where that changes
nothing (the listing is the same), and leaves Ansible's choice alone where `auto` may be needed or the
plugins were chosen."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tooling.inventory import inventory_sources
from tooling.inventory_plugins import AUTO, listing_environment
from tooling.runner import PROJECT_ROOT, get_inventory

CONFIG = PROJECT_ROOT / "ansible.cfg"


def _inventory(where: Path) -> Path:
    """YAML and INI sources, group and host vars: what the yaml and ini plugins read."""
    (where / "group_vars").mkdir(parents=True)
    (where / "hosts.yml").write_text(
        yaml.safe_dump(
            {"all": {"children": {"nodes": {"hosts": {"gpu-a07": {"ansible_host": "2001:db8::7"}}}}}}
        )
    )
    (where / "extra.ini").write_text("[monitoring]\nmon-01 ansible_host=2001:db8::fe\n")
    (where / "group_vars" / "nodes.yml").write_text("ddp_trainer_socket_ifname: ib0\n")
    return where


def test_the_listing_without_auto_is_the_same(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path / "inventory")
    chosen = listing_environment(inventory_sources(inventory), CONFIG)
    ((_, plugins),) = chosen.items()
    assert AUTO not in plugins.split(",") and {"yaml", "ini"} <= set(plugins.split(","))
    assert get_inventory(inventory, environment=chosen) == get_inventory(inventory)


def test_auto_stays_where_a_source_may_be_a_plugins_configuration(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path / "inventory")
    (inventory / "cloud.yml").write_text("plugin: ansible.builtin.constructed\nstrict: true\n")
    assert listing_environment(inventory_sources(inventory), CONFIG) == {}
    (inventory / "cloud.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    assert listing_environment(inventory_sources(inventory), CONFIG) == {}


def test_a_choice_of_plugins_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = _inventory(tmp_path / "inventory")
    (name, _), *_ = listing_environment(inventory_sources(inventory), CONFIG).items()
    config = tmp_path / "ansible.cfg"
    config.write_text("[inventory]\nenable_plugins = yaml, ini\n")
    assert listing_environment(inventory_sources(inventory), config) == {}
    monkeypatch.setenv(name, "yaml,ini")
    assert listing_environment(inventory_sources(inventory), CONFIG) == {}
