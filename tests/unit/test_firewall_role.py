"""Role firewall, run by Ansible on local hosts: the ruleset it writes for phase 2a (exact source sets per
port, accepted by `nft -c` where nft is installed) and the preflight refusals, each naming the setting and
value; and the README's table of every port against the places the ports are defined.

The inventory is the production example's shape: node1..node4 in nested phase groups and a monitoring host.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.local_playbook import ROOT, run_local_playbook
from tooling.plan.phases import load_phases

ROLE = ROOT / "roles" / "firewall"
ADDRESSES = {"node1": "192.0.2.11", "node2": "192.0.2.12", "node3": "192.0.2.13", "node4": "192.0.2.14"}
MONITOR = "192.0.2.20"
# The facts preflight reads, whatever runs the test.
FACTS = {"ansible_facts": {"service_mgr": "systemd"}}
PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# What a rescued case keeps: the failed task's name and message.
FAILURE = "{{ ansible_failed_task.name }}: {{ ansible_failed_result.msg }}"


def _inventory(tmp_path: Path, node_vars: dict[str, dict[str, Any]] | None = None) -> Path:
    plan = load_phases()
    nodes = list(ADDRESSES)
    groups: dict[str, Any] = {
        "nodes": {
            "hosts": {n: {"ansible_host": a, **(node_vars or {}).get(n, {})} for n, a in ADDRESSES.items()}
        },
        "monitoring": {"hosts": {"monitor1": {"ansible_host": MONITOR}}},
        # Monitoring groups a case can name instead (firewall_monitoring_group).
        "named_monitoring": {"hosts": {"monitor2": {"ansible_host": "monitor2.example.org"}}},
        "wildcard_monitoring": {"hosts": {"monitor3": {"ansible_host": "0.0.0.0"}}},
    }
    for phase in plan.phases.values():
        groups[phase.group] = {"hosts": {n: None for n in nodes[: phase.nodes]}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"vars": {"ansible_connection": "local"}, "children": groups}}))
    return path


def _play(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "Firewall of the phase's nodes",
        "hosts": "nodes",
        "gather_facts": False,
        "vars_files": [str(ROOT / "tooling" / "phases.yml")],
        "tasks": [{"name": "Pretend to run systemd", "ansible.builtin.set_fact": FACTS}, *tasks],
    }


def _preflight(variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "Run the preflight",
        "ansible.builtin.include_role": {"name": "firewall", "tasks_from": "preflight", "public": True},
        "vars": variables or {},
    }


# --- the ruleset of phase 2a ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The ruleset file of each node of phase 2a, as the role's template writes it (`-l phase2a`)."""
    tmp_path = tmp_path_factory.mktemp("firewall-render")
    out = tmp_path / "out"
    out.mkdir()
    render = {
        "name": "Render the ruleset",
        "ansible.builtin.template": {
            "src": str(ROLE / "templates" / "ddp_cluster.nft.j2"),
            "dest": f"{out}/{{{{ inventory_hostname }}}}.nft",
            "mode": "0644",
        },
    }
    _inventory(tmp_path)
    result = run_local_playbook(tmp_path, [_play([_preflight(), render])], "-i", "hosts.yml", "-l", "phase2a")
    assert result.returncode == 0, f"rendering failed:\n{result.stdout}\n{result.stderr}"
    return {path.stem: path.read_text() for path in out.glob("*.nft")}


def _sets(text: str) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {}
    for name, body in re.findall(r"^\tset (\w+) \{\n(.*?)^\t\}", text, flags=re.M | re.S):
        elements = re.search(r"elements = \{ (.*) \}", body)
        sets[name] = set(elements.group(1).split(", ")) if elements else set()
    return sets


def _rules(text: str) -> list[tuple[str, str | None, str]]:
    """(ports, source set or None, verdict) of every `tcp dport` rule, in order."""
    found = re.findall(r"^\t\ttcp dport (\S+) (?:ip6? saddr @(\w+) )?(accept|drop)", text, flags=re.M)
    return [(ports, source or None, verdict) for ports, source, verdict in found]


def _sources_per_port(text: str) -> dict[str, set[str]]:
    sets = _sets(text)
    admitted: dict[str, set[str]] = {}
    for ports, source, verdict in _rules(text):
        if verdict == "accept" and source is not None:
            admitted.setdefault(ports, set()).update(sets[source])
    return admitted


