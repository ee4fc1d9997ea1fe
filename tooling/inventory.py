"""Reading an Ansible inventory the way Ansible does (`ansible-inventory --list`), and the questions the
CLI asks of it: which hosts a group holds, whether a phase's group matches the plan, how to reach a host.

Ansible skips an inventory file it cannot parse with a warning nobody sees, so a typo in hosts.yml shows
up much later as "no group phase1". The YAML files of an inventory are therefore checked here first, and
each problem names the file, the group path and the host. Ansible-vault is read as Ansible reads it (a
vault-encrypted file, `!vault` values); the values tooling itself reads are then decrypted and checked in
one place (tooling.inventory_values).
"""

from __future__ import annotations

import configparser
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ddp.config_errors import ConfigError, SafeLoader, read_yaml
from tooling.console import ToolingError
from tooling.inventory_plugins import listing_environment
from tooling.inventory_values import HOST_KEY, Setting, settings_in, settle
from tooling.remote import SshTarget
from tooling.runner import PROJECT_ROOT, InventoryListing
from tooling.vault import VAULT_HEADER, Vault, VaultError, is_vaulted

if TYPE_CHECKING:
    # Annotations only: reading an inventory needs no plan schema (pydantic), and `--help` reads this.
    from tooling.plan.phases import Phase, PhasePlan

# What Ansible's yaml inventory plugin reads, and what it skips in an inventory directory
# (ansible.inventory.manager IGNORED_ALWAYS and the default INVENTORY_IGNORE_EXTS).
YAML_SUFFIXES = (".yml", ".yaml", ".json")
_IGNORED_NAMES = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$")
_IGNORED_SUFFIXES = (
    ".pyc",
    ".pyo",
    ".swp",
    ".bak",
    "~",
    ".rpm",
    ".md",
    ".txt",
    ".rst",
    ".orig",
    ".cfg",
    ".retry",
)
_VARS_DIRS = ("group_vars", "host_vars")
GROUP_KEYS = ("hosts", "children", "vars")
# Ansible's own YAML tags, which only its loader reads.
_ANSIBLE_TAGS = {"!vault", "!unsafe"}
# Connections that do not go to an address, so a host needs no ansible_host.
_ADDRESSLESS_CONNECTIONS = {"local"}
MAX_PROBLEMS = 20
_UNREADABLE = object()  # a file whose problem is already noted


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


# --- the inventory's own files -----------------------------------------------------------------------


def _kind(value: object) -> str:
    if is_vaulted(value):
        return "a vault-encrypted value"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"a {type(value).__name__}"


def inventory_sources(path: Path) -> Iterator[Path]:
    """The files Ansible reads as inventory sources: `path` itself, or a directory walked as Ansible does."""
    if not path.is_dir():
        yield path
        return
    for entry in sorted(path.iterdir()):
        if _IGNORED_NAMES.search(entry.name) or entry.name.endswith(_IGNORED_SUFFIXES):
            continue
        yield from inventory_sources(entry)


def _vars_files(path: Path) -> Iterator[Path]:
    base = path if path.is_dir() else path.parent
    for name in _VARS_DIRS:
        directory = base / name
        if directory.is_dir():
            yield from sorted(
                f
                for f in directory.rglob("*")
                if f.is_file() and f.suffix in YAML_SUFFIXES and not f.name.startswith(".")
            )


def _ansible_only(file: Path) -> bool:
    """Whether `file` is vault-encrypted or uses Ansible's own tags: YAML only Ansible's loader reads."""
    try:
        raw = file.read_bytes()
    except (OSError, ValueError):
        return False  # read_yaml names the problem
    if raw.startswith(VAULT_HEADER):
        return True
    try:
        return any(getattr(e, "tag", None) in _ANSIBLE_TAGS for e in yaml.parse(raw, Loader=SafeLoader))
    except yaml.YAMLError:
        return False  # read_yaml names the line


