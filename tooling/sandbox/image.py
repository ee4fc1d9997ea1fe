"""The node image `localhost/ddp-node:bookworm`: debootstrap a Debian rootfs, then `podman import` it.

No registry is assumed reachable, so the image is built from the host's Debian mirror. The rootfs tarball
is cached (keyed by mirror, packages and recipe) so a removed image is re-imported in seconds, and an
existing image is never rebuilt unless asked to.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tooling.console import ToolingError, console
from tooling.sandbox import podman
from tooling.sandbox.mirror import Mirrors, detect_mirrors
from tooling.sandbox.settings import IMAGE, SUITE, cache_dir

# What a node needs before any role runs: Ansible (python3, python3-apt for the apt module), SSH, systemd.
# Workload software (prometheus, openmpi, torch) is the roles' job, never baked in here.
PACKAGES = (
    "python3",
    "python3-venv",
    "python3-apt",
    "openssh-server",
    "sudo",
    "systemd",
    "systemd-sysv",
    "iproute2",
    "ca-certificates",
    "procps",
    "iputils-ping",
)
# Bump when the customisation below changes, so cached tarballs are not reused.
RECIPE_VERSION = "1"
SSH_HOSTKEYS_DROPIN = """\
# Each container generates its own host keys on first boot (the image ships none).
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""


@dataclass(frozen=True)
class BuildResult:
    image: str
    action: str  # "present", "imported", "built"
    seconds: float
    mirrors: Mirrors | None = None


def find_debootstrap() -> str:
    # /usr/sbin is often missing from a non-root PATH.
    found = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if found is None:
        raise ToolingError(
            "debootstrap is not installed; it builds the sandbox node image",
            hint="install it (Debian/Ubuntu: `sudo apt-get install debootstrap`) or run scripts/bootstrap.sh",
        )
    return found


def cache_key(mirrors: Mirrors, suite: str = SUITE) -> str:
    blob = "\n".join([RECIPE_VERSION, suite, mirrors.main, mirrors.security or "", *PACKAGES])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def rootfs_tarball(mirrors: Mirrors, suite: str = SUITE) -> Path:
    return cache_dir() / f"rootfs-{suite}-{cache_key(mirrors, suite)}.tar"


def build_script(debootstrap: str, rootfs: Path, tarball: Path, mirrors: Mirrors, suite: str) -> str:
    """One shell script, so that a rootless user can run all of it inside `podman unshare`."""
    q = shlex.quote
    sources = mirrors.deb822(suite)
    return f"""set -eu
rootfs={q(str(rootfs))}
trap 'rm -rf "$rootfs"' EXIT
rm -rf "$rootfs"  # left over by a killed build
{q(debootstrap)} --variant=minbase --include={",".join(PACKAGES)} {suite} "$rootfs" {q(mirrors.main)}
rm -f "$rootfs/etc/apt/sources.list"
mkdir -p "$rootfs/etc/apt/sources.list.d" "$rootfs/etc/systemd/system/ssh.service.d"
printf '%s' {q(sources)} > "$rootfs/etc/apt/sources.list.d/debian.sources"
printf '%s' {q(SSH_HOSTKEYS_DROPIN)} > "$rootfs/etc/systemd/system/ssh.service.d/host-keys.conf"
rm -f "$rootfs"/etc/ssh/ssh_host_* "$rootfs/etc/hostname" "$rootfs/var/lib/dbus/machine-id"
: > "$rootfs/etc/machine-id"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
tar --numeric-owner -C "$rootfs" -cf {q(str(tarball))}.part .
mv {q(str(tarball))}.part {q(str(tarball))}
"""


def _run_logged(cmd: list[str], log: Path, what: str) -> None:
    with log.open("w", encoding="utf-8") as handle:
        result = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-6:])
        raise ToolingError(
            f"{what} failed (exit {result.returncode}); last lines of {log}:\n{tail}",
            hint="check that the Debian mirror is reachable from this host (or pass --mirror URL) "
            "and that there is disk space, then run `tooling sandbox image --rebuild`",
        )


