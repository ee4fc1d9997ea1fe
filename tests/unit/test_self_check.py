"""`tooling self-check` through the real command line: each problem a failed row with its fix and exit 1,
and one run of every probe on this machine. Nothing here creates a podman network or starts a container
(the probes only read: `podman version`, `podman network ls`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from rich.console import Console
from typer.testing import CliRunner

from tooling.cli import app
from tooling.console import ToolingError
from tooling.findings import Finding
from tooling.sandbox import podman
from tooling.sandbox.settings import SandboxSettings
from tooling.selfcheck import cli as selfcheck_cli
from tooling.selfcheck import probes

runner = CliRunner()

# `podman network ls --format json` (the libpod network list) as shown in
# https://github.com/containers/podman/issues/9551 (podman 3.4; trimmed after the second network's subnets).
NETWORK_LS = """
[
    {
        "name": "test",
        "id": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "driver": "bridge",
        "network_interface": "cni-podman1",
        "created": "2021-09-29T16:44:16.350410299-04:00",
        "subnets": [
            {
                "subnet": "10.89.0.0/24",
                "gateway": "10.89.0.1"
            }
        ],
        "ipv6_enabled": false,
        "internal": false,
        "dns_enabled": true,
        "ipam_options": {
            "driver": "host-local"
        }
    },
    {
        "name": "podman",
        "id": "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9",
        "driver": "bridge",
        "network_interface": "cni-podman0",
        "created": "2021-09-29T16:44:34.768665387-04:00",
        "subnets": [
            {
                "subnet": "10.88.0.0/16",
                "gateway": "10.88.0.1"
            }
        ]
    }
]
"""


@pytest.fixture(autouse=True)
def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state root with no deployment and a sandbox state dir of the test's own."""
    monkeypatch.setenv("TOOLING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DDP_SANDBOX_STATE_DIR", str(tmp_path / "sandbox"))
    return tmp_path


def _inventory(tmp_path: Path, hosts_yml: str) -> Path:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(hosts_yml)
    return inventory


def _loads_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the tests about other probes: the inventory probe says PASS without ansible-inventory's seconds."""
    fine = Finding(probes.HOST, "inventory", "PASS", "(not read in this test)", "loads", "")
    monkeypatch.setattr(probes, "inventory_loads", lambda path, why: (fine, None))


