"""`tooling status` and `tooling stop` follow the deployment: without -i they act on the latest one recorded
and say which; the example inventory's documentation addresses are refused before any SSH or Ansible run."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.unit.panel_text import flat, squeezed
from tooling import home
from tooling.cli import app
from tooling.inventory import placeholder_hosts
from tooling.job import cluster, records
from tooling.job import deploy as deploy_module
from tooling.job.records import Deployment

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "production"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _inventory(directory: Path, port: int) -> Path:
    """node1 and node2 over SSH to a port nobody listens on: status reads them as unreachable, at once."""
    directory.mkdir(parents=True)
    nodes = {f"node{i}": {"ansible_host": "127.0.0.1", "ansible_port": port} for i in (1, 2)}
    phase1 = {"hosts": {"node1": None}}
    groups = {
        "nodes": {"hosts": nodes},
        "phase2a": {"hosts": {"node2": None}, "children": {"phase1": phase1}},
    }
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    return directory


def _deployed(inventory: Path, run_id: str, phase: str, started_at: float) -> Deployment:
    hosts = ["node1"] if phase == "1" else ["node1", "node2"]
    record = Deployment(
        phase=phase,
        group=f"phase{phase}",
        run_id=run_id,
        inventory=str(inventory.resolve()),
        hosts=hosts,
        run_root="/var/lib/ddp/runs",
        world_size=4 * len(hosts),
        started_at=started_at,
    )
    records.save(record)
    return record


def _status(*args: str) -> tuple[int, str]:
    """Exit code and output without any whitespace: rich may break a long path anywhere."""
    result = runner.invoke(app, ["status", *args])
    return result.exit_code, squeezed(result.output)


def test_status_without_inventory_acts_on_the_one_deployment(tmp_path: Path) -> None:
    sandbox = _inventory(tmp_path / "sandbox", _closed_port())
    _deployed(sandbox, "rehearsal-1", "1", 1000.0)
    code, out = _status()
    assert squeezed(f"deployment: run rehearsal-1, phase 1, inventory {sandbox} (the latest recorded;") in out
    assert squeezed("run rehearsal-1 (phase 1)") in out  # the table of that run's ranks
    assert squeezed("0/4 ranks reported; job partial") in out and code == 1  # its node does not answer


def test_status_without_inventory_takes_the_latest_of_several(tmp_path: Path) -> None:
    sandbox = _inventory(tmp_path / "sandbox", _closed_port())
    other = _inventory(tmp_path / "other", _closed_port())
    _deployed(sandbox, "newer-2a", "2a", 2000.0)
    _deployed(other, "older-1", "1", 1000.0)
    code, out = _status()
    said = f"deployment: run newer-2a, phase 2a, inventory {sandbox} (the latest recorded of 2;"
    assert squeezed(said) in out
    assert "older-1" not in out and code == 1
    # -i picks the other one, and says so without "latest".
    code, out = _status("-i", str(other))
    assert squeezed(f"deployment: run older-1, phase 1, inventory {other}") in out and "latest" not in out


def test_no_deployment_at_all_is_a_clear_usage_error() -> None:
    code, out = _status()
    assert code == 2
    assert squeezed(f"no deployment recorded (looked in {home.deployments()})") in out
    assert squeezed("tooling deploy --phase P --inventory DIR") in out


def test_an_unreadable_record_does_not_hide_the_others(tmp_path: Path) -> None:
    sandbox = _inventory(tmp_path / "sandbox", _closed_port())
    _deployed(sandbox, "good", "1", 1000.0)
    (home.deployments() / "broken-0123456789ab.json").write_text("{not json")
    assert records.choose(None).deployment.run_id == "good"


def test_the_example_inventory_is_refused_before_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    _deployed(EXAMPLE, "phase1-x", "1", 1000.0)
    code, out = _status()
    assert code == 2, out
    assert squeezed(f"inventory {EXAMPLE} is the example inventory") in out
    assert squeezed("node1 (192.0.2.11) has a documentation address") in out
    assert "cp-r" in out and "-iinventory/sandbox" in out
    assert "unreachable" not in out  # no SSH was tried

    def no_playbook(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("stop ran a playbook against the example inventory")

    monkeypatch.setattr(cluster, "run_playbook", no_playbook)
    stopped = runner.invoke(app, ["stop"])
    assert stopped.exit_code == 2 and "is the example inventory" in flat(stopped.output)


def test_deploy_refuses_the_example_inventory_before_provisioning(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_deploy(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("deploy went ahead on the example inventory")

    monkeypatch.setattr(deploy_module, "run_playbook", no_deploy)
    result = runner.invoke(app, ["deploy", "--phase", "2a", "-i", str(EXAMPLE)])
    assert result.exit_code == 2, result.output
    out = flat(result.output)
    assert "is the example inventory" in out and "node1 (192.0.2.11), node2 (192.0.2.12)" in out


@pytest.mark.parametrize("command", [["verify-node", "--phase", "1"], ["check", "--phase", "1"]])
def test_commands_on_the_default_example_inventory_are_refused(command: list[str]) -> None:
    # No -i: ansible.cfg's inventory, the example, as a first `tooling verify-node --phase 1` finds it.
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    out = flat(result.output)
    assert "is the example inventory" in out and "node1 (192.0.2.11) has a documentation address" in out


def test_placeholder_hosts_are_documentation_addresses_reached_over_the_network() -> None:
    hostvars = {
        "a": {"ansible_host": "192.0.2.5"},
        "b": {"ansible_host": "2001:db8::7"},
        "c": {"ansible_host": "node3.example.org"},
        "d": {"ansible_host": "10.0.0.4"},
        "e": {"ansible_host": "192.0.2.6", "ansible_connection": "local"},  # no address is dialled
        "f": {},  # Ansible dials the host's own name
        "g": {"ansible_host": "203.0.113.9"},
        "h": {"ansible_host": "examples.org"},
    }
    inventory = {"_meta": {"hostvars": hostvars}}
    assert placeholder_hosts(inventory, sorted(hostvars)) == {
        "a": "192.0.2.5",
        "b": "2001:db8::7",
        "c": "node3.example.org",
        "g": "203.0.113.9",
    }