def test_only_the_phases_nodes_are_written(rendered: dict[str, str]) -> None:
    assert sorted(rendered) == ["node1", "node2"]
    # The same ruleset on both nodes of the phase, but for the header naming the node.
    assert rendered["node1"].split("\n", 3)[3] == rendered["node2"].split("\n", 3)[3]


def test_exact_sources_per_port(rendered: dict[str, str]) -> None:
    plan = load_phases()
    members = {ADDRESSES["node1"], ADDRESSES["node2"]}
    watchers = members | {MONITOR}
    base = plan.metrics.base_port
    metrics = f"{base}-{base + plan.phases['2a'].nproc_per_node - 1}"
    low, high = PORT_RANGE_FILE.read_text().split()
    probes = yaml.safe_load((ROOT / "playbooks" / "vars" / "probe_ports.yml").read_text())
    node_exporter = yaml.safe_load((ROOT / "roles" / "node_exporter" / "defaults" / "main.yml").read_text())
    assert _sources_per_port(rendered["node1"]) == {
        str(plan.rendezvous.port): members,
        f"{low}-{high}": members,
        str(probes["verify_iperf_port"]): members,
        str(probes["verify_gloo_port"]): members,
        str(probes["verify_ib_write_bw_port"]): members,
        metrics: watchers,
        str(node_exporter["node_exporter_port"]): watchers,
    }


def test_every_named_port_is_dropped_after_its_accepts(rendered: dict[str, str]) -> None:
    rules = _rules(rendered["node1"])
    ssh = [r for r in rules if r[0] == "22"]
    assert ssh == [("22", None, "accept")]
    guarded = {ports for ports, _, _ in rules} - {"22"}
    for ports in guarded:
        verdicts = [(source, verdict) for p, source, verdict in rules if p == ports]
        assert verdicts[-1] == (None, "drop"), f"port {ports}: {verdicts}"
        assert all(verdict == "accept" for _, verdict in verdicts[:-1])
    first_drop = next(i for i, r in enumerate(rules) if r[2] == "drop")
    assert all(r[2] == "drop" for r in rules[first_drop:])


def test_only_the_roles_table_is_replaced(rendered: dict[str, str]) -> None:
    text = rendered["node1"]
    assert "flush ruleset" not in text
    statements = re.findall(r"^(table|delete table|flush|add|destroy)\b(.*)$", text, flags=re.M)
    assert statements == [
        ("table", " inet ddp_cluster {"),
        ("delete table", " inet ddp_cluster"),
        ("table", " inet ddp_cluster {"),
    ]
    assert (
        "policy accept;" in text
        and 'iif "lo" accept' in text
        and "ct state established,related accept" in text
    )


# --- preflight refusals --------------------------------------------------------------------------------

CASES: dict[str, tuple[dict[str, Any], str | None, str]] = {
    "defaults": ({}, None, ""),
    "drop_policy": ({"firewall_input_policy": "drop"}, None, ""),
    "reject_policy": (
        {"firewall_input_policy": "reject"},
        "Check the table, policy and SSH settings",
        "firewall_input_policy accept or drop (got 'reject')",
    ),
    "ssh_sources_string": (
        {"firewall_ssh_sources": "10.0.0.0/8"},
        "Check the table, policy and SSH settings",
        "firewall_ssh_sources a list",
    ),
    "port_out_of_range": (
        {"firewall_collective_ports": "1024-70000"},
        "Check the sources and ports of the ruleset",
        "net.ipv4.ip_local_port_range: expected a TCP port from 1 to 65535 (got 70000)",
    ),
    "node_exporter_port": (
        {"firewall_node_exporter_port": 0},
        "Check the sources and ports of the ruleset",
        "node_exporter_port: expected a TCP port from 1 to 65535 (got 0)",
    ),
    "empty_monitoring": (
        {"firewall_monitoring_group": "nowhere"},
        "Check the sources and ports of the ruleset",
        "the monitoring group has no hosts",
    ),
    "named_monitor": (
        {"firewall_monitoring_group": "named_monitoring"},
        "Check the sources and ports of the ruleset",
        "host monitor2: monitoring address 'monitor2.example.org' is not an IP address",
    ),
    "wildcard_monitor": (
        {"firewall_monitoring_group": "wildcard_monitoring"},
        "Check the sources and ports of the ruleset",
        "host monitor3: monitoring address '0.0.0.0' is a wildcard address",
    ),
    "empty_ssh_sources": (
        {"firewall_ssh_sources": []},
        "Check the sources and ports of the ruleset",
        "firewall_ssh_sources: empty",
    ),
}


