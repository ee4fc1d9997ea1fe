"""What a phase node's firewall lets in (tooling/plan/firewall.py): the source sets per port, from the launch
`derive_launch` makes for the phase, and every refusal (names, wildcards, ports, SSH sources)."""

from __future__ import annotations

from typing import Any

import pytest

from tooling.plan.firewall import FirewallError, FirewallPlan, firewall_plan, port_range
from tooling.plan.launch import derive_launch
from tooling.plan.phases import load_phases

GROUPS = {
    "nodes": ["node1", "node2", "node3", "node4"],
    "phase1": ["node1"],
    "phase2a": ["node1", "node2"],
    "monitoring": ["monitor1"],
}
HOSTVARS: dict[str, dict[str, Any]] = {
    "node1": {"ansible_host": "192.0.2.11"},
    "node2": {"ansible_host": "192.0.2.12"},
    "node3": {"ansible_host": "192.0.2.13"},
    "monitor1": {"ansible_host": "192.0.2.20"},
}
PROBES = {"iperf3": 5201, "gloo probe": 29510}


def _plan(hostvars: dict[str, dict[str, Any]] | None = None, **overrides: Any) -> FirewallPlan:
    hostvars = hostvars or HOSTVARS
    launch = derive_launch(load_phases(), GROUPS, hostvars, phase="2a").as_vars()
    arguments: dict[str, Any] = {
        "monitoring_hosts": GROUPS["monitoring"],
        "hostvars": hostvars,
        "node_exporter_port": 9100,
        "collective_ports": "32768\t60999\n",
        "probe_ports": PROBES,
        "ssh_port": 22,
        "ssh_sources": ["any"],
        **overrides,
    }
    return firewall_plan(launch, **arguments)


def _sets(plan: FirewallPlan) -> dict[str, list[str]]:
    return {s.name: s.elements for s in plan.sets}


def test_phase_2a_sources_per_port() -> None:
    plan = _plan()
    plan_file = load_phases()
    base = plan_file.metrics.base_port
    last = base + plan_file.phases["2a"].nproc_per_node - 1
    assert {(o.ports, o.sources) for o in plan.openings} == {
        (str(plan_file.rendezvous.port), "members"),
        ("32768-60999", "members"),
        ("5201", "members"),
        ("29510", "members"),
        (f"{base}-{last}", "watchers"),
        ("9100", "watchers"),
    }
    assert _sets(plan) == {
        "members_v4": ["192.0.2.11", "192.0.2.12"],
        "members_v6": [],
        "watchers_v4": ["192.0.2.11", "192.0.2.12", "192.0.2.20"],
        "watchers_v6": [],
        "ssh_v4": [],
        "ssh_v6": [],
    }
    assert plan.members == {"node1": "192.0.2.11", "node2": "192.0.2.12"}
    assert plan.monitoring == {"monitor1": "192.0.2.20"}
    assert plan.ssh_any and plan.ssh_port == 22
    # node3 is a node of the inventory, not of phase 2a: it is let in nowhere.
    assert not any("192.0.2.13" in s.elements for s in plan.sets)


def test_addresses_are_the_launchs_and_split_by_family() -> None:
    hostvars = {
        **HOSTVARS,
        # The training address wins over the management address, for nodes and the monitor alike.
        "node2": {"ansible_host": "192.0.2.12", "ddp_trainer_node_address": "fd00::12"},
        "monitor1": {"ansible_host": "192.0.2.20", "ddp_trainer_node_address": "[fd00::20]"},
    }
    sets = _sets(_plan(hostvars))
    assert sets["members_v4"] == ["192.0.2.11"] and sets["members_v6"] == ["fd00::12"]
    assert sets["watchers_v6"] == ["fd00::12", "fd00::20"]


def test_addresses_sort_by_value() -> None:
    hostvars = {**HOSTVARS, "monitor1": {"ansible_host": "192.0.2.100"}}
    assert _sets(_plan(hostvars))["watchers_v4"] == ["192.0.2.11", "192.0.2.12", "192.0.2.100"]


