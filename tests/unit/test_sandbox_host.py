"""Host-side helpers: ip_forward restore, the SSH key, known_hosts names, the reachability probe."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tooling.sandbox import hostnet, keys
from tooling.sandbox.addresses import Endpoint
from tooling.sandbox.sshcheck import check_all, ssh_answers


def test_ip_forward_is_restored_when_nothing_else_runs(tmp_path: Path) -> None:
    knob = tmp_path / "ip_forward"
    knob.write_text("1\n")
    message = hostnet.restore_ip_forward("0", others_running=False, path=knob)
    assert knob.read_text().strip() == "0" and "restored to 0" in message


def test_ip_forward_is_kept_while_other_containers_need_it(tmp_path: Path) -> None:
    knob = tmp_path / "ip_forward"
    knob.write_text("1\n")
    message = hostnet.restore_ip_forward("0", others_running=True, path=knob)
    assert knob.read_text().strip() == "1" and "other podman containers" in message
    assert "unchanged" in hostnet.restore_ip_forward("1", others_running=False, path=knob)


def test_keypair_is_private_and_stable(tmp_path: Path) -> None:
    key = tmp_path / "state" / "id_ed25519"
    public = keys.ensure_keypair(key)
    assert public.startswith("ssh-ed25519 ")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert keys.ensure_keypair(key) == public
    loaded = serialization.load_ssh_private_key(key.read_bytes(), password=None)
    assert (
        loaded.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
        in public
    )


def test_known_hosts_names_follow_ssh_rules() -> None:
    assert keys.known_hosts_name(Endpoint("10.0.0.11", "10.0.0.11")) == "10.0.0.11"
    assert keys.known_hosts_name(Endpoint("10.0.0.11", "127.0.0.1", 22211, 22211)) == "[127.0.0.1]:22211"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ssh_probe_names_the_reason(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    keys.ensure_keypair(key)
    endpoint = Endpoint("127.0.0.1", "127.0.0.1", _closed_port())
    reason = ssh_answers(endpoint, key, tmp_path / "known_hosts", timeout_s=2)
    assert reason is not None and "refused" in reason
    assert check_all({"node1": endpoint}, key, tmp_path / "known_hosts", timeout_s=2)["node1"] == reason
