"""Quick read-only commands on nodes over SSH (paramiko), in parallel, with the inventory's connection
settings: user, port, key and the host-key policy (UserKnownHostsFile / StrictHostKeyChecking).

For looking (rank status files, log tails, reachability), never for changing a node: that is Ansible's job.
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SshTarget:
    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    known_hosts: str | None = None
    strict_host_keys: bool = True

    @classmethod
    def from_hostvars(cls, name: str, hostvars: dict[str, Any]) -> SshTarget:
        args = shlex.split(str(hostvars.get("ansible_ssh_common_args", "")))
        options: dict[str, str] = {}
        for i, arg in enumerate(args):
            if arg == "-o" and i + 1 < len(args):
                key, _, value = args[i + 1].partition("=")
                options[key.lower()] = value
        key_file = hostvars.get("ansible_ssh_private_key_file") or hostvars.get("ansible_private_key_file")
        return cls(
            name=name,
            address=str(hostvars.get("ansible_host", name)),
            port=int(hostvars.get("ansible_port", 22)),
            user=str(hostvars.get("ansible_user", "root")),
            key_file=str(Path(key_file).expanduser()) if key_file else None,
            known_hosts=options.get("userknownhostsfile"),
            strict_host_keys=options.get("stricthostkeychecking", "yes").lower() != "no",
        )


@dataclass(frozen=True)
class RemoteResult:
    host: str
    rc: int | None  # None: the command never ran (see error)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None  # why the host could not be reached, in words


def _reason(exc: Exception, target: SshTarget) -> str:
    import paramiko

    where = f"{target.user}@{target.address}:{target.port}"
    if isinstance(exc, paramiko.BadHostKeyException):
        return f"{where}: host key differs from {target.known_hosts or 'known_hosts'}"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"{where}: authentication failed (key {target.key_file or 'default'})"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        text = getattr(errors[0], "strerror", None) if errors else None
        return f"{where}: {text or exc}"
    if isinstance(exc, TimeoutError):
        return f"{where}: timed out"
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or exc}"
    return f"{where}: {exc}"


def run_command(target: SshTarget, command: str, timeout_s: float = 10.0) -> RemoteResult:
    # paramiko is imported where it is used: it costs a noticeable part of a second, and the CLI's --help
    # must not pay for it.
    import paramiko

    client = paramiko.SSHClient()
    try:
        if target.known_hosts and Path(target.known_hosts).is_file():
            client.load_host_keys(target.known_hosts)
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(
            paramiko.RejectPolicy() if target.strict_host_keys else paramiko.AutoAddPolicy()
        )
        client.connect(
            target.address,
            port=target.port,
            username=target.user,
            key_filename=target.key_file,
            timeout=timeout_s,
            banner_timeout=timeout_s,
            auth_timeout=timeout_s,
            allow_agent=target.key_file is None,
            look_for_keys=target.key_file is None,
        )
        _, stdout, stderr = client.exec_command(command, timeout=timeout_s)
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
        return RemoteResult(target.name, stdout.channel.recv_exit_status(), out, err)
    except (paramiko.SSHException, OSError) as exc:
        return RemoteResult(target.name, None, error=_reason(exc, target))
    finally:
        client.close()


def run_everywhere(
    targets: list[SshTarget], command: str, timeout_s: float = 10.0
) -> dict[str, RemoteResult]:
    """host -> result, in parallel so one dead node costs one timeout, not one per node."""
    return run_each([(target, command) for target in targets], timeout_s)


def run_each(commands: list[tuple[SshTarget, str]], timeout_s: float = 10.0) -> dict[str, RemoteResult]:
    """host -> result of that host's own command, all in parallel (run_everywhere: the same command)."""
    if not commands:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(commands))) as pool:
        futures = {t.name: pool.submit(run_command, t, command, timeout_s) for t, command in commands}
        return {name: future.result() for name, future in futures.items()}