def test_ssh_sources_become_interval_sets() -> None:
    plan = _plan(ssh_sources=["198.51.100.0/24", "2001:db8::/48", "203.0.113.7"])
    sets = {s.name: s for s in plan.sets}
    assert not plan.ssh_any
    assert sets["ssh_v4"].interval and sets["ssh_v4"].elements == ["198.51.100.0/24", "203.0.113.7/32"]
    assert sets["ssh_v6"].elements == ["2001:db8::/48"]
    assert not sets["members_v4"].interval


@pytest.mark.parametrize(
    ("hostvars", "overrides", "message"),
    [
        (
            {**HOSTVARS, "node2": {"ansible_host": "0.0.0.0"}},
            {},
            "host node2: node address '0.0.0.0' is a wildcard address",
        ),
        (
            {**HOSTVARS, "monitor1": {"ansible_host": "::"}},
            {},
            "host monitor1: monitoring address '::' is a wildcard address",
        ),
        (
            {**HOSTVARS, "monitor1": {"ansible_host": "monitor1.example.org"}},
            {},
            "host monitor1: monitoring address 'monitor1.example.org' is not an IP address",
        ),
        (HOSTVARS, {"monitoring_hosts": []}, "the monitoring group has no hosts"),
        (HOSTVARS, {"node_exporter_port": 70000}, "node_exporter_port: expected a TCP port from 1 to 65535"),
        (HOSTVARS, {"ssh_port": "ssh"}, "firewall_ssh_port: expected a TCP port from 1 to 65535 (got 'ssh')"),
        (HOSTVARS, {"collective_ports": "1024-70000"}, "expected a TCP port from 1 to 65535 (got 70000)"),
        (HOSTVARS, {"collective_ports": "60999-32768"}, "the range 60999-32768 ends before it starts"),
        (HOSTVARS, {"collective_ports": "32768"}, "expected a port range LOW-HIGH"),
        (HOSTVARS, {"probe_ports": {"iperf3": 0}}, "probe port iperf3: expected a TCP port from 1 to 65535"),
        (HOSTVARS, {"ssh_sources": []}, "firewall_ssh_sources: empty"),
        (HOSTVARS, {"ssh_sources": ["any", "10.0.0.0/8"]}, "`any` stands alone"),
        (HOSTVARS, {"ssh_sources": ["0.0.0.0/0"]}, "is everyone; write [any]"),
        (HOSTVARS, {"ssh_sources": ["10.0.0.5/24"]}, "'10.0.0.5/24' is not an address or network"),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, str) else None,
)
def test_refusals_name_the_host_setting_and_value(
    hostvars: dict[str, dict[str, Any]], overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(FirewallError) as info:
        _plan(hostvars, **overrides)
    assert message in str(info.value)


def test_the_operators_own_connection_must_stay_open() -> None:
    with pytest.raises(FirewallError) as info:
        _plan(ssh_sources=["198.51.100.0/24"], operator_address="203.0.113.9")
    assert "reaches the node over SSH from 203.0.113.9, which none of 198.51.100.0/24 contains" in str(
        info.value
    )
    assert not _plan(ssh_sources=["198.51.100.0/24"], operator_address="198.51.100.4").ssh_any
    # SSH from anywhere keeps every operator in; no SSH connection (local, podman) has nothing to check.
    assert _plan(operator_address="203.0.113.9").ssh_any
    assert not _plan(ssh_sources=["198.51.100.0/24"], operator_address="").ssh_any


def test_port_range_reads_the_kernels_file_and_the_settings_form() -> None:
    assert port_range("32768\t60999\n", "x") == (32768, 60999)
    assert port_range("40000-40999", "x") == (40000, 40999)


def test_as_vars_spells_ports_as_nftables_does() -> None:
    openings = _plan().as_vars()["openings"]
    ports = derive_launch(load_phases(), GROUPS, HOSTVARS, phase="2a").metrics_ports
    assert [o["ports"] for o in openings if o["first"] != o["last"]] == [
        "32768-60999",
        f"{ports[0]}-{ports[-1]}",
    ]
    assert all(o["ports"] == str(o["first"]) for o in openings if o["first"] == o["last"])
