"""Detection of the podman environment, with every podman call faked."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tooling.console import ToolingError
from tooling.sandbox import podman
from tooling.sandbox.cli import sandbox_app

RLIMIT_ERROR = "Error: runc create failed: error setting rlimit type 7: operation not permitted"


class FakePodman:
    """Answers `podman ...` like a host where the probe succeeds only when `works(env)` says so."""

    def __init__(self, works: Callable[[dict[str, str]], bool], version: str = "4.3.1") -> None:
        self.works = works
        self.version = version
        self.probes: list[dict[str, str]] = []

    def __call__(self, args: list[str], *, env: dict[str, str] | None = None, **_: object):
        env = env or {}
        if args[0] == "version":
            return subprocess.CompletedProcess(args, 0, self.version + "\n", "")
        if args[:2] == ["image", "exists"]:
            return subprocess.CompletedProcess(args, 0, "", "")
        if args[0] == "run":
            self.probes.append(env)
            ok = self.works(env)
            return subprocess.CompletedProcess(args, 0 if ok else 126, "", "" if ok else RLIMIT_ERROR)
        raise AssertionError(f"unexpected podman call {args}")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakePodman]:
    monkeypatch.delenv("CONTAINERS_CONF", raising=False)
    monkeypatch.delenv(podman.FORCE_ENV, raising=False)
    monkeypatch.setattr(podman.shutil, "which", lambda name, **_: f"/usr/bin/{name}")

    def install(works: Callable[[dict[str, str]], bool], version: str = "4.3.1") -> FakePodman:
        fake_podman = FakePodman(works, version)
        monkeypatch.setattr(podman, "run", fake_podman)
        return fake_podman

    return install


def test_defaults_that_work_are_left_alone(fake: Callable[..., FakePodman], tmp_path: Path) -> None:
    fake(lambda env: True)
    assert "CONTAINERS_CONF" not in podman.podman_env(tmp_path)
    assert json.loads((tmp_path / podman.CACHE_NAME).read_text())["containers_conf"] is None


def test_failing_defaults_switch_to_the_project_file(fake: Callable[..., FakePodman], tmp_path: Path) -> None:
    probe = fake(lambda env: "CONTAINERS_CONF" in env)
    env = podman.podman_env(tmp_path)
    assert env["CONTAINERS_CONF"] == str(podman.PROJECT_CONTAINERS_CONF)
    assert len(probe.probes) == 2
    cached = json.loads((tmp_path / podman.CACHE_NAME).read_text())
    assert "rlimit" in cached["reason"]


def test_the_cached_answer_is_reused_until_podman_changes(
    fake: Callable[..., FakePodman], tmp_path: Path
) -> None:
    probe = fake(lambda env: "CONTAINERS_CONF" in env)
    podman.podman_env(tmp_path)
    podman.podman_env(tmp_path)
    assert len(probe.probes) == 2  # second call hit the cache
    upgraded = fake(lambda env: True, version="5.0.0")
    assert "CONTAINERS_CONF" not in podman.podman_env(tmp_path)
    assert len(upgraded.probes) == 1


def test_nothing_works_names_both_errors(fake: Callable[..., FakePodman], tmp_path: Path) -> None:
    fake(lambda env: False)
    with pytest.raises(ToolingError) as err:
        podman.podman_env(tmp_path)
    assert "with its defaults" in str(err.value) and str(podman.PROJECT_CONTAINERS_CONF) in str(err.value)
    assert not (tmp_path / podman.CACHE_NAME).exists()


def test_the_user_can_force_the_file_on_or_off(
    fake: Callable[..., FakePodman], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = fake(lambda env: True)
    monkeypatch.setenv(podman.FORCE_ENV, "1")
    assert podman.podman_env(tmp_path)["CONTAINERS_CONF"] == str(podman.PROJECT_CONTAINERS_CONF)
    monkeypatch.setenv(podman.FORCE_ENV, "0")
    assert "CONTAINERS_CONF" not in podman.podman_env(tmp_path)
    own = tmp_path / "mine.conf"
    own.write_text("[engine]\n")
    monkeypatch.setenv(podman.FORCE_ENV, str(own))
    assert podman.podman_env(tmp_path)["CONTAINERS_CONF"] == str(own)
    monkeypatch.setenv(podman.FORCE_ENV, str(tmp_path / "missing.conf"))
    with pytest.raises(ToolingError, match="no such file"):
        podman.podman_env(tmp_path)
    assert probe.probes == []


def test_a_users_own_containers_conf_is_respected(
    fake: Callable[..., FakePodman], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = fake(lambda env: False)
    monkeypatch.setenv("CONTAINERS_CONF", "/etc/mine.conf")
    assert podman.podman_env(tmp_path)["CONTAINERS_CONF"] == "/etc/mine.conf"
    assert probe.probes == []


def test_missing_podman_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(podman.shutil, "which", lambda name, **_: None)
    with pytest.raises(ToolingError) as err:
        podman.podman_env(tmp_path)
    assert "podman is not installed" in str(err.value)
    assert err.value.hint and "apt-get install podman" in err.value.hint


@pytest.mark.parametrize("command", [["up", "--nodes", "1"], ["status"], ["down"], ["image"]])
def test_cli_without_podman_prints_the_fix_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: list[str]
) -> None:
    monkeypatch.setattr(podman.shutil, "which", lambda name, **_: None)
    monkeypatch.setenv("DDP_SANDBOX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DDP_SANDBOX_INVENTORY", str(tmp_path / "inv"))
    result = CliRunner().invoke(sandbox_app, command)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_a_failing_podman_command_names_the_command_and_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(podman.shutil, "which", lambda name, **_: "/bin/false")
    with pytest.raises(podman.PodmanError, match=r"`podman network rm x` failed \(exit 1\)"):
        podman.run(["network", "rm", "x"], env={})
