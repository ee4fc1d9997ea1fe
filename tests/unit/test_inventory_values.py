"""Host names and addresses from the inventory are checked once, when it is loaded, before they reach
/etc/hosts (roles/common), a command line or an SSH connection; a bad one names the file, the key path,
the host and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tooling.console import ToolingError
from tooling.inventory import load_inventory
from tooling.inventory_values import host_name_problem


@pytest.mark.parametrize(
    "name",
    ["node1", "node-1.example.org", "192.0.2.11", "2001:db8::11", "fe80::1%eth0", "localhost", "a" * 63],
)
def test_good_names_and_addresses(name: str) -> None:
    assert host_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "node_1",  # underscore: not a host name, though Ansible takes it as an inventory name
        "-node1",
        "node1-",
        "node1..example",
        "a" * 64,
        "192.0.2.999",  # all-digit last label: a mistyped address, not a name
        "192.0.2.11\n10.0.0.1 evil",
        "node1; rm -rf /",
        "$(reboot)",
        "",
    ],
)
def test_bad_names_and_addresses(name: str) -> None:
    assert host_name_problem(name) is not None


def inventory(root: Path, hosts: dict[str, object], **group_vars: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    document = {"all": {"children": {"nodes": {"hosts": hosts}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    if group_vars:
        (root / "group_vars").mkdir()
        (root / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    return root


def load_problem(path: Path) -> str:
    with pytest.raises(ToolingError) as info:
        load_inventory(path)
    assert info.value.exit_code == 2
    return str(info.value)


def test_every_bad_value_is_named_with_its_file_and_host(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        {
            "node1": {"ansible_host": "192.0.2.11\n10.0.0.1 node9"},
            "node_2": {"ansible_host": "192.0.2.12", "ansible_port": "22x"},
            "node3": {"ansible_host": "192.0.2.13", "ddp_trainer_node_address": "$(reboot)"},
        },
    )
    message = load_problem(path)
    hosts_yml = tmp_path / "hosts.yml"
    assert (
        f"{hosts_yml}: all.children.nodes.hosts.node1.ansible_host: host 'node1': ansible_host "
        "'192.0.2.11\\n10.0.0.1 node9' is neither an IP address nor a host name" in message
    )
    assert f"{hosts_yml}: all.children.nodes.hosts.node_2: host 'node_2' is neither" in message
    assert "host 'node_2': ansible_port '22x' is not a port number (1-65535)" in message
    assert (
        "hosts.node3.ddp_trainer_node_address: host 'node3': ddp_trainer_node_address '$(reboot)'" in message
    )


def test_a_bad_group_value_names_the_vars_file(tmp_path: Path) -> None:
    path = inventory(
        tmp_path, {"node1": {"ansible_host": "192.0.2.11"}}, prometheus_listen_address="0.0.0.0 x"
    )
    message = load_problem(path)
    assert f"{tmp_path / 'group_vars' / 'all.yml'}: prometheus_listen_address: host 'node1'" in message


def test_good_inventories_load(tmp_path: Path) -> None:
    """Addresses, names, IPv6, numeric ports and what only Ansible renders (a template) all pass."""
    path = inventory(
        tmp_path,
        {
            "node1": {"ansible_host": "192.0.2.11", "ansible_port": 2222},
            "node2": {"ansible_host": "node2.cluster.example", "ansible_port": "22"},
            "node3": {
                "ansible_host": "2001:db8::13",
                "ddp_trainer_node_address": "{{ ansible_default_ipv4.address }}",
            },
            "10.0.0.4": None,
        },
        ddp_trainer_rendezvous_host="node1",
    )
    hostvars = load_inventory(path)["_meta"]["hostvars"]
    assert hostvars["node2"]["ansible_host"] == "node2.cluster.example"
    assert set(hostvars) == {"node1", "node2", "node3", "10.0.0.4"}


def test_the_example_inventory_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    hostvars = load_inventory(root / "inventory" / "production")["_meta"]["hostvars"]
    assert hostvars, "the production example has hosts"
