"""Life-cycle decisions with podman faked: what `status` reports, what `up` refuses, what `down` removes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ddp.atomic import atomic_write_json
from tooling.console import ToolingError
from tooling.sandbox import cluster, hostnet, image, podman
from tooling.sandbox.addresses import allocate
from tooling.sandbox.settings import SandboxSettings


@pytest.fixture(autouse=True)
def _fake_ip_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing here may touch the host's real /proc/sys/net/ipv4/ip_forward."""
    knob = tmp_path / "ip_forward"
    knob.write_text("1\n")
    monkeypatch.setattr(hostnet, "IP_FORWARD", knob)
    return knob


def _settings(tmp_path: Path, nodes: int = 2) -> SandboxSettings:
    return SandboxSettings(
        nodes=nodes, prefix="t-sbx", state_dir=tmp_path / "state", inventory_dir=tmp_path / "inv"
    )


def _write_state(settings: SandboxSettings) -> None:
    endpoints = allocate(settings.subnet, settings.host_names)
    hosts = {h: e.__dict__ for h, e in endpoints.items()}
    atomic_write_json(
        settings.state_file, {"subnet": settings.subnet, "hosts": hosts, "ip_forward_before": "0"}
    )


def test_status_orders_hosts_and_names_why_each_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    _write_state(settings)
    monkeypatch.setattr(
        cluster,
        "list_containers",
        lambda s, env: {"t-sbx-node1": "running", "t-sbx-monitor": "running", "t-sbx-node2": "exited"},
    )
    monkeypatch.setattr(
        cluster,
        "check_all",
        lambda endpoints, *a, **k: {h: ("timed out" if h == "monitor" else None) for h in endpoints},
    )
    rows = cluster.status(settings, env={})
    assert [r.host for r in rows] == ["node1", "node2", "monitor"]
    assert [(r.state, r.ssh_problem) for r in rows] == [
        ("running", None),
        ("exited", "container exited"),
        ("running", "timed out"),
    ]
    assert [r.address for r in rows] == ["10.213.31.11", "10.213.31.12", "10.213.31.10"]


def test_no_sandbox_means_an_empty_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "list_containers", lambda s, env: {})
    assert cluster.status(_settings(tmp_path), env={}) == []


def test_up_refuses_a_sandbox_of_another_size(tmp_path: Path) -> None:
    settings = _settings(tmp_path, nodes=1)
    existing = {"t-sbx-node1": "running", "t-sbx-node2": "running"}
    expected = {settings.container_name(h): h for h in settings.host_names}
    with pytest.raises(ToolingError, match="t-sbx-node2"):
        cluster._refuse_mismatch(settings, None, existing, expected)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        if args[:2] == ["network", "inspect"]:
            return subprocess.CompletedProcess(
                args, 0, '[{"subnets": [], "labels": {"ddp.sandbox.prefix": "t"}}]', ""
            )
        if args[:2] == ["image", "exists"]:
            return subprocess.CompletedProcess(args, 0, "", "")
        if args[0] == "rmi":
            return subprocess.CompletedProcess(args, 2, "", "image is in use by a container")
        return subprocess.CompletedProcess(args, 0, "", "")


def test_down_removes_labelled_containers_network_and_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    _write_state(settings)
    settings.key_path.write_text("key")
    recorder = Recorder()
    monkeypatch.setattr(podman, "run", recorder)
    monkeypatch.setattr(podman.shutil, "which", lambda name, **_: f"/usr/bin/{name}")
    monkeypatch.setattr(podman, "podman_env", lambda *a, **k: {})
    monkeypatch.setattr(cluster, "list_containers", lambda s, env: {"t-sbx-node1": "running"})
    monkeypatch.setattr(image, "cache_dir", lambda: tmp_path / "cache")
    knob = tmp_path / "ip_forward"
    done = cluster.down(settings, purge=True)
    assert ["rm", "--force", "--time", "5", "t-sbx-node1"] in recorder.calls
    assert ["network", "rm", "t-sbx"] in recorder.calls
    assert ["rmi", "localhost/ddp-node:bookworm"] in recorder.calls  # never --force: others may use it
    assert any("kept image" in line for line in done)
    assert not settings.state_file.exists() and not settings.key_path.exists()
    assert knob.read_text().strip() == "0"  # recorded as 0 at `up`, nothing else running


def test_a_container_that_died_while_booting_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        if args[0] == "inspect":
            return subprocess.CompletedProcess(args, 0, "exited 255\n", "")
        if args[0] == "logs":
            return subprocess.CompletedProcess(args, 0, "Failed to create /init.scope control group\n", "")
        return subprocess.CompletedProcess(
            args, 125, "", "can only create exec sessions on running containers"
        )

    monkeypatch.setattr(podman, "run", fake)
    with pytest.raises(ToolingError) as err:
        cluster._wait_for_boot("t-sbx-node1", {})
    assert "t-sbx-node1: the container exited (code 255)" in str(err.value)
    assert "init.scope" in str(err.value) and err.value.hint and "cgroup" in err.value.hint
