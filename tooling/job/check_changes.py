"""What an `ansible-playbook --check --diff` run would change, per host and role, read from its events.

ansible-runner hands over one event per task result. A `runner_on_ok` whose result says `changed` is a task
that would change the host; its module arguments name the file (dest/path) or the packages (name) it
touches. A task with a loop reports each item's result under `results`. A delegated task changes the host
it was delegated to (the monitoring host for Prometheus' target lists), so it is counted there. Failures
and unreachable hosts are kept with their reason: a check-mode run stops on a host where a task needs an
earlier task's change, and that is worth saying rather than hiding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tooling.runner import failure_message

# Modules that install packages; their `name` argument lists what would be installed or upgraded.
PACKAGE_ACTIONS = frozenset(
    f"ansible.builtin.{name}" for name in ("apt", "dnf", "dnf5", "yum", "package", "pip")
)
# Where a role-less task (a play's own tasks) is counted.
PLAY_TASKS = "(play tasks)"


@dataclass
class RoleChanges:
    """The tasks of one role that would change a host, and the files and packages they name."""

    tasks: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.tasks)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "tasks": self.tasks, "files": self.files, "packages": self.packages}


@dataclass
class HostChanges:
    roles: dict[str, RoleChanges] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # "task: message"
    unreachable: str | None = None

    @property
    def changed(self) -> int:
        return sum(role.changed for role in self.roles.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "roles": {name: role.as_dict() for name, role in self.roles.items()},
            "failures": self.failures,
            "unreachable": self.unreachable,
        }


def _add(items: list[str], values: Iterable[str]) -> None:
    items.extend(v for v in values if v and v not in items)


def _package_names(value: object) -> list[str]:
    """A package module's `name`: one name, a comma-separated list, or a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    return []


def _changed_results(res: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The results that changed something: a loop's changed items, else the task's own result."""
    items = res.get("results")
    if isinstance(items, list):
        return [item for item in items if isinstance(item, Mapping) and item.get("changed")]
    return [res] if res.get("changed") else []


def _target_host(host: str, res: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """The host a result changed: the delegate for a delegated task, else the task's host. A delegated
    result carries the delegate's ansible_host only (what Ansible's own `[node1 -> ...]` line shows), so it
    is named back through `names` where the inventory gives that address to one host."""
    delegated = res.get("_ansible_delegated_vars")
    if isinstance(delegated, Mapping) and delegated.get("ansible_host"):
        address = str(delegated["ansible_host"])
        return names.get(address, address)
    return host


def delegate_names(hostvars: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """ansible_host -> inventory name, for the addresses only one host of the inventory has."""
    owners: dict[str, list[str]] = {}
    for host, host_vars in hostvars.items():
        owners.setdefault(str((host_vars or {}).get("ansible_host") or host), []).append(host)
    return {address: hosts[0] for address, hosts in owners.items() if len(hosts) == 1}


def summarise(
    events: Iterable[Mapping[str, Any]], names: Mapping[str, str] | None = None
) -> dict[str, HostChanges]:
    """Host -> what the check-mode run found it would change (hosts with nothing to change included).
    `names` maps a delegate's ansible_host to its inventory name (delegate_names)."""
    hosts: dict[str, HostChanges] = {}
    for event in events:
        kind = event.get("event")
        data = event.get("event_data") or {}
        host = data.get("host")
        if not host or kind not in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            continue
        res = data.get("res") or {}
        task = str(data.get("task") or "")
        if kind == "runner_on_unreachable":
            hosts.setdefault(str(host), HostChanges()).unreachable = failure_message(res)
            continue
        if kind == "runner_on_failed":
            if not data.get("ignore_errors"):
                hosts.setdefault(str(host), HostChanges()).failures.append(f"{task}: {failure_message(res)}")
            continue
        hosts.setdefault(str(host), HostChanges())
        role = str(data.get("role") or PLAY_TASKS)
        package_task = data.get("resolved_action") in PACKAGE_ACTIONS
        for result in _changed_results(res):
            target = hosts.setdefault(_target_host(str(host), result, names or {}), HostChanges())
            changes = target.roles.setdefault(role, RoleChanges())
            if task not in changes.tasks:
                changes.tasks.append(task)
            args = (result.get("invocation") or {}).get("module_args") or {}
            if package_task:
                _add(changes.packages, _package_names(args.get("name")))
            else:
                path = args.get("dest") or args.get("path") or result.get("dest") or result.get("path")
                _add(changes.files, [str(path)] if path else [])
    return hosts


def merge(into: dict[str, HostChanges], more: Mapping[str, HostChanges]) -> None:
    """Add a later playbook's summary to `into` (deploy may run two playbooks before the launch)."""
    for host, found in more.items():
        target = into.setdefault(host, HostChanges())
        target.unreachable = target.unreachable or found.unreachable
        target.failures.extend(found.failures)
        for role, changes in found.roles.items():
            mine = target.roles.setdefault(role, RoleChanges())
            _add(mine.tasks, changes.tasks)
            _add(mine.files, changes.files)
            _add(mine.packages, changes.packages)
