"""The host variables tooling reads itself, made safe before anything uses them: a vaulted one decrypted (or
an error naming the host, the key and the file), host names and addresses checked before they reach
/etc/hosts (roles/common writes `ansible_host inventory_hostname` lines), a command line or an SSH
connection, and ports checked before they are counted on.

Every other value stays as `ansible-inventory --list` gives it: a vaulted value tooling does not read is
never decrypted here, and one Ansible renders (a Jinja template) is Ansible's to check.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooling.console import ToolingError
from tooling.vault import Vault, is_vaulted, listed_ciphertext

# Ansible's name for a host's own name; a host's declaration is kept under it.
HOST_KEY = "inventory_hostname"
ADDRESS_KEYS = ("ansible_host", "ddp_trainer_node_address", "sandbox_address", "prometheus_listen_address")
HOST_NAME_KEYS = ("ddp_trainer_rendezvous_host",)
PORT_KEYS = ("ansible_port", "prometheus_port")
# Everything tooling reads from hostvars (remote.py, plan/launch.py, job/, check/, soak/, verify/): SSH, the
# addresses and ports above, the trainer's paths and service, Prometheus' TLS switch.
READ_BY_TOOLING = frozenset(
    {
        *ADDRESS_KEYS,
        *HOST_NAME_KEYS,
        *PORT_KEYS,
        "ansible_connection",
        "ansible_user",
        "ansible_ssh_private_key_file",
        "ansible_private_key_file",
        "ansible_ssh_common_args",
        "ddp_trainer_run_root",
        "ddp_trainer_venv_path",
        "pytorch_venv_path",
        "ddp_trainer_service_name",
        "prometheus_tls_cert_file",
    }
)
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, 63 characters at most each,
# 253 in all.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_HOST_NAME_RULE = "letters, digits and '-' in dot-separated labels of at most 63 characters (RFC 1123)"


@dataclass(frozen=True)
class Setting:
    """Where the inventory's YAML gives a variable tooling reads (or declares a host, under HOST_KEY), kept
    to name the file in a message."""

    file: Path
    where: str  # the key path in the file, e.g. all.children.nodes.hosts.node1.ansible_host
    key: str
    value: object


def settings_in(file: Path, where: str, variables: Mapping[Any, Any]) -> list[Setting]:
    """The variables tooling reads among `variables` (a host's or a group's, at key path `where`)."""
    prefix = f"{where}." if where else ""
    return [Setting(file, f"{prefix}{k}", k, v) for k, v in variables.items() if k in READ_BY_TOOLING]


def is_template(value: object) -> bool:
    """A value Ansible renders when it runs (Jinja), which tooling cannot read as it stands."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def host_name_problem(name: str) -> str | None:
    """Why `name` is not a host name (RFC 1123) or an IP address, or None."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(name):
        return f"is neither an IP address nor a host name ({_HOST_NAME_RULE})"
    if name.rsplit(".", 1)[-1].isdigit():
        return "is neither an IP address nor a host name (a host name's last label is not all digits)"
    return None


def _value_problem(key: str, value: object) -> str | None:
    if value is None or is_template(value):
        return None
    if key in PORT_KEYS:
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        return None if number is not None and 0 < number < 65536 else "is not a port number (1-65535)"
    if not isinstance(value, str) or not value.strip():
        return "is not an IP address or a host name"
    return host_name_problem(value)


def _gives(setting: Setting, value: object) -> bool:
    """Whether `setting` gives `value`, or (no value) a vaulted one. A vaulted value is never compared:
    that would decrypt it."""
    if is_vaulted(setting.value):
        return value is None
    return value is not None and setting.value == value


def _origin(settings: Iterable[Setting], fallback: Path, key: str, value: object = None) -> str:
    """Where the inventory's files set `key` to `value`, or vault it (no value); else the inventory."""
    found = (f"{s.file}: {s.where}" for s in settings if s.key == key and _gives(s, value))
    return next(found, str(fallback))


def _reveal(
    host: str, values: dict[str, Any], settings: list[Setting], inventory_path: Path, vault: Vault
) -> dict[str, str]:
    """Replace each vaulted value tooling reads by its plain text (VaultError when it cannot be); returns
    where each one was vaulted."""
    revealed: dict[str, str] = {}
    for key in sorted(READ_BY_TOOLING & set(values)):
        ciphertext = listed_ciphertext(values[key])
        if ciphertext is not None:
            revealed[key] = _origin(settings, inventory_path, key)
            values[key] = vault.decrypt(ciphertext, f"host {host!r}: {key} (set in {revealed[key]})")
    return revealed


def settle(
    inventory: dict[str, Any],
    hosts: Iterable[str],
    inventory_path: Path,
    settings: list[Setting],
    vault: Vault,
) -> None:
    """Decrypt the vaulted values tooling reads (in place), then check every host's name, addresses and
    ports; the problems name the file and key path (or the inventory), the host and the value."""
    hostvars = inventory.setdefault("_meta", {}).setdefault("hostvars", {})
    problems: list[str] = []
    for host in hosts:
        values = hostvars.setdefault(host, {})
        revealed = _reveal(host, values, settings, inventory_path, vault)
        problem = host_name_problem(host)
        if problem:
            where = _origin(settings, inventory_path, HOST_KEY, host)
            problems.append(f"{where}: host {host!r} {problem}")
        for key in (*ADDRESS_KEYS, *HOST_NAME_KEYS, *PORT_KEYS):
            problem = _value_problem(key, values.get(key))
            if problem:
                where = revealed.get(key) or _origin(settings, inventory_path, key, values[key])
                problems.append(f"{where}: host {host!r}: {key} {values[key]!r} {problem}")
    if problems:
        raise ToolingError(
            f"inventory {inventory_path}: host names and addresses must be safe to write into /etc/hosts "
            "and commands:\n" + "\n".join(problems),
            hint="e.g. node1: {ansible_host: 192.0.2.11} (an IP address) or ansible_host: node1.example.org",
        )
