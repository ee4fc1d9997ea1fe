"""The sandbox cluster end to end: up, SSH, Ansible, idempotent up, a dead node, down.

Runs under its own prefix, subnet, state dir and inventory so a developer's running sandbox is untouched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.sandbox_harness import ROOT, Sandbox, explain

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
]

PREFIX = "ddp-sbxtest"
SUBNET = "10.213.32.0/24"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path_factory.mktemp("sandbox"), PREFIX, SUBNET)
    try:
        yield box
    finally:
        box.cli("down")


def test_sandbox_lifecycle(sandbox: Sandbox) -> None:
    started = sandbox.cli("up", "--nodes", "2")
    assert started.returncode == 0, explain(started)
    hosts_file = sandbox.inventory / "hosts.yml"
    assert hosts_file.is_file()

    status = sandbox.cli("status")
    assert status.returncode == 0, explain(status)
    for host in ("node1", "node2", "monitor"):
        line = next(ln for ln in status.stdout.splitlines() if f" {host} " in ln)
        assert "running" in line and "answers" in line, status.stdout

    ansible = Path(sys.executable).with_name("ansible")
    ping = subprocess.run(
        [str(ansible), "-i", str(hosts_file), "all", "-m", "ansible.builtin.ping"],
        cwd=ROOT,
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ping.returncode == 0, explain(ping)
    for host in ("node1", "node2", "monitor"):
        assert f"{host} | SUCCESS" in ping.stdout, ping.stdout

    again = sandbox.cli("up", "--nodes", "2")
    assert again.returncode == 0, explain(again)
    assert "already up" in again.stdout

    stopped = sandbox.podman("stop", "--time", "2", f"{PREFIX}-node2")
    assert stopped.returncode == 0, stopped.stderr
    degraded = sandbox.cli("status")
    assert degraded.returncode == 1, explain(degraded)
    assert "node2" in degraded.stdout and "does not answer" in degraded.stdout
    assert "node1 (" not in degraded.stdout  # only the stopped node is named

    known_hosts = (sandbox.state_dir / "known_hosts").read_text()
    ed25519 = [line.split()[2] for line in known_hosts.splitlines() if " ssh-ed25519 " in line]
    assert len(ed25519) == 3 and len(set(ed25519)) == 3, "every node must have its own host key"

    # `up` brings the stopped node back at the same address with the same host keys.
    repaired = sandbox.cli("up", "--nodes", "2")
    assert repaired.returncode == 0, explain(repaired)
    assert sandbox.cli("status").returncode == 0
    assert (sandbox.state_dir / "known_hosts").read_text() == known_hosts
    address = sandbox.podman(
        "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", f"{PREFIX}-node2"
    )
    assert address.stdout.strip() == "10.213.32.12"

    removed = sandbox.cli("down")
    assert removed.returncode == 0, explain(removed)
    left = sandbox.podman(
        "ps", "-a", "--filter", f"label=ddp.sandbox.prefix={PREFIX}", "--format", "{{.Names}}"
    )
    assert left.stdout.strip() == ""
    assert sandbox.podman("network", "exists", PREFIX).returncode != 0
    assert not hosts_file.exists()
    assert not (sandbox.state_dir / "id_ed25519").exists()
