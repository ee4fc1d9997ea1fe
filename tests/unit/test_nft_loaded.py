"""Reading `nft -j list` output (tooling/plan/nft_loaded.py) and comparing a loaded table with the firewall
plan, as role firewall's verify step does.

The parser runs on real outputs of nftables' own test suite (tests/unit/fixtures/nft/SOURCE.md says where
each comes from). The comparison runs on LoadedTable values: this machine has no `nft` to load the role's
ruleset, and the parser's reading of each rule shape the role writes is proved on the real outputs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tooling.plan.firewall import firewall_plan
from tooling.plan.launch import derive_launch
from tooling.plan.nft_loaded import (
    LoadedChain,
    LoadedRule,
    LoadedTable,
    NftOutputError,
    loaded_table,
    problems,
)
from tooling.plan.phases import load_phases

FIXTURES = Path(__file__).parent / "fixtures" / "nft"
FILTER = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "ddp_firewall.py"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_interval_sets_and_a_saddr_set_match() -> None:
    table = loaded_table(fixture("0001named_interval_0.json"), "inet", "t")
    assert table is not None
    assert table.sets["s1"] == {"10.0.0.0-11.0.0.0", "172.16.0.0/16"}
    assert table.sets["s2"] == {"fe00::/64", "fe11::-fe22::"}
    rules = table.chains["c"].rules
    # `ip saddr @s1 accept` is read; `ip6 daddr @s2`, `ip protocol @s3` and `tcp dport @s4` are not the
    # role's shapes and stay "other".
    assert rules[0] == LoadedRule(saddr_set="s1", verdict="accept")
    assert [r.other for r in rules] == [False, True, True, True, True]
    assert table.chains["c"].hook is None


def test_plain_elements_and_a_port_set() -> None:
    table = loaded_table(fixture("comments_0.json"), "inet", "x")
    assert table is not None
    assert table.sets["y"] == {"2.2.2.2", "3.3.3.3"}
    # `tcp dport { 21, 2121 }` is an anonymous set, not one port or a range.
    last = table.chains["y"].rules[-1]
    assert last.dports is None and last.other and last.verdict == "accept"


def test_family_and_name_select_the_table() -> None:
    text = fixture("0002rollback_rule_0.json")
    assert loaded_table(text, "inet", "t") is None
    assert loaded_table(text, "ip", "missing") is None
    table = loaded_table(text, "ip", "t")
    assert table is not None
    assert table.sets == {"t": {"1.1.1.1"}}
    assert set(table.chains) == {"c", "other"}
    rules = table.chains["c"].rules
    assert rules[0] == LoadedRule(ct_states=frozenset({"new"}))
    assert rules[2] == LoadedRule(saddr_set="t", verdict="drop")
    assert rules[3].verdict == "jump"


def test_a_base_chain_with_loopback_established_and_a_port_range() -> None:
    table = loaded_table(fixture("large_rule_pipe_inet_input.json"), "inet", "firewalld")
    assert table is not None
    chain = table.chains["filter_INPUT"]
    assert (chain.hook, chain.policy) == ("input", "accept")
    assert chain.rules[0] == LoadedRule(ct_states=frozenset({"established", "related"}), verdict="accept")
    assert chain.rules[1] == LoadedRule(interface="lo", verdict="accept")
    allow = table.chains["filter_IN_home_allow"].rules
    assert (
        LoadedRule(dports=(1714, 1764), ct_states=frozenset({"new", "untracked"}), verdict="accept") in allow
    )


@pytest.mark.parametrize("text", ["", "[]", '{"rules": []}', "not json"])
def test_other_text_is_refused(text: str) -> None:
    with pytest.raises(NftOutputError, match="expected the JSON output of `nft -j list`"):
        loaded_table(text, "inet", "ddp_cluster")


# --- the loaded table against the plan ----------------------------------------------------------------


def _plan(ssh_sources: list[str] | None = None) -> dict[str, Any]:
    groups = {"nodes": ["node1", "node2"], "phase1": ["node1"], "phase2a": ["node1", "node2"]}
    hostvars = {"node1": {"ansible_host": "10.0.0.1"}, "node2": {"ansible_host": "10.0.0.2"}}
    hostvars["monitor1"] = {"ansible_host": "10.0.0.100"}
    launch = derive_launch(load_phases(), groups, hostvars, phase="2a").as_vars()
    return firewall_plan(
        launch,
        monitoring_hosts=["monitor1"],
        hostvars=hostvars,
        node_exporter_port=9100,
        collective_ports="32768 60999",
        probe_ports={"iperf3": 5201},
        ssh_port=22,
        ssh_sources=ssh_sources or ["any"],
    ).as_vars()


def _as_loaded(plan: dict[str, Any]) -> LoadedTable:
    """The table as role firewall's template writes it, in the parser's terms."""
    rules = [
        LoadedRule(interface="lo", verdict="accept"),
        LoadedRule(ct_states=frozenset({"established", "related"}), verdict="accept"),
    ]
    ssh = (plan["ssh_port"], plan["ssh_port"])
    if plan["ssh_any"]:
        rules.append(LoadedRule(dports=ssh, verdict="accept"))
    else:
        rules += [LoadedRule(dports=ssh, saddr_set=f"ssh_{f}", verdict="accept") for f in ("v4", "v6")]
        rules.append(LoadedRule(dports=ssh, verdict="drop"))
    for o in plan["openings"]:
        ports = (o["first"], o["last"])
        rules += [
            LoadedRule(dports=ports, saddr_set=f"{o['sources']}_{f}", verdict="accept") for f in ("v4", "v6")
        ]
    rules += [LoadedRule(dports=(o["first"], o["last"]), verdict="drop") for o in plan["openings"]]
    chain = LoadedChain("input", "input", "accept", rules)
    # nft lists a /32 of an interval set as the bare address.
    sets = {s["name"]: {e.removesuffix("/32") for e in s["elements"]} for s in plan["sets"]}
    return LoadedTable("inet", "ddp_cluster", sets, {"input": chain})


def _problems(table: LoadedTable | None, plan: dict[str, Any], policy: str = "accept") -> list[str]:
    return problems(table, plan, table_name="inet ddp_cluster", chain="input", policy=policy)


@pytest.mark.parametrize("ssh_sources", [["any"], ["192.0.2.7", "2001:db8::/48"]])
def test_a_complete_table_has_no_problems(ssh_sources: list[str]) -> None:
    plan = _plan(ssh_sources)
    assert _problems(_as_loaded(plan), plan) == []


def test_each_difference_is_named() -> None:
    plan = _plan()
    assert _problems(None, plan) == ["table inet ddp_cluster is not loaded"]
    assert _problems(_as_loaded(plan), plan, policy="drop") == [
        "chain input hooks input with policy accept, expected input with drop"
    ]

    flushed = _as_loaded(plan)
    flushed.sets["members_v4"] = set()
    assert _problems(flushed, plan) == ["set members_v4 holds nothing, expected ['10.0.0.1', '10.0.0.2']"]

    reordered = _as_loaded(plan)
    rules = reordered.chains["input"].rules
    drop = next(r for r in rules if r.dports == (29400, 29400) and r.verdict == "drop")
    rules.remove(drop)
    rules.insert(0, drop)
    assert _problems(reordered, plan) == [
        "port 29400 is dropped before it is accepted from @members_v4",
        "port 29400 is dropped before it is accepted from @members_v6",
    ]

    emptied = _as_loaded(plan)
    emptied.chains["input"].rules = []
    found = _problems(emptied, plan)
    assert 'loopback traffic (iif "lo") is not accepted' in found
    assert "established and related traffic is not accepted" in found
    assert "port 22 (SSH) is not accepted from anywhere" in found
    assert any(p.startswith("port 9100 (node_exporter) is not dropped from anyone else") for p in found)


def test_an_unread_match_does_not_count_as_the_rule() -> None:
    plan = _plan()
    table = _as_loaded(plan)
    rules = table.chains["input"].rules
    index = next(i for i, r in enumerate(rules) if r.saddr_set == "watchers_v4" and r.dports == (9100, 9100))
    rules[index] = dataclasses.replace(rules[index], other=True)
    assert _problems(table, plan) == ["port 9100 (node_exporter) is not accepted from @watchers_v4"]


def test_the_roles_filter_reports_a_missing_table_and_refuses_other_text() -> None:
    """plugins/filter/ddp_firewall.py, as role firewall's verify step calls it."""
    from ansible.errors import AnsibleFilterError

    spec = importlib.util.spec_from_file_location("ddp_firewall_filter", FILTER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check = module.FilterModule().filters()["ddp_firewall_problems"]
    settings = {"family": "inet", "table_name": "ddp_cluster", "chain": "input", "policy": "accept"}
    # Another table's listing (nftables' own dump): ours is not in it.
    assert check(fixture("comments_0.json"), _plan(), **settings) == ["table inet ddp_cluster is not loaded"]
    with pytest.raises(AnsibleFilterError, match="nft -j list table inet ddp_cluster: expected the JSON"):
        check("Error: No such file or directory", _plan(), **settings)
