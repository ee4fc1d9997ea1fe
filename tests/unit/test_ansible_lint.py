"""Static checks of the Ansible tree: argument specs in step with defaults, syntax, phase groups.

No containers are started. ansible-lint (production profile) and yamllint run in `make lint`, which CI
runs beside the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tooling.plan.phases import load_phases

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/defaults/main.yml"))
NODE_NAMES = ["node1", "node2", "node3", "node4"]


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def _tail(proc: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    out = (proc.stdout + proc.stderr).splitlines()
    return "\n".join(out[-lines:])


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_argument_specs_match_defaults(role: Path) -> None:
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    spec_file = role / "meta" / "argument_specs.yml"
    assert spec_file.exists(), f"{spec_file.relative_to(ROOT)} is missing"
    specs = yaml.safe_load(spec_file.read_text())
    # A role with several entry points (tasks_from) documents each one; together they cover the defaults.
    options: dict[str, dict[str, object]] = {}
    for entry in specs["argument_specs"].values():
        options.update(entry.get("options") or {})
    missing = sorted(set(defaults) - set(options))
    extra = sorted(set(options) - set(defaults))
    assert not missing and not extra, (
        f"{role.name}: defaults without a spec: {missing}; spec options without a default: {extra}"
    )
    for name, option in options.items():
        assert option.get("description"), f"{spec_file.relative_to(ROOT)}: {name} has no description"
        assert option.get("type"), f"{spec_file.relative_to(ROOT)}: {name} has no type"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_role_variables_are_prefixed(role: Path) -> None:
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    unprefixed = [name for name in defaults if not name.startswith(f"{role.name}_")]
    assert not unprefixed, f"{role.name}/defaults/main.yml: not prefixed with {role.name}_: {unprefixed}"


@pytest.fixture(scope="module")
def sandbox_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sandbox inventory rendered the way `tooling sandbox up` writes it (no containers needed)."""
    from tooling.sandbox.addresses import Endpoint
    from tooling.sandbox.inventory import write_inventory
    from tooling.sandbox.settings import SandboxSettings

    directory = tmp_path_factory.mktemp("sandbox-inventory")
    settings = SandboxSettings(state_dir=directory / "state", inventory_dir=directory)
    endpoints = {
        host: Endpoint(address=f"192.0.2.{10 + i}", ssh_host=f"192.0.2.{10 + i}")
        for i, host in enumerate(settings.host_names)
    }
    write_inventory(settings, endpoints)
    return directory


@pytest.mark.parametrize("inventory", ["production", "sandbox"])
def test_site_syntax_check(inventory: str, sandbox_inventory: Path) -> None:
    path = ROOT / "inventory" / "production" if inventory == "production" else sandbox_inventory
    proc = _run([_tool("ansible-playbook"), "-i", str(path), "site.yml", "--syntax-check"])
    assert proc.returncode == 0, f"site.yml --syntax-check with {inventory} inventory:\n{_tail(proc)}"


def _inventory_groups(path: Path) -> dict[str, list[str]]:
    proc = _run([_tool("ansible-inventory"), "-i", str(path), "--list"])
    assert proc.returncode == 0, _tail(proc)
    data = json.loads(proc.stdout)

    def members(group: str) -> list[str]:
        entry = data.get(group, {})
        hosts = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            hosts += members(child)
        return hosts

    return {group: sorted(set(members(group))) for group in data if group not in ("_meta",)}


@pytest.mark.parametrize("inventory", ["production", "sandbox"])
def test_inventory_phase_groups_nest_as_phases_say(inventory: str, sandbox_inventory: Path) -> None:
    path = ROOT / "inventory" / "production" if inventory == "production" else sandbox_inventory
    groups = _inventory_groups(path)
    expected = load_phases().group_members(NODE_NAMES)
    for group, nodes in expected.items():
        assert groups.get(group) == sorted(nodes), (
            f"{inventory}: group {group} has {groups.get(group)}, expected {nodes}"
        )
    assert groups.get("nodes") == NODE_NAMES
    assert len(groups.get("monitoring", [])) == 1


def test_limit_phase2b_provisions_exactly_three_nodes() -> None:
    proc = _run([_tool("ansible-playbook"), "site.yml", "-l", "phase2b", "--list-hosts"])
    assert proc.returncode == 0, _tail(proc)
    hosts = {line.strip() for line in proc.stdout.splitlines() if line.startswith("      ")}
    assert hosts == {"node1", "node2", "node3"}, proc.stdout


def test_production_example_is_a_gpu_cluster_without_phase_numbers() -> None:
    group_vars = ROOT / "inventory" / "production" / "group_vars" / "all"
    merged: dict[str, object] = {}
    for file in sorted(group_vars.glob("*.yml")):
        merged.update(yaml.safe_load(file.read_text()) or {})
    assert merged.get("accelerator") == "cuda"
    repeated = {"nproc_per_node", "nodes", "phases"} & set(merged)
    assert not repeated, f"{sorted(repeated)} belong in tooling/phases.yml, not the inventory"
