"""The control machine's probes, one finding each: PASS, WARN (works, but worth a look), FAIL (a command
will fail: the reason says how to fix it) or SKIP (nothing to look at).

Every probe only reads: versions come from the installed packages' metadata and `podman version`, the
sandbox's network from `podman network inspect/ls`; nothing is created, no container starts, torch is
found but not imported (it takes seconds). The pins are the installed project's own requirements, i.e.
pyproject.toml's, so there is no second list to keep in step.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import ipaddress
import json
import os
import platform
import shutil
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from ddp.config_errors import ConfigError
from tooling.console import ToolingError
from tooling.findings import Finding, FindingsView
from tooling.sandbox import podman
from tooling.sandbox.settings import SandboxSettings
from tooling.verdicts import Status

HOST = "control"  # every finding is about this machine
FIX_INSTALL = "run scripts/bootstrap.sh (it makes .venv and installs the pinned packages)"
# Where a package's version requirement is read: the control machine's packages are an extra.
PACKAGES = {"torch": "torch", "ansible-core": "ansible", "ansible-runner": "ansible_runner"}


def overall(rows: Iterable[Finding]) -> Status:
    """The worst verdict; a SKIP (the sandbox's key, before `tooling sandbox up`) fails nothing."""
    statuses = {row.status for row in rows}
    return "FAIL" if "FAIL" in statuses else "WARN" if "WARN" in statuses else "PASS"


# Each problem's fix in the last column (and as "fix" in the JSON).
VIEW = FindingsView(overall=overall, reason_key="fix", host_titles={HOST: "control machine"})


def _finding(check: str, status: Status, measured: str, expected: str, reason: str = "") -> Finding:
    return Finding(HOST, check, status, measured, expected, reason)


def installed_distribution() -> str | None:
    """The installed distribution that provides the `tooling` package, None when it runs uninstalled."""
    names = importlib.metadata.packages_distributions().get(__name__.partition(".")[0])
    return names[0] if names else None


def requirements(distribution: str | None) -> dict[str, Requirement]:
    """The distribution's requirements (extras' included) by canonical package name."""
    found: dict[str, Requirement] = {}
    for line in (importlib.metadata.requires(distribution) or []) if distribution else []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        found.setdefault(canonicalize_name(requirement.name), requirement)
    return found


def python_environment(distribution: str | None) -> list[Finding]:
    """The interpreter: inside a virtual environment, of a version the project supports, with it installed."""
    in_venv = sys.prefix != sys.base_prefix
    venv = _finding(
        "virtual environment",
        "PASS" if in_venv else "WARN",
        sys.prefix if in_venv else f"none: {sys.executable} is the system's",
        "a venv (e.g. .venv)",
        "" if in_venv else f"packages installed into the system's python drift; {FIX_INSTALL}",
    )
    version = platform.python_version()
    if distribution is None:
        return [
            venv,
            _finding(
                "python",
                "FAIL",
                f"{version} ({sys.executable}), the project is not installed in it",
                "the project installed",
                f"pip install -e '.[control]' with this python, or {FIX_INSTALL}",
            ),
        ]
    wanted = importlib.metadata.metadata(distribution)["Requires-Python"] or ""
    ok = SpecifierSet(wanted).contains(version)
    return [
        venv,
        _finding(
            "python",
            "PASS" if ok else "FAIL",
            f"{version} ({sys.executable})",
            wanted or "any",
            "" if ok else f"make the venv with a python {wanted}, then {FIX_INSTALL}",
        ),
    ]


def pinned_package(distribution: str, module: str, pins: dict[str, Requirement]) -> Finding:
    """Is `distribution` importable (found, not imported) and of the version the project requires?"""
    requirement = pins.get(canonicalize_name(distribution))
    expected = str(requirement.specifier) if requirement and requirement.specifier else "installed"
    if importlib.util.find_spec(module) is None:
        return _finding(distribution, "FAIL", f"`{module}` not importable", expected, FIX_INSTALL)
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return _finding(
            distribution,
            "FAIL",
            f"`{module}` importable, but no {distribution} metadata",
            expected,
            FIX_INSTALL,
        )
    # A local build tag (torch's +cpu) satisfies an exact pin; SpecifierSet knows PEP 440's rules.
    ok = requirement is None or requirement.specifier.contains(version, prereleases=True)
    reason = "" if ok else f"{distribution} {version} is not {expected}: {FIX_INSTALL}"
    return _finding(distribution, "PASS" if ok else "FAIL", version, expected, reason)


def executable(name: str, path: str) -> Finding:
    """Is the program `name` on `path` (what ansible-runner will search)?"""
    found = shutil.which(name, path=path)
    if found is None:
        return _finding(name, "FAIL", "not found on PATH or beside this python", "on PATH", FIX_INSTALL)
    return _finding(name, "PASS", found, "on PATH")


def podman_tool() -> Finding:
    """podman, for the sandbox cluster (`tooling sandbox`) and the roles' molecule tests."""
    try:
        binary = podman.podman_binary()
        version = podman.podman_version(dict(os.environ))
    except ToolingError as exc:
        return _finding("podman", "FAIL", str(exc), "installed", exc.hint or "")
    return _finding("podman", "PASS", f"{version} ({binary})", "installed")


def _networks() -> list[dict[str, Any]]:
    result = podman.run(["network", "ls", "--format", "json"], env=dict(os.environ))
    listed = json.loads(result.stdout or "[]")
    return listed if isinstance(listed, list) else []


def _subnets(network: dict[str, Any]) -> list[str]:
    return [str(s.get("subnet")) for s in network.get("subnets") or [] if isinstance(s, dict)]


NAMES = "names: none from podman (made with --disable-dns); the nodes' /etc/hosts gives them"


def sandbox_network(settings: SandboxSettings) -> Finding:
    """Can `tooling sandbox up` have its network: the same one already, or its subnet free for a new one.

    The sandbox needs no DNS plugin: it makes its network with --disable-dns, so every launch and probe
    works from addresses (as on clusters whose names resolve badly), and the common role writes the
    nodes' names into /etc/hosts for the tools that want names.
    """
    check, expected = "sandbox network", f"{settings.network}: {settings.subnet}, no DNS"
    try:
        networks = _networks()
    except ToolingError as exc:
        return _finding(check, "FAIL", str(exc), expected, exc.hint or "")
    except ValueError as exc:
        return _finding(check, "FAIL", f"`podman network ls` printed no JSON: {exc}", expected, "")
    own = next((n for n in networks if n.get("name") == settings.network), None)
    if own is not None:
        subnets = _subnets(own)
        if settings.subnet in subnets:
            return _finding(check, "PASS", f"{settings.network} exists, {settings.subnet}; {NAMES}", expected)
        return _finding(
            check,
            "FAIL",
            f"{settings.network} exists with {', '.join(subnets) or 'no subnet'}",
            expected,
            f"remove it (`podman network rm {settings.network}`) or use its subnet (DDP_SANDBOX_SUBNET)",
        )
    wanted = ipaddress.ip_network(settings.subnet)
    for network in networks:
        for subnet in _subnets(network):
            try:
                taken = ipaddress.ip_network(subnet)
            except ValueError:
                continue
            if taken.version == wanted.version and taken.overlaps(wanted):
                return _finding(
                    check,
                    "FAIL",
                    f"{settings.subnet} overlaps network {network.get('name')!r} ({subnet})",
                    expected,
                    "pick a free subnet with `tooling sandbox up --subnet` (or DDP_SANDBOX_SUBNET)",
                )
    if podman.is_rootless() and not os.path.exists("/dev/net/tun"):
        return _finding(
            check,
            "FAIL",
            "rootless podman and no /dev/net/tun",
            expected,
            "rootless container networks need the tun device: allow it, or run the sandbox as root",
        )
    return _finding(check, "PASS", f"not made yet; {settings.subnet} is free; {NAMES}", expected)


def key_file(path: Path, used_by: str) -> Finding:
    """A private SSH key ssh will use: it exists, is ours, and only we can read it (ssh refuses it else)."""
    check, expected = f"ssh key ({used_by})", "a file of this user's, mode 0600 or 0400"
    try:
        info = path.stat()
    except FileNotFoundError:
        return _finding(
            check, "FAIL", f"{path}: missing", expected, f"create it or fix the path {used_by} names"
        )
    except OSError as exc:
        return _finding(check, "FAIL", f"{path}: {exc.strerror}", expected, "make it readable by this user")
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        return _finding(check, "FAIL", f"{path}: not a file", expected, f"point {used_by} at the key file")
    if info.st_uid != os.geteuid():
        return _finding(
            check, "FAIL", f"{path}: owned by uid {info.st_uid}", expected, f"chown {os.geteuid()} {path}"
        )
    if mode & 0o077:
        # OpenSSH refuses a private key others can read ("UNPROTECTED PRIVATE KEY FILE").
        return _finding(check, "FAIL", f"{path}: mode {mode:04o}", expected, f"chmod 600 {path}")
    return _finding(check, "PASS", f"{path}: mode {mode:04o}", expected)


def sandbox_key(settings: SandboxSettings) -> Finding:
    """The sandbox's key, made by `tooling sandbox up`; none yet is fine until then."""
    if not settings.key_path.exists():
        return _finding(
            "ssh key (sandbox)",
            "SKIP",
            f"{settings.key_path}: not made yet",
            "made by `tooling sandbox up`",
        )
    return key_file(settings.key_path, "sandbox")


def inventory_keys(inventory: dict[str, Any]) -> list[Finding]:
    """The private keys the inventory's hosts name (ansible_ssh_private_key_file), each checked once."""
    hostvars = (inventory.get("_meta") or {}).get("hostvars") or {}
    named: dict[Path, list[str]] = {}
    for host, values in sorted(hostvars.items()):
        value = (values or {}).get("ansible_ssh_private_key_file") or (values or {}).get(
            "ansible_private_key_file"
        )
        if value:
            named.setdefault(Path(str(value)).expanduser(), []).append(host)
    if not named:
        return [
            _finding(
                "ssh key (inventory)",
                "SKIP",
                "the inventory names no key",
                "ansible_ssh_private_key_file",
                "ssh uses its own defaults (~/.ssh/id_*, the agent)",
            )
        ]
    return [key_file(path, f"inventory: {', '.join(hosts[:3])}") for path, hosts in named.items()]


def chosen_inventory(given: Path | None) -> tuple[Path, str]:
    """The inventory in use and why: --inventory, else the latest deployment's, else ansible.cfg's."""
    from tooling.inventory import default_inventory
    from tooling.job import records

    if given is not None:
        return given.resolve(), "--inventory"
    latest = records.recorded()
    if latest:
        return Path(latest[-1].inventory), f"the latest deployment ({latest[-1].run_id})"
    return default_inventory(), "ansible.cfg (no deployment recorded)"


def inventory_loads(path: Path, why: str) -> tuple[Finding, dict[str, Any] | None]:
    """The inventory loads as every command reads it (files checked, vault, safe names); its data if so."""
    from tooling.inventory import all_hosts, load_inventory

    check, expected = "inventory", f"loads ({why})"
    try:
        inventory = load_inventory(path)
    except ConfigError as exc:
        problems = "; ".join(exc.problems[:3])
        return _finding(check, "FAIL", f"{exc.source}: {problems}", expected, "fix the file it names"), None
    except ToolingError as exc:
        return _finding(check, "FAIL", f"{path}: {exc}", expected, exc.hint or "fix the inventory"), None
    hosts = len(all_hosts(inventory))
    return _finding(check, "PASS", f"{path}: {hosts} host(s)", expected), inventory