def _read_inventory_yaml(file: Path, vault: Vault) -> Any:
    """One YAML file of the inventory. Plain YAML goes through read_yaml (a key given twice is an error
    there, and a syntax error names its line); a vault-encrypted file or one with Ansible's tags through
    Ansible's own loader, with the vault secrets (tooling.vault). ConfigError or VaultError name the file."""
    return vault.load_yaml(file) if _ansible_only(file) else read_yaml(file)


class _GroupChecker:
    """Walks one YAML inventory file as Ansible's yaml plugin does, noting what it would skip or reject,
    and where it sets a variable tooling reads."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.problems: list[str] = []
        self.children: dict[str, set[str]] = {}
        self.settings: list[Setting] = []

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{self.file}: {where}: {text}")

    def group(self, name: object, entry: object, where: str) -> None:
        if not isinstance(name, str) or not name.strip():
            self.problem(where, f"group name {name!r} must be a non-empty string (quote it)")
            return
        if entry is None:
            return
        if not isinstance(entry, dict):
            self.problem(
                where,
                f"group {name!r}: expected a mapping with hosts:, children: or vars:, got {_kind(entry)}",
            )
            return
        for key, value in entry.items():
            if key not in GROUP_KEYS:
                close = [k for k in GROUP_KEYS if str(key).rstrip("s") == k.rstrip("s")]
                hint = f"did you mean {close[0]!r}? " if close else ""
                self.problem(
                    f"{where}.{key}",
                    f"unknown key in group {name!r} (Ansible skips it); {hint}expected one of: "
                    + ", ".join(GROUP_KEYS),
                )
            elif key == "hosts":
                self.hosts(name, value, f"{where}.hosts")
            elif key == "children":
                self.children_of(name, value, f"{where}.children")
            elif isinstance(value, dict):
                self.settings += settings_in(self.file, f"{where}.vars", value)
            elif value is not None:
                self.problem(f"{where}.vars", f"expected a mapping of variables, got {_kind(value)}")

    def hosts(self, group: str, value: object, where: str) -> None:
        if value is None or isinstance(value, str):
            return  # Ansible reads `hosts: node1` as one host
        if not isinstance(value, dict):
            self.problem(
                where,
                f"expected a mapping of host names (node1: {{ansible_host: 192.0.2.11}}), got {_kind(value)}",
            )
            return
        for host, host_vars in value.items():
            if not isinstance(host, str) or not host.strip():
                self.problem(where, f"host name {host!r} must be a non-empty string (quote it)")
                continue
            self.settings.append(Setting(self.file, f"{where}.{host}", HOST_KEY, host))
            if isinstance(host_vars, dict):
                self.settings += settings_in(self.file, f"{where}.{host}", host_vars)
            elif host_vars is not None:
                self.problem(
                    f"{where}.{host}",
                    f"host {host!r}: expected its variables as a mapping (ansible_host: ...), "
                    f"got {_kind(host_vars)}",
                )

    def children_of(self, group: str, value: object, where: str) -> None:
        if value is None or isinstance(value, str):
            if isinstance(value, str):
                self.children.setdefault(group, set()).add(value)
            return
        if not isinstance(value, dict):
            self.problem(where, f"expected a mapping of child groups (phase1:), got {_kind(value)}")
            return
        for child, entry in value.items():
            if isinstance(child, str):
                self.children.setdefault(group, set()).add(child)
            self.group(child, entry, f"{where}.{child}")


def _cycle(children: dict[str, set[str]]) -> list[str] | None:
    """A chain of groups that contains itself, if any (Ansible drops such a link with a warning)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(group: str) -> list[str] | None:
        state[group] = 1
        stack.append(group)
        for child in sorted(children.get(group, ())):
            if state.get(child) == 1:
                return [*stack[stack.index(child) :], child]
            if child not in state:
                found = visit(child)
                if found:
                    return found
        stack.pop()
        state[group] = 2
        return None

    for group in sorted(children):
        if group not in state:
            found = visit(group)
            if found:
                return found
    return None


