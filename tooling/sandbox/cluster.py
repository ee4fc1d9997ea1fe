"""The sandbox's life cycle: up, status, down. Containers are found by label, so `down` removes exactly
what `up` made (and nothing else), even after a crash or with a different --nodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_json, atomic_write_text
from tooling.console import CheckFailed, ToolingError, console
from tooling.sandbox import hostnet, inventory, keys, podman
from tooling.sandbox.addresses import Endpoint, allocate, host_offset
from tooling.sandbox.image import ensure_image, remove_image
from tooling.sandbox.settings import MONITOR_HOST, SandboxSettings, check_cpus_per_node
from tooling.sandbox.sshcheck import check_all

LABEL = "ddp.sandbox.prefix"
HOST_LABEL = "ddp.sandbox.host"
BOOT_TIMEOUT_S = 90.0


@dataclass
class HostStatus:
    host: str
    container: str
    state: str  # podman's state ("running", "exited", ...) or "missing"
    address: str
    ssh_problem: str | None = None  # None: SSH answers

    @property
    def ok(self) -> bool:
        return self.state == "running" and self.ssh_problem is None


@dataclass
class UpResult:
    already_up: bool
    hosts: list[HostStatus] = field(default_factory=list)
    image_action: str = "present"
    seconds: float = 0.0
    inventory: Path | None = None


# --- state file ------------------------------------------------------------------------------------


def load_state(settings: SandboxSettings) -> dict[str, Any] | None:
    try:
        return json.loads(settings.state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ToolingError(
            f"{settings.state_file}: not valid JSON ({exc})", hint="remove the sandbox with `down`, then `up`"
        ) from None


def endpoints_from_state(state: dict[str, Any]) -> dict[str, Endpoint]:
    return {host: Endpoint(**data) for host, data in state.get("hosts", {}).items()}


@contextlib.contextmanager
def _locked(settings: SandboxSettings) -> Iterator[None]:
    """One `up`/`down` at a time per state dir: two racing `up`s would fight over names and addresses."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with (settings.state_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ToolingError(
                f"another `tooling sandbox` command is working on {settings.state_dir}",
                hint="wait for it to finish, then run this again",
            ) from None
        yield


# --- podman queries --------------------------------------------------------------------------------


def list_containers(settings: SandboxSettings, env: dict[str, str]) -> dict[str, str]:
    """container name -> state, for every container carrying this sandbox's label."""
    result = podman.run(
        ["ps", "-a", "--filter", f"label={LABEL}={settings.prefix}", "--format", "json"], env=env
    )
    entries = json.loads(result.stdout or "[]")
    return {entry["Names"][0]: entry.get("State", "unknown") for entry in entries}


def network_subnet(name: str, env: dict[str, str]) -> tuple[bool, str | None, bool]:
    """(exists, first subnet, carries our label)."""
    result = podman.run(["network", "inspect", name], env=env, check=False)
    if result.returncode != 0:
        return False, None, False
    data = json.loads(result.stdout)[0]
    subnets = data.get("subnets") or []
    return True, (subnets[0]["subnet"] if subnets else None), LABEL in (data.get("labels") or {})


def _tolerant_env(settings: SandboxSettings) -> dict[str, str]:
    """`down` and `status` must work even when the probe cannot run (e.g. the image was removed)."""
    try:
        return podman.podman_env(settings.state_dir)
    except ToolingError:
        return dict(os.environ)


# --- up --------------------------------------------------------------------------------------------


def up(settings: SandboxSettings, *, mirror: str | None = None, keep_on_failure: bool = False) -> UpResult:
    """Start (or complete) the sandbox; a no-op when it is already fully up."""
    with _locked(settings):
        return _up(settings, mirror=mirror, keep_on_failure=keep_on_failure)