def _self_check(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["self-check", "--json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def _row(document: dict[str, Any], check: str) -> dict[str, Any]:
    found = [row for row in document["results"] if row["check"] == check]
    assert len(found) == 1, [row["check"] for row in document["results"]]
    return found[0]


def test_missing_podman_fails_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> str:
        raise ToolingError("podman is not installed (not found on PATH)", hint=podman.INSTALL_HINT)

    monkeypatch.setattr(podman, "podman_binary", missing)
    _loads_fine(monkeypatch)
    code, document = _self_check()
    assert code == 1
    assert document["verdict"] == "FAIL"
    row = _row(document, "podman")
    assert row["status"] == "FAIL"
    assert row["measured"] == "podman is not installed (not found on PATH)"
    assert row["fix"] == podman.INSTALL_HINT
    # Without podman there is no network to look at.
    assert "sandbox network" not in [r["check"] for r in document["results"]]


def test_a_sandbox_key_others_can_read_fails_with_chmod(
    own_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SandboxSettings().key_path
    assert key.parent == own_state / "sandbox"
    key.parent.mkdir()
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o644)
    _loads_fine(monkeypatch)
    code, document = _self_check()
    assert code == 1
    row = _row(document, "ssh key (sandbox)")
    assert (row["status"], row["measured"], row["fix"]) == ("FAIL", f"{key}: mode 0644", f"chmod 600 {key}")
    key.chmod(0o600)
    _, document = _self_check()
    assert _row(document, "ssh key (sandbox)")["status"] == "PASS"


def test_an_inventory_key_is_checked_where_the_hosts_name_it(tmp_path: Path) -> None:
    key = tmp_path / "cluster_key"
    key.write_text("key\n")
    key.chmod(0o640)
    inventory = {"_meta": {"hostvars": {"node1": {"ansible_ssh_private_key_file": str(key)}, "node2": {}}}}
    [row] = probes.inventory_keys(inventory)
    assert (row.check, row.status, row.reason) == ("ssh key (inventory: node1)", "FAIL", f"chmod 600 {key}")
    [missing] = probes.inventory_keys(
        {"_meta": {"hostvars": {"node1": {"ansible_private_key_file": "/nope"}}}}
    )
    assert (missing.status, missing.measured) == ("FAIL", "/nope: missing")
    [none] = probes.inventory_keys({"_meta": {"hostvars": {"node1": {}}}})
    assert none.status == "SKIP"


def test_an_unreadable_inventory_fails_naming_the_file(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, "all:\n  hosts:\n    node1: {ansible_host: [10.0.0.1\n")
    code, document = _self_check("--inventory", str(inventory))
    assert code == 1
    row = _row(document, "inventory")
    assert row["status"] == "FAIL"
    assert str(inventory / "hosts.yml") in row["measured"]
    assert row["expected"] == "loads (--inventory)"
    assert document["inventory"] == str(inventory)
    # Nothing loaded, so there are no inventory keys to look at.
    assert "ssh key (inventory)" not in [r["check"] for r in document["results"]]


def test_a_missing_inventory_fails_with_a_hint(tmp_path: Path) -> None:
    code, document = _self_check("--inventory", str(tmp_path / "nowhere"))
    assert code == 1
    row = _row(document, "inventory")
    assert row["status"] == "FAIL" and "inventory not found" in row["measured"]
    assert row["fix"] == "pass --inventory DIR (e.g. inventory/sandbox)"


def _listed(monkeypatch: pytest.MonkeyPatch, stdout: str) -> None:
    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert list(args[:2]) == ["network", "ls"], args  # a read, never a create
        return subprocess.CompletedProcess(["podman", *args], 0, stdout, "")

    monkeypatch.setattr(podman, "run", run)
    monkeypatch.setattr(podman, "is_rootless", lambda: False)


@pytest.mark.parametrize(
    ("prefix", "subnet", "status", "words"),
    [
        ("ddp-sandbox", "10.213.31.0/24", "PASS", "not made yet; 10.213.31.0/24 is free"),
        ("ddp-sandbox", "10.89.0.128/25", "FAIL", "10.89.0.128/25 overlaps network 'test' (10.89.0.0/24)"),
        ("ddp-sandbox", "10.0.0.0/8", "FAIL", "10.0.0.0/8 overlaps network 'test' (10.89.0.0/24)"),
        ("test", "10.89.0.0/24", "PASS", "test exists, 10.89.0.0/24"),
        ("test", "10.213.31.0/24", "FAIL", "test exists with 10.89.0.0/24"),
    ],
)
def test_the_sandbox_network_from_podmans_list(
    monkeypatch: pytest.MonkeyPatch, prefix: str, subnet: str, status: str, words: str
) -> None:
    _listed(monkeypatch, NETWORK_LS)
    row = probes.sandbox_network(SandboxSettings(prefix=prefix, subnet=subnet))
    assert row.status == status
    assert row.measured.startswith(words)
    if status == "PASS":
        assert "--disable-dns" in row.measured and "/etc/hosts" in row.measured
    else:
        assert row.reason


def test_a_pin_the_installed_package_misses_fails() -> None:
    installed = probes.pinned_package("torch", "torch", {"torch": Requirement("torch==2.13.0")})
    assert installed.status == "PASS", installed  # 2.13.0+cpu is an exact pin's 2.13.0
    old = probes.pinned_package("torch", "torch", {"torch": Requirement("torch==1.0.0")})
    assert (old.status, old.expected) == ("FAIL", "==1.0.0")
    assert old.reason.startswith(f"torch {installed.measured} is not ==1.0.0: ")
    absent = probes.pinned_package("no-such-dist", "no_such_module_here", {})
    assert (absent.status, absent.measured) == ("FAIL", "`no_such_module_here` not importable")


def test_the_pins_are_the_installed_projects_own() -> None:
    pins = probes.requirements(probes.installed_distribution())
    assert str(pins["torch"].specifier) == "==2.13.0"
    assert {"ansible-core", "ansible-runner"} <= set(pins)


def test_a_real_run_on_this_machine() -> None:
    code, document = _self_check()
    rows = {row["check"]: row for row in document["results"]}
    # What this machine has: the interpreter running the tests, its packages, ansible beside it.
    for check in ("python", "torch", "ansible-core", "ansible-runner", "ansible-playbook"):
        assert rows[check]["status"] == "PASS", rows[check]
    assert rows["virtual environment"]["status"] == ("PASS" if sys.prefix != sys.base_prefix else "WARN")
    assert rows["podman"]["status"] == ("PASS" if shutil.which("podman") else "FAIL")
    assert rows["ssh key (sandbox)"]["status"] == "SKIP"  # this test's own state dir holds no key
    assert rows["inventory"]["expected"] == "loads (ansible.cfg (no deployment recorded))"
    failed = [row for row in document["results"] if row["status"] == "FAIL"]
    assert code == (1 if failed else 0), failed
    assert all(row["fix"] for row in failed)


def test_the_table_shows_each_problem_with_its_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Wide enough that no cell wraps; the command prints through its module's console.
    monkeypatch.setattr(selfcheck_cli, "console", Console(width=300))
    result = runner.invoke(app, ["self-check", "--inventory", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "control machine: FAIL" in result.output
    [line] = [line for line in result.output.splitlines() if "│ inventory " in line]
    assert "FAIL" in line and "inventory not found" in line and "pass --inventory DIR" in line
