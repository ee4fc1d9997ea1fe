"""Reading an Ansible inventory the way Ansible does (`ansible-inventory --list`), and the questions the
CLI asks of it: which hosts a group holds, whether a phase's group matches the plan, how to reach a host."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

from tooling.console import ToolingError
from tooling.phases import Phase
from tooling.remote import SshTarget
from tooling.runner import PROJECT_ROOT, get_inventory


def natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def default_inventory(project: Path = PROJECT_ROOT) -> Path:
    """The `inventory` of the project's ansible.cfg (what plain ansible-playbook would use)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(project / "ansible.cfg", encoding="utf-8")
    value = parser.get("defaults", "inventory", fallback="inventory/production").split(",")[0].strip()
    path = Path(value).expanduser()
    return path if path.is_absolute() else project / path


def group_hosts(inventory: dict[str, Any], group: str) -> list[str]:
    """Every host of `group`, its children's included, in natural order (node1 before node10)."""
    if group not in inventory:
        raise KeyError(group)
    seen: set[str] = set()
    pending = [group]
    visited: set[str] = set()
    while pending:
        name = pending.pop()
        if name in visited:
            continue
        visited.add(name)
        entry = inventory.get(name) or {}
        seen.update(entry.get("hosts") or [])
        pending.extend(entry.get("children") or [])
    return sorted(seen, key=natural_key)


def all_hosts(inventory: dict[str, Any]) -> set[str]:
    return set((inventory.get("_meta") or {}).get("hostvars") or {}) | {
        host
        for name, entry in inventory.items()
        if name != "_meta"
        for host in (entry or {}).get("hosts") or []
    }


def group_exists(inventory: dict[str, Any], group: str) -> bool:
    try:
        return bool(group_hosts(inventory, group))
    except KeyError:
        return False


def load_inventory(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ToolingError(
            f"inventory not found: {path}", hint="pass --inventory DIR (e.g. inventory/sandbox)"
        )
    try:
        return get_inventory(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ToolingError(str(exc)) from None


def phase_hosts(inventory: dict[str, Any], phase_name: str, phase: Phase, inventory_path: Path) -> list[str]:
    """The phase group's hosts, checked against the plan's node count."""
    try:
        hosts = group_hosts(inventory, phase.group)
    except KeyError:
        raise ToolingError(
            f"inventory {inventory_path} has no group {phase.group!r} for phase {phase_name}",
            hint="phase groups nest (phase1 in phase2a in ...); see inventory/production/hosts.yml",
        ) from None
    if len(hosts) != phase.nodes:
        raise ToolingError(
            f"phase {phase_name} needs {phase.nodes} node(s) in group {phase.group!r}; "
            f"inventory {inventory_path} has {len(hosts)}: {', '.join(hosts) or 'none'}",
            hint="fix the group in the inventory, or the phase in tooling/phases.yml",
        )
    return hosts


def ssh_targets(inventory: dict[str, Any], hosts: list[str]) -> list[SshTarget]:
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    return [SshTarget.from_hostvars(host, hostvars.get(host) or {}) for host in hosts]