def _up(settings: SandboxSettings, *, mirror: str | None, keep_on_failure: bool) -> UpResult:
    start = time.monotonic()
    check_cpus_per_node(settings.cpus_per_node)
    # Read before podman touches the host (building, probing, networks), so `down` can put it back.
    ip_forward_before = hostnet.read_ip_forward()
    podman.podman_binary()
    image = ensure_image(mirror=mirror, image=settings.image)
    if image.action != "present":
        console.print(f"image {image.image} {image.action} in {image.seconds:.0f} s")
    env = podman.podman_env(settings.state_dir)
    state = load_state(settings)
    endpoints = allocate(settings.subnet, settings.host_names, rootless=podman.is_rootless())
    expected = {settings.container_name(h): h for h in settings.host_names}
    existing = list_containers(settings, env)
    _refuse_mismatch(settings, state, existing, expected)

    hosts_file = settings.inventory_dir / inventory.HOSTS_FILE
    if (
        set(existing) == set(expected)
        and all(s == "running" for s in existing.values())
        and hosts_file.is_file()
        and settings.known_hosts_path.is_file()
    ):
        rows = status(settings, env=env)
        if all(row.ok for row in rows):
            # Rewritten even when nothing else changes: a newer toolkit may generate different variables.
            inventory.write_inventory(settings, endpoints)
            return UpResult(True, rows, image.action, time.monotonic() - start, hosts_file)
        # Up but not healthy (sshd stopped, keys changed by hand): redo the setup steps below.
        for row in rows:
            if not row.ok:
                console.print(f"[yellow]{row.host}: {row.ssh_problem}; repairing[/yellow]")

    created: list[str] = []
    made_network = False
    fresh_state = state is None
    try:
        state = state if state is not None else {"ip_forward_before": ip_forward_before}
        state.update(
            prefix=settings.prefix,
            subnet=settings.subnet,
            nodes=settings.nodes,
            monitor=settings.monitor,
            image=settings.image,
            cpus_per_node=settings.cpus_per_node,
            hosts={h: asdict(e) for h, e in endpoints.items()},
        )
        atomic_write_json(settings.state_file, state)
        made_network = _ensure_network(settings, env)
        public_key = keys.ensure_keypair(settings.key_path)
        for host in settings.host_names:
            name = settings.container_name(host)
            if name not in existing:
                _create_container(settings, host, endpoints[host], env)
                created.append(name)
            elif existing[name] != "running":
                podman.run(["start", name], env=env)
        # Booting, keying and scanning are waits on each container: do them side by side.
        with ThreadPoolExecutor(max_workers=min(8, len(settings.host_names))) as pool:
            scans = list(
                pool.map(
                    lambda host: _prepare_host(settings, host, endpoints[host], created, public_key, env),
                    settings.host_names,
                )
            )
        atomic_write_text(
            settings.known_hosts_path, "".join(f"{line}\n" for lines in scans for line in lines)
        )
        written = inventory.write_inventory(settings, endpoints)
        hosts = status(settings, env=env)
        broken = [h for h in hosts if not h.ok]
        if broken:
            raise CheckFailed(
                "SSH does not answer on "
                + "; ".join(f"{h.host}: {h.ssh_problem or h.state}" for h in broken),
                hint=f"inspect with `podman exec -it {broken[0].container} journalctl -u ssh`",
            )
    except BaseException:
        if not keep_on_failure:
            _rollback(settings, created, made_network, fresh_state, env)
        raise
    return UpResult(False, hosts, image.action, time.monotonic() - start, written)


def _refuse_mismatch(
    settings: SandboxSettings,
    state: dict[str, Any] | None,
    existing: dict[str, str],
    expected: dict[str, str],
) -> None:
    extra = sorted(set(existing) - set(expected))
    if extra:
        raise ToolingError(
            f"sandbox {settings.prefix!r} already has containers {', '.join(extra)} that a "
            f"{settings.nodes}-node sandbox does not have",
            hint="run `tooling sandbox down` first, or `up` with the same --nodes as before",
        )
    if state and existing and state.get("subnet") != settings.subnet:
        raise ToolingError(
            f"sandbox {settings.prefix!r} runs on subnet {state.get('subnet')}, not {settings.subnet}",
            hint="run `tooling sandbox down` first to change the subnet",
        )
    # A container's CPU limit is fixed when it is created: nodes of two capacities would make one sandbox
    # that is neither. States from before the option have no key, i.e. no limit.
    if state and existing and state.get("cpus_per_node") != settings.cpus_per_node:
        raise ToolingError(
            f"sandbox {settings.prefix!r} runs nodes of {_capacity(state.get('cpus_per_node'))}, "
            f"not {_capacity(settings.cpus_per_node)}",
            hint="run `tooling sandbox down` first to change --cpus-per-node "
            "(or DDP_SANDBOX_CPUS_PER_NODE), or `up` with the value it has",
        )


def _capacity(cpus: float | None) -> str:
    return "no CPU limit" if cpus is None else f"{cpus:g} CPU each"


