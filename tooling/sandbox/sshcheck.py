"""Does a host's sshd answer with the sandbox key and the pinned host key? A real login, not a port poke."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from tooling.sandbox.addresses import Endpoint

if TYPE_CHECKING:
    import paramiko


def ssh_answers(endpoint: Endpoint, key_file: Path, known_hosts: Path, timeout_s: float = 5.0) -> str | None:
    """None when `root@host` logs in and runs `true`; otherwise the reason, in words."""
    # paramiko is imported where it is used: it costs a noticeable part of a second, and the CLI's --help
    # must not pay for it.
    import paramiko

    client = paramiko.SSHClient()
    try:
        if known_hosts.is_file():
            client.load_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            endpoint.ssh_host,
            port=endpoint.ssh_port,
            username="root",
            key_filename=str(key_file),
            timeout=timeout_s,
            banner_timeout=timeout_s,
            auth_timeout=timeout_s,
            allow_agent=False,
            look_for_keys=False,
        )
        _, stdout, _ = client.exec_command("true", timeout=timeout_s)
        status = stdout.channel.recv_exit_status()
        return None if status == 0 else f"logged in, but `true` exited {status}"
    except paramiko.BadHostKeyException:
        return f"host key differs from {known_hosts} (the node was recreated?)"
    except paramiko.AuthenticationException:
        return f"key {key_file} rejected"
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            return f"host key not in {known_hosts}"
        return f"ssh error: {exc}"
    except TimeoutError:
        return f"timed out after {timeout_s:.0f} s"
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        return _errno_reason(exc)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        client.close()


def _errno_reason(exc: paramiko.ssh_exception.NoValidConnectionsError) -> str:
    errors = list(exc.errors.values())
    first = errors[0] if errors else exc
    text = getattr(first, "strerror", None) or str(first)
    if "refused" in text.lower():
        return "connection refused (sshd not listening)"
    return text


def check_all(
    endpoints: dict[str, Endpoint], key_file: Path, known_hosts: Path, timeout_s: float = 5.0
) -> dict[str, str | None]:
    """host -> None (answers) or the reason; tried in parallel so one dead node costs one timeout."""
    if not endpoints:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(endpoints))) as pool:
        futures = {
            h: pool.submit(ssh_answers, e, key_file, known_hosts, timeout_s) for h, e in endpoints.items()
        }
        return {h: f.result() for h, f in futures.items()}
