"""Life-cycle decisions with podman faked: what `status` reports, what `up` refuses, what `down` removes."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from ddp.atomic import atomic_write_json
from tooling.console import ToolingError
from tooling.sandbox import cluster, hostnet, image, podman
from tooling.sandbox import settings as settings_module
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


def _create_args(settings: SandboxSettings, host: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    recorder = Recorder()
    monkeypatch.setattr(podman, "run", recorder)
    cluster._create_container(settings, host, allocate(settings.subnet, settings.host_names)[host], {})
    (args,) = recorder.calls
    return args


def test_nodes_get_the_cpu_limit_asked_for_and_the_monitor_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "check_cpus_per_node", lambda value: value)
    limited = dataclasses.replace(_settings(tmp_path), cpus_per_node=0.5)
    node = _create_args(limited, "node1", monkeypatch)
    assert node[node.index("--cpus") + 1] == "0.5"
    assert node.index("--cpus") < node.index(limited.image)  # an option of `run`, not of the command
    assert "--cpus" not in _create_args(limited, "monitor", monkeypatch)
    # The default stays as it was: no limit, so the suite's sandbox runs as before.
    assert "--cpus" not in _create_args(_settings(tmp_path), "node1", monkeypatch)


@pytest.mark.parametrize("value", [0.0, -1.0, 0.001, 2.5])
def test_a_cpu_limit_outside_the_host_is_refused_naming_the_setting(
    value: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "host_cpus", lambda: 2)
    with pytest.raises(ToolingError, match=r"--cpus-per-node=.*from 0\.01 to 2 \(this machine has 2\)"):
        settings_module.check_cpus_per_node(value)
    assert settings_module.check_cpus_per_node(0.5) == 0.5
    assert settings_module.check_cpus_per_node(2) == 2
    assert settings_module.check_cpus_per_node(None) is None


@pytest.mark.parametrize(("raw", "words"), [("half", "expected a number of CPUs"), ("9", "from 0.01 to 2")])
def test_the_environment_variable_is_checked_the_same_way(
    raw: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "host_cpus", lambda: 2)
    monkeypatch.setenv(settings_module.CPUS_ENV, raw)
    with pytest.raises(ToolingError, match=f"{settings_module.CPUS_ENV}={raw}: .*{words}"):
        SandboxSettings()
    monkeypatch.setenv(settings_module.CPUS_ENV, "0.25")
    assert SandboxSettings().cpus_per_node == 0.25
    monkeypatch.delenv(settings_module.CPUS_ENV)
    assert SandboxSettings().cpus_per_node is None


@pytest.mark.parametrize(("recorded", "asked"), [(0.5, None), (None, 0.5), (0.5, 1.0)])
def test_up_refuses_a_sandbox_made_with_another_cpu_limit(
    tmp_path: Path, recorded: float | None, asked: float | None
) -> None:
    settings = dataclasses.replace(_settings(tmp_path), cpus_per_node=asked)
    expected = {settings.container_name(h): h for h in settings.host_names}
    existing = dict.fromkeys(expected, "running")
    state = {"subnet": settings.subnet, "cpus_per_node": recorded}
    with pytest.raises(ToolingError, match="runs nodes of") as err:
        cluster._refuse_mismatch(settings, state, existing, expected)
    assert err.value.hint and "--cpus-per-node" in err.value.hint
    # The same value, or a state from before the option (no key: no limit) asked without one, passes.
    cluster._refuse_mismatch(dataclasses.replace(settings, cpus_per_node=recorded), state, existing, expected)
    cluster._refuse_mismatch(_settings(tmp_path), {"subnet": settings.subnet}, existing, expected)


def test_nodes_that_ask_for_every_cpu_of_the_host_are_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "host_cpus", lambda: 2)
    warning = settings_module.overcommit_warning(0.5, 4)
    assert warning and "4 nodes x 0.5 CPU ask for all 2 CPUs" in warning and "below 0.5 CPU" in warning
    assert settings_module.overcommit_warning(0.4, 4) is None
    assert settings_module.overcommit_warning(None, 4) is None