def _outcomes(
    tmp_path: Path, cases: dict[str, dict[str, Any]], limit: str, **node_vars: Any
) -> dict[str, str]:
    """Each case's preflight on phase 2a's nodes: "passed", or the failed task's name and message."""
    tasks: list[dict[str, Any]] = []
    for name, variables in cases.items():
        tasks.append(
            {
                "name": f"Case {name}",
                "block": [
                    _preflight(variables),
                    {"name": "Pass", "ansible.builtin.set_fact": {f"outcome_{name}": "passed"}},
                ],
                "rescue": [
                    {
                        "name": "Keep the failure",
                        "ansible.builtin.set_fact": {f"outcome_{name}": FAILURE},
                    }
                ],
            }
        )
    out = tmp_path / "outcomes.json"
    tasks.append(
        {
            "name": "Write the outcomes",
            "ansible.builtin.copy": {
                "content": "{{ {" + ", ".join(f"'{n}': outcome_{n}" for n in cases) + "} | to_json }}",
                "dest": str(out),
                "mode": "0644",
            },
            "run_once": True,
        }
    )
    _inventory(tmp_path, node_vars)
    result = run_local_playbook(tmp_path, [_play(tasks)], "-i", "hosts.yml", "-l", limit)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return json.loads(out.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp_path = tmp_path_factory.mktemp("firewall-preflight")
    return _outcomes(tmp_path, {name: variables for name, (variables, _, _) in CASES.items()}, "phase2a")


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight(case: str, outcomes: dict[str, str]) -> None:
    _, task, message = CASES[case]
    if task is None:
        assert outcomes[case] == "passed"
    else:
        assert outcomes[case].startswith(f"{task}: "), outcomes[case]
        assert message in outcomes[case]


def test_preflight_refuses_a_wildcard_member(tmp_path: Path) -> None:
    found = _outcomes(
        tmp_path, {"wildcard_member": {}}, "phase2a", node2={"ddp_trainer_node_address": "0.0.0.0"}
    )
    assert "host node2: node address '0.0.0.0' is a wildcard address" in found["wildcard_member"]


def test_preflight_refuses_a_limit_that_is_no_phase(tmp_path: Path) -> None:
    _inventory(tmp_path)
    result = run_local_playbook(tmp_path, [_play([_preflight()])], "-i", "hosts.yml", "-l", "node1,node3")
    assert result.returncode != 0
    assert "TASK [firewall : Derive the phase's nodes and ports]" in result.stdout
    assert "Cannot tell which phase to deploy: the play's hosts node1, node3" in result.stdout


# --- the README's table of every port -------------------------------------------------------------------


def _readme_ports() -> list[tuple[int, str, str]]:
    """(port, file, key path) of each row of the README's port table that names a file and key."""
    text = (ROLE / "README.md").read_text()
    table = text[text.index("## Every port of the cluster") :]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0][:1].isdigit():
            continue
        defined = re.fullmatch(r"`([\w/.]+): ([\w.]+)`", cells[4])
        if defined:
            rows.append((int(re.match(r"\d+", cells[0]).group()), defined.group(1), defined.group(2)))  # type: ignore[union-attr]
    return rows


def test_the_port_table_agrees_with_where_each_port_is_defined() -> None:
    rows = _readme_ports()
    assert len(rows) == 15
    for port, file, key in rows:
        value: Any = yaml.safe_load((ROOT / file).read_text())
        for part in key.split("."):
            value = value[part]
        assert value == port, f"README says {port} for {file}: {key}, which is {value}"


def test_the_probes_ports_come_from_the_file_the_firewall_reads() -> None:
    """playbooks/verify.yml's network play loads the probes' ports from playbooks/vars/probe_ports.yml, the
    file role firewall opens them from, and does not set them itself."""
    plays = yaml.safe_load((ROOT / "playbooks" / "verify.yml").read_text())
    network = next(p for p in plays if any("iperf3" in str(t.get("name", "")) for t in p["tasks"]))
    assert network["vars_files"] == ["vars/probe_ports.yml"]
    probes = yaml.safe_load((ROOT / "playbooks" / "vars" / "probe_ports.yml").read_text())
    assert set(probes) == {"verify_iperf_port", "verify_gloo_port", "verify_ib_write_bw_port"}
    assert not set(probes) & set(network["vars"])
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["firewall_probe_ports_file"] == "{{ role_path }}/../../playbooks/vars/probe_ports.yml"
