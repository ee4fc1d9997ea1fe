"""What the kernel holds of one nftables table (`nft -j list table FAMILY NAME`, libnftables-json(5)), and
how it differs from the firewall plan (tooling/plan/firewall.py): role firewall's verify step fails on any
difference, so a ruleset that did not load, or was changed or flushed by another tool, is reported.

Only the shapes the role writes are read: `tcp dport P|P-Q`, `ip saddr @set` / `ip6 saddr @set`,
`ct state established,related`, `iif "lo"`, and the verdicts accept and drop. Anything else in the chain is
kept as an "other" rule and makes no difference unless it comes before the role's own rules.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class NftOutputError(ValueError):
    """The text is not `nft -j` output."""


@dataclass(frozen=True)
class LoadedRule:
    dports: tuple[int, int] | None = None  # tcp dport, first and last
    saddr_set: str | None = None  # "@members_v4" without the @
    ct_states: frozenset[str] = frozenset()
    interface: str | None = None  # iif / iifname
    verdict: str | None = None  # accept, drop, ...
    other: bool = False  # a match this module does not read


@dataclass
class LoadedChain:
    name: str
    hook: str | None = None
    policy: str | None = None
    rules: list[LoadedRule] = field(default_factory=list)


@dataclass
class LoadedTable:
    family: str
    name: str
    sets: dict[str, set[str]] = field(default_factory=dict)
    chains: dict[str, LoadedChain] = field(default_factory=dict)


def _element(value: Any) -> str:
    """A set element as text: an address, `addr/len` for a prefix, `a-b` for a range."""
    if isinstance(value, Mapping):
        if "elem" in value:  # an element with options (timeout, comment...)
            return _element(value["elem"]["val"])
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            first, last = value["range"]
            return f"{first}-{last}"
    return str(value)


def _dports(right: Any) -> tuple[int, int] | None:
    if isinstance(right, int):
        return right, right
    if isinstance(right, Mapping) and "range" in right:
        first, last = right["range"]
        return int(first), int(last)
    return None


def _rule(expr: Sequence[Mapping[str, Any]]) -> LoadedRule:
    found: dict[str, Any] = {}
    other = False
    for statement in expr:
        if "match" in statement:
            match = statement["match"]
            left, right, op = match.get("left") or {}, match.get("right"), match.get("op")
            payload = left.get("payload") if isinstance(left, Mapping) else None
            if payload == {"protocol": "tcp", "field": "dport"} and op == "==" and _dports(right):
                found["dports"] = _dports(right)
            elif (
                isinstance(payload, Mapping)
                and payload.get("field") == "saddr"
                and isinstance(right, str)
                and right.startswith("@")
            ):
                found["saddr_set"] = right[1:]
            elif isinstance(left, Mapping) and left.get("ct", {}).get("key") == "state":
                found["ct_states"] = frozenset([right] if isinstance(right, str) else right)
            elif isinstance(left, Mapping) and left.get("meta", {}).get("key") in ("iif", "iifname"):
                found["interface"] = str(right)
            else:
                other = True
        elif any(verdict in statement for verdict in ("accept", "drop", "reject", "jump", "goto", "return")):
            found["verdict"] = next(iter(statement))
        elif not any(key in statement for key in ("counter", "log")):
            other = True
    return LoadedRule(**found, other=other)


def loaded_table(text: str | Mapping[str, Any], family: str, name: str) -> LoadedTable | None:
    """The table FAMILY NAME in `nft -j list ...` output; None when the output has no such table."""
    try:
        document = json.loads(text) if isinstance(text, str) else text
        objects = document["nftables"]
    except (ValueError, TypeError, KeyError):
        raise NftOutputError("expected the JSON output of `nft -j list`, with an `nftables` list") from None
    table: LoadedTable | None = None
    for item in objects:
        kind, body = next(iter(item.items()))
        if not isinstance(body, Mapping) or body.get("family") != family:
            continue
        if kind == "table" and body.get("name") == name:
            table = LoadedTable(family, name)
        if table is None or body.get("table") != name:
            continue
        if kind == "set":
            table.sets[body["name"]] = {_element(e) for e in body.get("elem") or []}
        elif kind == "chain":
            table.chains[body["name"]] = LoadedChain(body["name"], body.get("hook"), body.get("policy"))
        elif kind == "rule" and body.get("chain") in table.chains:
            table.chains[body["chain"]].rules.append(_rule(body.get("expr") or []))
    return table


def _normal(element: str) -> str:
    try:
        return str(ipaddress.ip_network(element, strict=False))
    except ValueError:
        return element


def _index(rules: list[LoadedRule], **wanted: Any) -> int | None:
    for i, rule in enumerate(rules):
        if all(getattr(rule, key) == value for key, value in wanted.items()) and not rule.other:
            return i
    return None


def problems(
    table: LoadedTable | None, plan: Mapping[str, Any], *, table_name: str, chain: str, policy: str
) -> list[str]:
    """How the loaded table differs from `plan` (FirewallPlan.as_vars()); empty when it holds all of it."""
    if table is None:
        return [f"table {table_name} is not loaded"]
    found: list[str] = []
    for wanted in plan["sets"]:
        loaded = table.sets.get(wanted["name"])
        if loaded is None:
            found.append(f"set {wanted['name']} is missing")
        elif {_normal(e) for e in loaded} != {_normal(e) for e in wanted["elements"]}:
            found.append(
                f"set {wanted['name']} holds {sorted(loaded) or 'nothing'}, expected "
                f"{sorted(wanted['elements']) or 'nothing'}"
            )
    input_chain = table.chains.get(chain)
    if input_chain is None:
        return [*found, f"chain {chain} is missing"]
    if (input_chain.hook, input_chain.policy) != ("input", policy):
        found.append(
            f"chain {chain} hooks {input_chain.hook} with policy {input_chain.policy}, "
            f"expected input with {policy}"
        )
    rules = input_chain.rules
    if _index(rules, interface="lo", verdict="accept") is None:
        found.append('loopback traffic (iif "lo") is not accepted')
    if _index(rules, ct_states=frozenset({"established", "related"}), verdict="accept") is None:
        found.append("established and related traffic is not accepted")
    ssh = (plan["ssh_port"], plan["ssh_port"])
    sources: list[str | None] = [None]
    if not plan["ssh_any"]:
        sources = ["ssh_v4", "ssh_v6"]
        if _index(rules, dports=ssh, saddr_set=None, verdict="drop") is None:
            found.append(
                f"port {plan['ssh_port']} (SSH) is not dropped from sources outside firewall_ssh_sources"
            )
    for source in sources:
        if _index(rules, dports=ssh, saddr_set=source, verdict="accept") is None:
            found.append(f"port {plan['ssh_port']} (SSH) is not accepted from {source or 'anywhere'}")
    for opening in plan["openings"]:
        ports = (opening["first"], opening["last"])
        dropped = _index(rules, dports=ports, saddr_set=None, verdict="drop")
        for family in ("v4", "v6"):
            source = f"{opening['sources']}_{family}"
            accepted = _index(rules, dports=ports, saddr_set=source, verdict="accept")
            if accepted is None:
                found.append(
                    f"port {opening['ports']} ({opening['listener']}) is not accepted from @{source}"
                )
            elif dropped is not None and dropped < accepted:
                found.append(f"port {opening['ports']} is dropped before it is accepted from @{source}")
        if dropped is None:
            found.append(f"port {opening['ports']} ({opening['listener']}) is not dropped from anyone else")
    return found
