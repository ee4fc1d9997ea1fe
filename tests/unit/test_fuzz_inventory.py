"""Bad inventories, generated and hand-picked: the inventory's files and a phase's hosts are checked before
anything connects, and every problem names the file, the group and the host; `tooling deploy` exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.fuzz_documents import key_paths, with_value
from tooling.console import ToolingError
from tooling.inventory import check_inventory_files, load_inventory, phase_hosts
from tooling.plan.phases import load_phases

ROOT = Path(__file__).resolve().parents[2]
PLAN = load_phases()
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nested_inventory() -> dict[str, Any]:
    """inventory/production's shape: four nodes, a monitor, phase groups as nested children."""
    return {
        "all": {
            "vars": {"ansible_user": "ops"},
            "children": {
                "nodes": {"hosts": {f"node{i}": {"ansible_host": f"192.0.2.{10 + i}"} for i in range(1, 5)}},
                "monitoring": {"hosts": {"monitor1": {"ansible_host": "192.0.2.20"}}},
                "phase2c": {
                    "hosts": {"node4": None},
                    "children": {
                        "phase2b": {
                            "hosts": {"node3": None},
                            "children": {
                                "phase2a": {
                                    "hosts": {"node2": None},
                                    "children": {"phase1": {"hosts": {"node1": None}}},
                                }
                            },
                        }
                    },
                },
            },
        }
    }


VALID = nested_inventory()


PATHS = list(key_paths(VALID, leaves_only=False))


def write_inventory(directory: Path, hosts: object, extra: dict[str, str] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = hosts if isinstance(hosts, str) else yaml.safe_dump(hosts, sort_keys=False)
    (directory / "hosts.yml").write_text(text, encoding="utf-8")
    for name, content in (extra or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(content, encoding="utf-8")
    return directory


def file_problems(directory: Path) -> str | None:
    """The message of check_inventory_files, None when it passes; any other exception fails the test."""
    try:
        check_inventory_files(directory)
    except ToolingError as exc:
        assert exc.exit_code == 2
        assert str(directory) in str(exc)
        return str(exc)
    return None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-inventory")


def test_the_valid_shapes_pass(tmp_path: Path) -> None:
    assert file_problems(write_inventory(tmp_path / "a", VALID)) is None
    assert file_problems(ROOT / "inventory" / "production") is None
    # What Ansible reads as an empty group or one host, and an inventory plugin's configuration.
    assert (
        file_problems(write_inventory(tmp_path / "b", "all:\n  children:\n    phase1:\n      hosts: node1\n"))
        is None
    )
    assert file_problems(write_inventory(tmp_path / "c", "plugin: constructed\nstrict: true\n")) is None


# --- generated -----------------------------------------------------------------------------------------

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=12),
    st.lists(st.text(max_size=6), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.none(), st.text(max_size=6)), max_size=2),
)


@FUZZ
@given(path=st.sampled_from(PATHS), value=junk)
def test_any_value_anywhere_is_accepted_or_named(workdir: Path, path: tuple, value: Any) -> None:
    message = file_problems(write_inventory(workdir / "inv", with_value(VALID, path, value)))
    key, parent = path[-1], path[-2] if len(path) > 1 else None
    if parent == "hosts" and value is not None and not isinstance(value, dict):
        # A host's variables that are not a mapping: Ansible cannot read the file at all.
        assert message is not None and f"host {key!r}" in message
    if key in ("hosts", "children") and isinstance(value, list | int | bool):
        assert message is not None and ".".join(map(str, path)) in message
    if message is not None:
        assert "hosts.yml" in message


GROUP_PATHS = [p for p in PATHS if len(p) == 1 or p[-2] == "children"]


@FUZZ
@given(
    path=st.sampled_from(GROUP_PATHS),
    typo=st.sampled_from(["host", "child", "childs", "var", "members", "Hosts"]),
)
def test_unknown_group_keys_are_named_not_skipped(workdir: Path, path: tuple, typo: str) -> None:
    message = file_problems(
        write_inventory(workdir / "typo", with_value(VALID, path, {typo: {"node9": None}}))
    )
    assert message is not None and f"{'.'.join(map(str, path))}.{typo}: unknown key in group" in message


@FUZZ
@given(document=st.text(max_size=80))
def test_any_text_is_accepted_or_named(workdir: Path, document: str) -> None:
    try:
        text = document.encode("utf-8")
    except UnicodeEncodeError:
        return
    directory = workdir / "text"
    directory.mkdir(exist_ok=True)
    (directory / "hosts.yml").write_bytes(text)
    file_problems(directory)