def check_inventory_files(path: Path, vault: Vault | None = None) -> list[Setting]:
    """Raise ToolingError listing every problem of the inventory's YAML files (file, group path, host);
    return where they set the variables tooling reads (tooling.inventory_values)."""
    vault = vault or Vault()
    problems: list[str] = []
    hint = "see inventory/production/hosts.yml for the expected shape"
    settings: list[Setting] = []
    children: dict[str, set[str]] = {}

    def read(file: Path) -> Any:
        nonlocal hint
        try:
            return _read_inventory_yaml(file, vault)
        except ConfigError as exc:
            problems.append(str(exc))
        except VaultError as exc:
            problems.append(str(exc))
            hint = exc.hint or hint
        return _UNREADABLE

    for file in (f for f in inventory_sources(path) if f.suffix in YAML_SUFFIXES):
        data = read(file)
        if data is _UNREADABLE:
            continue
        if data is None:
            problems.append(f"{file}: file is empty; expected groups such as all: {{children: ...}}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{file}: expected a mapping of groups at the top level, got {_kind(data)}")
            continue
        if "plugin" in data:
            continue  # an inventory plugin's configuration, read by that plugin
        checker = _GroupChecker(file)
        for name, entry in data.items():
            checker.group(name, entry, str(name))
        problems += checker.problems
        settings += checker.settings
        for group, kids in checker.children.items():
            children.setdefault(group, set()).update(kids)
    for file in _vars_files(path):
        data = read(file)
        if isinstance(data, dict):
            settings += settings_in(file, "", data)
        elif data is not None and data is not _UNREADABLE:
            problems.append(f"{file}: expected a mapping of variables, got {_kind(data)}")
    loop = _cycle(children)
    if loop:
        problems.append(
            f"{path}: groups contain each other: {' -> '.join(loop)}; a group cannot be its own child"
        )
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS} more")
        raise ToolingError(f"inventory {path} is not valid:\n" + "\n".join(shown), hint=hint)
    return settings


def load_inventory(path: Path, vault: Vault | None = None) -> dict[str, Any]:
    """`ansible-inventory --list` of `path`, after its files are checked; the values tooling reads are
    decrypted where vaulted, and host names and addresses are known to be safe."""
    if not path.exists():
        raise ToolingError(
            f"inventory not found: {path}", hint="pass --inventory DIR (e.g. inventory/sandbox)"
        )
    vault = vault or Vault()
    plugins = listing_environment(inventory_sources(path), PROJECT_ROOT / "ansible.cfg")
    try:
        listing = InventoryListing(path, environment=plugins)
    except (FileNotFoundError, ValueError) as exc:
        raise ToolingError(str(exc)) from None
    # The files are checked while ansible-inventory lists them (a tenth of a second at a thousand hosts);
    # a problem found there is still what is reported.
    try:
        settings = check_inventory_files(path, vault)
    except BaseException:
        listing.cancel()
        raise
    try:
        inventory = listing.result()
    except ValueError as exc:
        raise ToolingError(str(exc)) from None
    settle(inventory, sorted(all_hosts(inventory), key=natural_key), path, settings, vault)
    return inventory


# --- the example inventory ---------------------------------------------------------------------------

# Addresses and names reserved for documentation (RFC 5737, RFC 3849; RFC 2606): nothing answers there.
# inventory/production, the example of a real cluster, uses them, so a host that has one belongs to the
# example (or to a copy of it not filled in yet), and SSH to it would only say "No route to host".
_DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
_DOCUMENTATION_DOMAINS = ("example", "example.com", "example.net", "example.org")