def _ensure_network(settings: SandboxSettings, env: dict[str, str]) -> bool:
    exists, subnet, ours = network_subnet(settings.network, env)
    if exists:
        if subnet != settings.subnet:
            raise ToolingError(
                f"podman network {settings.network!r} exists with subnet {subnet}, not {settings.subnet}"
                + ("" if ours else " (and was not made by tooling sandbox)"),
                hint=f"remove it (`podman network rm {settings.network}`) or pass --subnet {subnet}",
            )
        return False
    # No DNS on purpose, whatever podman plugins this machine has: real clusters resolve names wrongly or
    # not at all, so the launch and every probe must work from addresses alone (common's /etc/hosts gives
    # the nodes' names for the tools that want them).
    args = [
        "network", "create", "--disable-dns", "--subnet", settings.subnet,
        "--label", f"{LABEL}={settings.prefix}",
    ]  # fmt: skip
    try:
        podman.run([*args, settings.network], env=env)
    except podman.PodmanError as exc:
        raise ToolingError(
            str(exc), hint="pick a free subnet with --subnet (or DDP_SANDBOX_SUBNET)"
        ) from None
    return True


def _create_container(settings: SandboxSettings, host: str, endpoint: Endpoint, env: dict[str, str]) -> None:
    name = settings.container_name(host)
    args = [
        "run", "--detach", "--name", name, "--hostname", name,
        "--network", settings.network, "--ip", endpoint.address,
        # The default 64 MB /dev/shm breaks torch DataLoader workers ("No space left on device").
        "--systemd=always", "--shm-size=1g",
        # Role firewall loads an nftables table, as on a real node; the capability covers only the
        # container's own network namespace, never the host's rules.
        "--cap-add", "NET_ADMIN",
        "--label", f"{LABEL}={settings.prefix}", "--label", f"{HOST_LABEL}={host}",
    ]  # fmt: skip
    if endpoint.published_port is not None:
        args += ["--publish", f"127.0.0.1:{endpoint.published_port}:22"]
    if settings.cpus_per_node is not None and host in settings.node_names:
        # A CFS quota: the node never runs more than this much CPU time, however many nodes share the
        # host, as a real machine of that size would. The monitoring host is not a training node: unlimited.
        args += ["--cpus", f"{settings.cpus_per_node:g}"]
    try:
        podman.run([*args, settings.image, "/lib/systemd/systemd"], env=env)
    except podman.PodmanError as exc:
        raise ToolingError(str(exc), hint=_create_hint(str(exc), name)) from None


def _create_hint(error: str, name: str) -> str:
    if "/dev/net/tun" in error:
        # Rootless networking (slirp4netns) needs the tun device; some hosts (nested containers) deny it.
        return (
            "rootless podman here cannot open /dev/net/tun: run the sandbox as root, or allow the tun device"
        )
    if "address already in use" in error.lower() or "already allocated" in error.lower():
        return "another container holds that address or port: change --subnet or DDP_SANDBOX_SSH_PORT_BASE"
    return f"reproduce it with the `podman run` command above and read `podman logs {name}`"


def _wait_for_boot(name: str, env: dict[str, str]) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    seen = ""
    while time.monotonic() < deadline:
        result = podman.run(
            ["exec", name, "systemctl", "is-system-running"], env=env, check=False, timeout=30
        )
        seen = result.stdout.strip() or result.stderr.strip()
        if seen == "running":
            return
        if seen == "degraded":
            failed = podman.run(
                ["exec", name, "systemctl", "--failed", "--no-legend", "--plain"], env=env, check=False
            )
            units = ", ".join(line.split()[0] for line in failed.stdout.splitlines() if line.strip())
            console.print(f"[yellow]{name}: systemd is degraded (failed units: {units or '?'})[/yellow]")
            return
        if result.returncode != 0:
            _fail_if_exited(name, env)
        time.sleep(0.5)
    raise ToolingError(
        f"{name}: systemd did not finish booting in {BOOT_TIMEOUT_S:.0f} s (last state: {seen or 'none'})",
        hint=f"look at `podman logs {name}` and `podman exec {name} systemctl list-jobs`",
    )


