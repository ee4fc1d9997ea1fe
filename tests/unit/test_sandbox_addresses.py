from __future__ import annotations

import pytest

from tooling.console import ToolingError
from tooling.sandbox.addresses import SSH_PORT_BASE, allocate, host_offset


def test_addresses_are_fixed_by_host_name() -> None:
    endpoints = allocate("10.213.31.0/24", ["node1", "node2", "node4", "monitor"])
    assert {h: e.address for h, e in endpoints.items()} == {
        "node1": "10.213.31.11",
        "node2": "10.213.31.12",
        "node4": "10.213.31.14",
        "monitor": "10.213.31.10",
    }
    assert all(
        e.ssh_host == e.address and e.ssh_port == 22 and e.published_port is None for e in endpoints.values()
    )


def test_addresses_do_not_depend_on_how_many_hosts_there_are() -> None:
    small = allocate("10.1.2.0/24", ["node1", "node2"])
    large = allocate("10.1.2.0/24", ["node1", "node2", "node3", "node4", "monitor"])
    assert small["node2"] == large["node2"]


def test_rootless_publishes_sshd_on_loopback() -> None:
    endpoints = allocate("10.213.31.0/24", ["node1", "monitor"], rootless=True)
    assert endpoints["node1"].address == "10.213.31.11"
    assert (endpoints["node1"].ssh_host, endpoints["node1"].ssh_port) == ("127.0.0.1", SSH_PORT_BASE + 11)
    assert endpoints["monitor"].published_port == SSH_PORT_BASE + 10


@pytest.mark.parametrize(
    ("subnet", "words"),
    [("10.0.0.0/29", "usable addresses"), ("10.0.0.1/24", "not a valid network"), ("fd00::/64", "IPv6")],
)
def test_bad_subnets_are_refused_with_the_reason(subnet: str, words: str) -> None:
    with pytest.raises(ToolingError, match=words):
        allocate(subnet, ["node1", "monitor"])


def test_unknown_host_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown sandbox host"):
        host_offset("gpu7")