def _placeholder(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        name = address.rstrip(".").lower()
        return any(name == d or name.endswith(f".{d}") for d in _DOCUMENTATION_DOMAINS)
    return any(ip in network for network in _DOCUMENTATION_NETWORKS)


def placeholder_hosts(inventory: dict[str, Any], hosts: list[str]) -> dict[str, str]:
    """Each of `hosts` that Ansible and SSH would reach at a documentation address, with that address."""
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    found = {}
    for host in hosts:
        host_vars = hostvars.get(host) or {}
        if host_vars.get("ansible_connection") in _ADDRESSLESS_CONNECTIONS:
            continue
        address = host_vars.get("ansible_host", host)
        if isinstance(address, str) and _placeholder(address):
            found[host] = address
    return found


def refuse_placeholder_hosts(inventory: dict[str, Any], hosts: list[str], inventory_path: Path) -> None:
    """Refuse (exit 2) to act on hosts at documentation addresses, before any SSH or Ansible run."""
    found = placeholder_hosts(inventory, hosts)
    if not found:
        return
    listed = ", ".join(f"{host} ({address})" for host, address in found.items())
    have = "has a documentation address" if len(found) == 1 else "have documentation addresses"
    raise ToolingError(
        f"inventory {inventory_path} is the example inventory (or a copy not filled in yet): {listed} "
        f"{have} (RFC 5737/3849), which reach nothing",
        hint=f"copy it (`cp -r {inventory_path} inventory/mycluster`), put your nodes' addresses in, and "
        "pass `-i inventory/mycluster`; or pass `-i inventory/sandbox` for the local sandbox",
    )


# --- a phase's hosts ---------------------------------------------------------------------------------


def _address_problem(host: str, host_vars: dict[str, Any]) -> str | None:
    if host_vars.get("ansible_connection") in _ADDRESSLESS_CONNECTIONS:
        return None
    address = host_vars.get("ddp_trainer_node_address", host_vars.get("ansible_host"))
    if address is None:
        return (
            f"host {host!r} has no ansible_host; set it to the node's address (the rendezvous, "
            "the metrics endpoints and Prometheus use it)"
        )
    if not isinstance(address, str) or not address.strip():
        return f"host {host!r}: ansible_host must be an address or host name, got {_kind(address)}"
    return None


def phase_hosts(
    inventory: dict[str, Any],
    phase_name: str,
    phase: Phase,
    inventory_path: Path,
    plan: PhasePlan | None = None,
) -> list[str]:
    """The phase group's hosts, checked against the plan's node count.

    With the whole `plan` (what a launch needs), also: every host has an address to advertise (the
    rendezvous endpoint and the metrics bind address derive from ansible_host; a bare name may resolve to
    127.0.1.1 on the node itself), and the earlier phases' groups exist and nest inside this one.
    """
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
    if plan is None:
        return hosts
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    problems = [p for h in hosts if (p := _address_problem(h, hostvars.get(h) or {})) is not None]
    if problems:
        raise ToolingError(
            f"inventory {inventory_path}, group {phase.group!r} (phase {phase_name}):\n"
            + "\n".join(problems),
            hint="e.g. node1: {ansible_host: 192.0.2.11} under hosts:",
        )
    _check_nesting(inventory, phase_name, phase, inventory_path, plan, set(hosts))
    return hosts


def _check_nesting(
    inventory: dict[str, Any],
    phase_name: str,
    phase: Phase,
    inventory_path: Path,
    plan: PhasePlan,
    hosts: set[str],
) -> None:
    """Each earlier phase's group must exist and sit inside this one: its first node hosts the rendezvous."""
    name, current = phase_name, phase
    while current.previous is not None:
        earlier_name = current.previous
        earlier = plan.get(earlier_name)
        try:
            earlier_hosts = set(group_hosts(inventory, earlier.group))
        except KeyError:
            earlier_hosts = set()
        if not earlier_hosts:
            raise ToolingError(
                f"inventory {inventory_path} has no group {earlier.group!r} (phase {earlier_name}, "
                f"the phase before {name}); phase groups nest",
                hint=f"make {earlier.group!r} a child of {current.group!r} (inventory/production/hosts.yml)",
            )
        outside = sorted(earlier_hosts - hosts, key=natural_key)
        if outside:
            raise ToolingError(
                f"inventory {inventory_path}: group {earlier.group!r} (phase {earlier_name}) has "
                f"{', '.join(outside)}, which group {phase.group!r} (phase {phase_name}) lacks; "
                "phase groups nest",
                hint=f"make {earlier.group!r} a child of the next phase's group",
            )
        name, current = earlier_name, earlier


def ssh_targets(inventory: dict[str, Any], hosts: list[str]) -> list[SshTarget]:
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    return [SshTarget.from_hostvars(host, hostvars.get(host) or {}) for host in hosts]