def _fail_if_exited(name: str, env: dict[str, str]) -> None:
    """A container whose systemd died will never boot: say so now instead of after the timeout."""
    state = podman.run(
        ["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name], env=env, check=False
    ).stdout.split()
    if state and state[0] in {"exited", "stopped", "dead"}:
        logs = podman.run(["logs", "--tail", "5", name], env=env, check=False)
        tail = (logs.stdout + logs.stderr).strip() or "(no output)"
        raise ToolingError(
            f"{name}: the container exited (code {state[-1]}) while systemd was booting; "
            f"last log lines:\n{tail}",
            hint="systemd as PID 1 needs a cgroup it can write: rootless podman needs cgroup v2 with "
            "delegation; running as root works on cgroup v1 hosts",
        )


def _regenerate_host_keys(name: str, env: dict[str, str]) -> None:
    # Every container from one image would otherwise share host keys, and known_hosts would prove nothing.
    script = "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh"
    podman.run(["exec", name, "sh", "-c", script], env=env)


def _authorize(name: str, public_key: str, env: dict[str, str]) -> None:
    script = "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys"
    podman.run(["exec", "-i", name, "sh", "-c", script], env=env, input_text=public_key + "\n")


def _prepare_host(
    settings: SandboxSettings,
    host: str,
    endpoint: Endpoint,
    created: list[str],
    public_key: str,
    env: dict[str, str],
) -> list[str]:
    """Wait for systemd, give a new container its own host keys, authorize our key; return its known_hosts."""
    name = settings.container_name(host)
    _wait_for_boot(name, env)
    if name in created:
        _regenerate_host_keys(name, env)
    else:
        # A restarted node on a busy host may come up "degraded" with sshd failed or still queued: ask for
        # it rather than wait for a unit that will never start.
        podman.run(["exec", name, "systemctl", "start", "ssh"], env=env, check=False, timeout=60)
    _authorize(name, public_key, env)
    return keys.keyscan(host, endpoint)


def _rollback(
    settings: SandboxSettings, created: list[str], made_network: bool, fresh_state: bool, env: dict[str, str]
) -> None:
    """Undo what this `up` made, so a failed `up` leaves the host as it was."""
    console.print("[yellow]up failed: removing what it created[/yellow]")
    if created:
        podman.run(["rm", "--force", "--time", "2", *created], env=env, check=False)
    if made_network:
        podman.run(["network", "rm", settings.network], env=env, check=False)
    if fresh_state:
        inventory.remove_inventory(settings)
        _forget_state(settings, env)


# --- status ----------------------------------------------------------------------------------------


def status(settings: SandboxSettings, *, env: dict[str, str] | None = None) -> list[HostStatus]:
    env = env or _tolerant_env(settings)
    state = load_state(settings)
    containers = list_containers(settings, env)
    if state is None and not containers:
        return []
    endpoints = endpoints_from_state(state) if state else {}
    names = list(endpoints) or [n.removeprefix(settings.prefix + "-") for n in containers]
    hosts = sorted(set(names), key=_host_order)
    rows = [
        HostStatus(
            host,
            settings.container_name(host),
            containers.get(settings.container_name(host), "missing"),
            endpoints[host].address if host in endpoints else "?",
        )
        for host in hosts
    ]
    running = {r.host: endpoints[r.host] for r in rows if r.state == "running" and r.host in endpoints}
    answers = check_all(running, settings.key_path, settings.known_hosts_path)
    for row in rows:
        if row.state != "running":
            row.ssh_problem = f"container {row.state}"
        elif row.host not in endpoints:
            row.ssh_problem = f"not in {settings.state_file}"
        else:
            row.ssh_problem = answers[row.host]
    return rows


def _host_order(host: str) -> tuple[int, str]:
    """Nodes in number order, then the monitoring host; unknown names last."""
    try:
        offset = host_offset(host)
    except ValueError:
        return (1 << 30, host)
    return (offset if host != MONITOR_HOST else 1 << 20, host)


# --- down ------------------------------------------------------------------------------------------


def down(settings: SandboxSettings, *, purge: bool = False) -> list[str]:
    """Remove containers, network, inventory and state; returns what was done, in sentences."""
    podman.podman_binary()
    with _locked(settings):
        return _down(settings, purge=purge)


def _down(settings: SandboxSettings, *, purge: bool) -> list[str]:
    env = _tolerant_env(settings)
    done: list[str] = []
    containers = list_containers(settings, env)
    if containers:
        podman.run(["rm", "--force", "--time", "5", *sorted(containers)], env=env, timeout=120)
        done.append(f"removed containers {', '.join(sorted(containers))}")
    exists, _, ours = network_subnet(settings.network, env)
    if exists and ours:
        podman.run(["network", "rm", settings.network], env=env)
        done.append(f"removed network {settings.network}")
    elif exists:
        done.append(f"kept network {settings.network}: it was not made by tooling sandbox")
    if inventory.remove_inventory(settings):
        done.append(f"removed inventory {settings.inventory_dir}")
    if settings.state_file.is_file():
        done.append(_forget_state(settings, env))
    if purge:
        done.append(remove_image(settings.image))
    return done


def _forget_state(settings: SandboxSettings, env: dict[str, str]) -> str:
    state = load_state(settings) or {}
    others = podman.run(["ps", "--quiet"], env=env, check=False).stdout.strip()
    message = hostnet.restore_ip_forward(state.get("ip_forward_before"), others_running=bool(others))
    for path in (settings.state_file, settings.known_hosts_path, settings.key_path,
                 settings.key_path.with_name(settings.key_path.name + ".pub")):  # fmt: skip
        path.unlink(missing_ok=True)
    return message
