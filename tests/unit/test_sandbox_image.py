from __future__ import annotations

import pytest

from tooling.console import ToolingError
from tooling.sandbox import image
from tooling.sandbox.mirror import Mirrors

MIRRORS = Mirrors("http://mirror.example.org/debian", "http://mirror.example.org/debian-security", "test")


def test_the_build_script_installs_what_ansible_needs_and_no_workload(tmp_path) -> None:
    script = image.build_script(
        "/usr/sbin/debootstrap", tmp_path / "r", tmp_path / "r.tar", MIRRORS, "bookworm"
    )
    include = next(line for line in script.splitlines() if "--variant=minbase" in line)
    for package in ("python3-apt", "openssh-server", "systemd-sysv", "iputils-ping", "ca-certificates"):
        assert package in include
    for workload in ("prometheus", "openmpi", "torch"):
        assert workload not in include
    assert include.endswith('bookworm "$rootfs" http://mirror.example.org/debian')
    assert "URIs: http://mirror.example.org/debian-security" in script
    assert 'rm -f "$rootfs"/etc/ssh/ssh_host_*' in script
    assert "ssh-keygen -A" in script


def test_the_cache_key_follows_the_mirror() -> None:
    other = Mirrors("http://other.example.org/debian", None, "test")
    assert image.cache_key(MIRRORS) != image.cache_key(other)
    assert image.cache_key(MIRRORS) == image.cache_key(MIRRORS)


def test_missing_debootstrap_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image.shutil, "which", lambda *a, **k: None)
    with pytest.raises(ToolingError) as err:
        image.find_debootstrap()
    assert "debootstrap is not installed" in str(err.value)
    assert err.value.hint and "apt-get install debootstrap" in err.value.hint


def test_a_failed_build_shows_the_end_of_the_log(tmp_path) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(ToolingError) as err:
        image._run_logged(
            ["sh", "-c", "echo 'E: Could not download packages'; exit 1"], log, "debootstrap of bookworm"
        )
    assert "debootstrap of bookworm failed (exit 1)" in str(err.value)
    assert "Could not download" in str(err.value) and str(log) in str(err.value)
    assert err.value.hint and "--mirror" in err.value.hint
