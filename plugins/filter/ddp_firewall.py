"""Jinja filters over tooling/plan/firewall.py and tooling/plan/nft_loaded.py, for role firewall.

    {{ _firewall_launch | ddp_firewall(monitoring_hosts=..., hostvars=hostvars, node_exporter_port=...,
       collective_ports=..., probe_ports=..., ssh_port=..., ssh_sources=..., operator_address=...) }}
    {{ nft_json_text | ddp_firewall_problems(plan, table_name=..., chain=..., policy=...) }}

`_firewall_launch` is what the `ddp_launch` filter (plugins/filter/ddp_launch.py) returns, so the phase's
nodes and ports are derived once, as for the launcher and the Prometheus targets.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

# As in ddp_launch.py: the checkout holding this file is the one whose roles are running.
_PROJECT = Path(__file__).resolve().parents[2]
if str(_PROJECT) not in sys.path:
    sys.path.append(str(_PROJECT))

from tooling.plan.firewall import FirewallError, firewall_plan  # noqa: E402
from tooling.plan.nft_loaded import NftOutputError, loaded_table, problems  # noqa: E402


def _plain(value: Any) -> Any:
    """Ansible's lazily templated, tagged containers as plain JSON data."""
    return json.loads(json.dumps(value))


def ddp_firewall(
    launch: Mapping[str, Any],
    *,
    monitoring_hosts: Sequence[str],
    hostvars: Mapping[str, Mapping[str, Any]],
    **settings: Any,
) -> dict[str, Any]:
    """The node's openings and address sets (tooling.plan.firewall.FirewallPlan.as_vars); `settings` are
    firewall_plan's other keyword arguments."""
    hosts = [str(h) for h in monitoring_hosts]
    try:
        plan = firewall_plan(
            _plain(launch),
            monitoring_hosts=hosts,
            # Read lazily, key by key (node_address), as derive_launch reads the nodes'.
            hostvars={h: hostvars.get(h) or {} for h in hosts},
            **_plain(settings),
        )
    except (FirewallError, TypeError) as exc:
        raise AnsibleFilterError(str(exc)) from None
    return _plain(plan.as_vars())  # type: ignore[no-any-return]


def ddp_firewall_problems(
    nft_json: str, plan: Mapping[str, Any], *, family: str, table_name: str, chain: str, policy: str
) -> list[str]:
    """How `nft -j list table FAMILY NAME` output differs from the plan; empty when it holds all of it."""
    try:
        table = loaded_table(nft_json, family, table_name)
    except NftOutputError as exc:
        raise AnsibleFilterError(f"nft -j list table {family} {table_name}: {exc}") from None
    return problems(table, _plain(plan), table_name=f"{family} {table_name}", chain=chain, policy=policy)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"ddp_firewall": ddp_firewall, "ddp_firewall_problems": ddp_firewall_problems}