def _debootstrap_rootfs(mirrors: Mirrors, tarball: Path, suite: str) -> None:
    debootstrap = find_debootstrap()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    rootfs = tarball.parent / f"{tarball.stem}.rootfs"
    script = build_script(debootstrap, rootfs, tarball, mirrors, suite)
    cmd = ["sh", "-c", script]
    if os.geteuid() != 0:
        # A rootless user builds inside podman's user namespace, where mknod is refused; `container=lxc`
        # makes debootstrap bind-mount /dev instead of creating device nodes (and skip its mknod test).
        cmd = [podman.podman_binary(), "unshare", "env", "container=lxc", *cmd]
    try:
        _run_logged(cmd, tarball.parent / "debootstrap.log", f"debootstrap of {suite} from {mirrors.main}")
    finally:
        # The script removes the rootfs itself (a rootless one belongs to subordinate ids we cannot delete).
        Path(f"{tarball}.part").unlink(missing_ok=True)


def _import(tarball: Path, image: str, mirrors: Mirrors, suite: str) -> None:
    changes = [
        "CMD=/lib/systemd/systemd",
        "LABEL=org.opencontainers.image.title=ddp-node",
        f"LABEL=ddp.sandbox.suite={suite}",
        f"LABEL=ddp.sandbox.mirror={mirrors.main}",
        f"LABEL=ddp.sandbox.recipe={cache_key(mirrors, suite)}",
    ]
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    # The image is not there yet, so podman_env() cannot probe; importing needs no runtime settings.
    podman.run([*args, str(tarball), image], env=dict(os.environ), timeout=600)


def ensure_image(
    *, rebuild: bool = False, mirror: str | None = None, image: str = IMAGE, suite: str = SUITE
) -> BuildResult:
    """Make sure `image` exists; build it only when missing (or when `rebuild`)."""
    start = time.monotonic()
    podman.podman_binary()
    mirrors = detect_mirrors(suite, mirror)
    if not rebuild and podman.image_exists(image, dict(os.environ)):
        recipe = image_recipe(image)
        if recipe != cache_key(mirrors, suite):
            console.print(
                f"[yellow]{image} was built from another recipe or mirror ({recipe}); "
                "`tooling sandbox image --rebuild` brings it up to date[/yellow]"
            )
        return BuildResult(image, "present", time.monotonic() - start, mirrors)
    tarball = rootfs_tarball(mirrors, suite)
    action = "imported"
    if rebuild or not tarball.is_file():
        console.print(f"building {image}: debootstrap {suite} from {mirrors.main} (about a minute)")
        _debootstrap_rootfs(mirrors, tarball, suite)
        action = "built"
    _import(tarball, image, mirrors, suite)
    return BuildResult(image, action, time.monotonic() - start, mirrors)


def remove_image(image: str = IMAGE) -> str:
    """`down --purge`: drop the image and the cached rootfs tarballs; returns what happened, in words."""
    for stale in cache_dir().glob("rootfs-*.tar"):
        stale.unlink(missing_ok=True)
    if not podman.image_exists(image, dict(os.environ)):
        return f"image {image} was not there; removed the cached rootfs"
    # Never --force: that would also delete other people's containers (e.g. molecule) using the image.
    result = podman.run(["rmi", image], env=dict(os.environ), check=False)
    if result.returncode != 0:
        users = podman.run(
            ["ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.Names}}"],
            env=dict(os.environ),
            check=False,
        ).stdout.split()
        return f"kept image {image}: still used by containers {', '.join(users) or '(unknown)'}"
    return f"removed image {image} and the cached rootfs"


def image_recipe(image: str = IMAGE) -> str | None:
    result = podman.run(
        ["image", "inspect", "--format", '{{index .Labels "ddp.sandbox.recipe"}}', image],
        env=dict(os.environ),
        check=False,
    )
    return result.stdout.strip() or None if result.returncode == 0 else None