def hostvars_inventory(groups: dict[str, list[str]], hostvars: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The shape `ansible-inventory --list` returns."""
    data: dict[str, Any] = {name: {"hosts": hosts} for name, hosts in groups.items()}
    data["_meta"] = {"hostvars": hostvars}
    return data


NODES = ["node1", "node2", "node3", "node4"]
PHASE_GROUPS = [phase.group for _, phase in PLAN.ordered()]


def expected_problem(groups: dict[str, list[str]], hostvars: dict[str, Any], phase: str) -> str | None:
    """What phase_hosts must say, worked out independently: size, then addresses, then nesting."""
    spec = PLAN.get(phase)
    members = groups.get(spec.group)
    if members is None:
        return f"has no group {spec.group!r}"
    if len(members) != spec.nodes:
        return f"phase {phase} needs {spec.nodes} node(s)"
    for host in sorted(members):
        if "ansible_host" not in hostvars[host]:
            return f"host {host!r} has no ansible_host"
    current = spec
    while current.previous is not None:
        earlier = PLAN.get(current.previous)
        if not groups.get(earlier.group):
            return f"no group {earlier.group!r}"
        if not set(groups[earlier.group]) <= set(members):
            return "phase groups nest"
        current = earlier
    return None


@FUZZ
@given(
    phase=st.sampled_from(list(PLAN.phases)),
    groups=st.fixed_dictionaries(
        {group: st.one_of(st.none(), st.sets(st.sampled_from(NODES), max_size=4)) for group in PHASE_GROUPS}
    ),
    without_address=st.sets(st.sampled_from(NODES)),
)
def test_phase_hosts_with_the_plan(
    phase: str, groups: dict[str, set[str] | None], without_address: set[str]
) -> None:
    """Random phase groups and missing addresses: refused exactly when they are wrong, and named."""
    present = {group: sorted(hosts) for group, hosts in groups.items() if hosts is not None}
    hostvars = {h: {} if h in without_address else {"ansible_host": f"192.0.2.{h[-1]}"} for h in NODES}
    expected = expected_problem(present, hostvars, phase)
    spec = PLAN.get(phase)
    try:
        hosts = phase_hosts(hostvars_inventory(present, hostvars), phase, spec, Path("inv"), plan=PLAN)
    except ToolingError as exc:
        assert expected is not None, f"refused a good inventory: {exc}"
        assert expected in str(exc) and "inv" in str(exc)
        return
    assert expected is None, f"accepted, expected: {expected}"
    assert hosts == present[spec.group]


# --- hand-picked -----------------------------------------------------------------------------------------

BAD_FILES = [
    (
        "all:\n  children:\n    phase1:\n      hosts:\n        node1: {ansible_host: [1\n",
        "line 6, column 1: invalid YAML",
    ),
    (
        "all:\n  children:\n    phase1:\n      hosts: [node1]\n",
        "all.children.phase1.hosts: expected a mapping of host",
    ),
    (
        "all:\n  children:\n    phase1:\n      hosts:\n        node1: 192.0.2.11\n",
        "all.children.phase1.hosts.node1: host 'node1': expected its variables as a mapping",
    ),
    (
        "all:\n  children:\n    phase2a:\n      children:\n        phase1:\n          host:\n"
        "            node1:\n",
        "all.children.phase2a.children.phase1.host: unknown key in group 'phase1' (Ansible skips it); "
        "did you mean 'hosts'?",
    ),
    (
        "all:\n  children:\n    phase2a:\n      children: [phase1]\n",
        "all.children.phase2a.children: expected a mapping of child groups",
    ),
    ("all:\n  children:\n    phase1: [node1]\n", "all.children.phase1: group 'phase1': expected a mapping"),
    ("all:\n  children:\n    phase1:\n      hosts:\n        1:\n", "host name 1 must be a non-empty string"),
    ("all:\n  vars: [a]\n", "all.vars: expected a mapping of variables"),
    ("", "file is empty"),
    ("- node1\n", "expected a mapping of groups at the top level, got a list"),
    ("all:\n  hosts:\n    node1:\n    node1:\n", "duplicate key 'node1'"),
    (
        "all:\n  children:\n    phase1:\n      children:\n        phase2a:\n"
        "    phase2a:\n      children:\n        phase1:\n",
        "groups contain each other: phase1 -> phase2a -> phase1",
    ),
]


@pytest.mark.parametrize(("document", "expected"), BAD_FILES, ids=[e[:40] for _, e in BAD_FILES])
def test_hand_picked_bad_files(tmp_path: Path, document: str, expected: str) -> None:
    message = file_problems(write_inventory(tmp_path, document))
    assert message is not None and expected in message, message
    assert str(tmp_path / "hosts.yml") in message or "groups contain each other" in message


def test_vars_files_are_checked_too(tmp_path: Path) -> None:
    inventory = write_inventory(
        tmp_path,
        VALID,
        {"group_vars/all.yml": "accelerator: [cpu\n", "host_vars/node1/main.yml": "- a\n", "notes.md": "{{"},
    )
    message = file_problems(inventory)
    assert message is not None
    assert f"{tmp_path / 'group_vars' / 'all.yml'}: line 2, column 1: invalid YAML" in message
    assert f"{tmp_path / 'host_vars' / 'node1' / 'main.yml'}: expected a mapping of variables" in message
    assert "notes.md" not in message


def test_load_inventory_checks_the_files_before_ansible_reads_them(tmp_path: Path) -> None:
    """Ansible itself would skip the broken file with a warning and report an empty inventory."""
    inventory = write_inventory(tmp_path, "all:\n  children:\n    phase1:\n      hosts: [node1]\n")
    with pytest.raises(ToolingError, match=r"hosts\.yml: all\.children\.phase1\.hosts: expected a mapping"):
        load_inventory(inventory)


HOSTVARS = {f"node{i}": {"ansible_host": f"192.0.2.{i}"} for i in range(1, 5)}
NESTED_GROUPS = PLAN.group_members(["node1", "node2", "node3", "node4"])


@pytest.mark.parametrize(
    ("groups", "hostvars", "phase", "expected"),
    [
        (
            {"phase2a": ["node1", "node2"]},
            HOSTVARS,
            "2a",
            "has no group 'phase1' (phase 1, the phase before 2a)",
        ),
        (
            {**NESTED_GROUPS, "phase1": ["node3"]},
            HOSTVARS,
            "2a",
            "group 'phase1' (phase 1) has node3, which group 'phase2a' (phase 2a) lacks",
        ),
        (NESTED_GROUPS, {**HOSTVARS, "node2": {}}, "2a", "host 'node2' has no ansible_host"),
        (
            NESTED_GROUPS,
            {**HOSTVARS, "node1": {"ansible_host": ["a"]}},
            "1",
            "ansible_host must be an address",
        ),
        (NESTED_GROUPS, HOSTVARS, "2b", None),
        (NESTED_GROUPS, {**HOSTVARS, "node1": {"ansible_connection": "local"}}, "1", None),
        (NESTED_GROUPS, {**HOSTVARS, "node1": {"ddp_trainer_node_address": "10.0.0.1"}}, "1", None),
        ({k: v for k, v in NESTED_GROUPS.items() if k != "phase2b"}, HOSTVARS, "2b", "no group 'phase2b'"),
    ],
)
def test_hand_picked_phase_hosts(
    groups: dict[str, list[str]], hostvars: dict[str, Any], phase: str, expected: str | None
) -> None:
    inventory = hostvars_inventory(groups, hostvars)
    if expected is None:
        assert (
            phase_hosts(inventory, phase, PLAN.get(phase), Path("inv"), plan=PLAN)
            == NESTED_GROUPS[PLAN.get(phase).group]
        )
        return
    with pytest.raises(ToolingError) as info:
        phase_hosts(inventory, phase, PLAN.get(phase), Path("inv"), plan=PLAN)
    assert expected in str(info.value) and info.value.exit_code == 2


# --- through `tooling deploy` ------------------------------------------------------------------------------

DEPLOY_CASES = [
    ("all:\n  children:\n    phase1:\n      hosts:\n        node1: {ansible_host: [1\n", "invalid YAML"),
    ("all:\n  children:\n    phase1:\n      hosts: [node1]\n", "all.children.phase1.hosts"),
    (
        "all:\n  children:\n    nodes:\n      hosts:\n        node1: {ansible_host: 192.0.2.1}\n",
        "no group 'phase1'",
    ),
]


# The real command line, with every way to run a playbook replaced by one that leaves a mark: a refused
# deploy must not get as far as connecting to a node.
DEPLOY = """
import sys
import tooling.job.cluster
import tooling.job.deploy
import tooling.verify.run

MARK = sys.argv[1]

def connect(*args, **kwargs):
    open(MARK, "w").close()
    raise SystemExit(99)

tooling.job.deploy.run_playbook = tooling.job.cluster.run_playbook = tooling.verify.run.run_playbook = connect
sys.argv = ["tooling", *sys.argv[2:]]
from tooling.cli import main
main()
"""


@pytest.mark.parametrize(("document", "expected"), DEPLOY_CASES, ids=[e for _, e in DEPLOY_CASES])
def test_deploy_refuses_before_anything_connects(tmp_path: Path, document: str, expected: str) -> None:
    inventory = write_inventory(tmp_path / "inventory", document)
    marker = tmp_path / "connected"
    args = ["deploy", "--phase", "1", "--inventory", str(inventory), "--skip-provision", "--skip-verify"]
    proc = subprocess.run(
        [sys.executable, "-c", DEPLOY, str(marker), *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        # This checkout's tooling/, ahead of any installed copy (the child starts outside the checkout).
        env={
            **os.environ,
            "COLUMNS": "400",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        },
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    if not expected.startswith("no group"):
        assert str(inventory / "hosts.yml") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists(), "a playbook was started"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory"], "no deployment record may be written"
