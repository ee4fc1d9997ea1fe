"""playbooks/verify.yml's ib_write_bw tasks, run for real on localhost against a stand-in ib_write_bw that
records its arguments: the ring of pairs, the server bound to its node's address on the probe port, the
client aimed at that address, and what gets registered for the judge."""

from __future__ import annotations

import io
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from tests.unit.local_playbook import run_local_playbook
from tests.unit.test_verify_cli import write_local_inventory
from tooling.verify.profiles import PROFILES_DIR
from tooling.verify.run import run_verify

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "verify.yml"
PROBE_PORTS = ROOT / "playbooks" / "vars" / "probe_ports.yml"
FIXTURES = Path(__file__).parent / "fixtures" / "verify"
ADDRESSES = {"node1": "127.0.0.11", "node2": "127.0.0.12", "node3": "127.0.0.13"}
# The stand-in: a server (the call with --bind_source_ip) prints perftest's banner, a client the report.
FAKE = """#!/bin/sh
echo "$*" >> "$IB_LOG"
case " $* " in *" --bind_source_ip "*) echo '* Waiting for client to connect... *'; exit 0;; esac
cat "$IB_REPORT"
"""
TASKS = (
    "Note the address other nodes reach this one at",
    "Look for perftest's ib_write_bw",
    "Measure each node pair with ib_write_bw",
)


def _play(tmp_path: Path, fake_bin: Path) -> dict[str, Any]:
    plays = yaml.safe_load(PLAYBOOK.read_text())
    network = next(p for p in plays if p["name"] == "Measure the network between the phase's nodes")
    tasks = [t for t in network["tasks"] if t["name"] in TASKS]
    assert [t["name"] for t in tasks] == list(TASKS)
    include = tasks[-1]
    include["ansible.builtin.include_tasks"] = str(PLAYBOOK.parent / include["ansible.builtin.include_tasks"])
    record = {
        "name": "Record what the first node registered",
        "ansible.builtin.copy": {
            "content": "{{ {'client': _v_ib_client, 'server': _v_ib_server} | to_json }}",
            "dest": str(tmp_path / "registered.json"),
            "mode": "0644",
        },
        "when": "inventory_hostname == ansible_play_hosts[0]",
    }
    return {
        **{k: network[k] for k in ("name", "hosts", "gather_facts", "vars")},
        "vars_files": [str(PROBE_PORTS)],
        "environment": {"PATH": f"{fake_bin}:/usr/bin:/bin"},
        "tasks": [*tasks, record],
    }


def _fake_ib_write_bw(tmp_path: Path) -> Path:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "ib_write_bw").write_text(FAKE)
    (fake_bin / "ib_write_bw").chmod(0o755)
    return fake_bin


def _run(tmp_path: Path, nodes: list[str]) -> tuple[list[list[str]], dict[str, Any]]:
    fake_bin = _fake_ib_write_bw(tmp_path)
    log = tmp_path / "calls.log"
    hosts = {
        n: {"ansible_connection": "local", "verify_address": ADDRESSES[n], "verify_ib_device": "mlx5_0"}
        for n in nodes
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"nodes": {"hosts": hosts}}))
    play = _play(tmp_path, fake_bin)
    play["environment"] |= {
        "IB_LOG": str(log),
        "IB_REPORT": str(FIXTURES / "ib_write_bw_roce_rdma_cm_4qp_98g.txt"),
    }
    result = run_local_playbook(
        tmp_path, [play], "-i", "hosts.yml", "-e", "verify_target=nodes", "-e", "verify_ib_write_bw_seconds=1"
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    return calls, json.loads((tmp_path / "registered.json").read_text())


def test_two_nodes_one_pair_server_bound_to_its_address(tmp_path: Path) -> None:
    calls, registered = _run(tmp_path, ["node1", "node2"])
    servers = [c for c in calls if "--bind_source_ip" in c]
    clients = [c for c in calls if "--bind_source_ip" not in c]
    assert len(servers) == len(clients) == 1
    port = str(yaml.safe_load(PROBE_PORTS.read_text())["verify_ib_write_bw_port"])
    server, client = servers[0], clients[0]
    # node1 serves on its own address only; node2 writes into it at that address, both on the probe port.
    assert server[server.index("--bind_source_ip") + 1] == ADDRESSES["node1"]
    assert client[-1] == ADDRESSES["node1"]
    for call in (server, client):
        assert call[call.index("-p") + 1] == port
        assert call[call.index("-d") + 1] == "mlx5_0"
        assert "--report_gbits" in call and call[call.index("-D") + 1] == "1"
    assert "98.01" in registered["client"]["stdout"] and registered["client"]["rc"] == 0
    assert registered["server"]["finished"] and "Waiting for client" in registered["server"]["stdout"]


def test_three_nodes_make_a_ring_each_node_serving_once(tmp_path: Path) -> None:
    calls, _ = _run(tmp_path, ["node1", "node2", "node3"])
    served = sorted(c[c.index("--bind_source_ip") + 1] for c in calls if "--bind_source_ip" in c)
    aimed = sorted(c[-1] for c in calls if "--bind_source_ip" not in c)
    assert served == aimed == sorted(ADDRESSES.values())


@pytest.mark.slow
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("numactl", "mpirun", "iperf3")),
    reason="needs numactl, openmpi-bin and iperf3 on this machine (the 'nodes' are localhost)",
)
def test_whole_command_judges_the_pair_from_what_the_playbook_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify-node end to end on two local 'nodes' with a profile expecting a 100 Gb/s RoCE fabric: the
    stand-in's 98.01 Gb/s report goes through set_stats to the judge and PASSes (0.98 of the port rate)."""
    monkeypatch.setenv("PATH", f"{_fake_ib_write_bw(tmp_path)}:{Path('/usr/bin')}:{Path('/bin')}")
    monkeypatch.setenv("IB_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setenv("IB_REPORT", str(FIXTURES / "ib_write_bw_roce_rdma_cm_4qp_98g.txt"))
    profile = yaml.safe_load((PROFILES_DIR / "sandbox.yml").read_text())
    profile["infiniband"] = {"ports_per_node": {"min": 1}, "port_rate_gbps": 100, "link_layer": "Ethernet"}
    (tmp_path / "roce.yml").write_text(yaml.safe_dump(profile))
    buffer = io.StringIO()
    run_verify(
        ["node1", "node2"],
        None,
        write_local_inventory(tmp_path),
        str(tmp_path / "roce.yml"),
        as_json=True,
        runs_dir=tmp_path / "runs",
        out=Console(file=buffer, width=200),
    )
    rows = {(r["host"], r["check"]): r for r in json.loads(buffer.getvalue())["results"]}
    pair = rows[("node2", "ib.write_bw -> node1")]
    assert pair["status"] == "PASS", pair
    assert pair["measured"] == "98.01 Gb/s average (65536 B messages)"
    assert pair["reason"].startswith("node2 writing into node1 (device mlx5_5, 4 QP, Ethernet): within range")
    assert not [k for k in rows if k[1].startswith("ib.write_bw") and k != ("node2", "ib.write_bw -> node1")]
