"""Calling podman, and the environment it needs on this host.

Some hosts (nested containers, hybrid cgroups) refuse podman's defaults: raising nofile/nproc fails
with "error setting rlimit", crun refuses the cgroup layout. `containers.conf` beside this module fixes
both, but a normal Linux box needs none of it, so it is used only when a probe container fails without
it and works with it (or when DDP_SANDBOX_CONTAINERS_CONF forces it). The result is cached in the state
dir, keyed by the podman version, so molecule runs and every `tooling sandbox` call agree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ddp.atomic import atomic_write_json
from tooling.console import ToolingError
from tooling.sandbox.settings import IMAGE, default_state_dir

PROJECT_CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
FORCE_ENV = "DDP_SANDBOX_CONTAINERS_CONF"  # "1"/"yes": use the project file; a path: use that; "0": never
CACHE_NAME = "podman-env.json"
INSTALL_HINT = (
    "install it (Debian/Ubuntu: `sudo apt-get install podman runc uidmap`) or run scripts/bootstrap.sh"
)


class PodmanError(ToolingError):
    """A podman command failed; the message carries the command and podman's own words."""


def podman_binary() -> str:
    path = shutil.which("podman")
    if path is None:
        raise ToolingError("podman is not installed (not found on PATH)", hint=INSTALL_HINT)
    return path


def run(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    input_text: str | None = None,
    timeout: float | None = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS` with the detected environment; raise PodmanError naming the command on failure."""
    cmd = [podman_binary(), *args]
    try:
        result = subprocess.run(
            cmd,
            env=env if env is not None else podman_env(),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PodmanError(f"`podman {' '.join(args)}` did not finish within {timeout:.0f} s") from None
    if check and result.returncode != 0:
        raise PodmanError(
            f"`podman {' '.join(args)}` failed (exit {result.returncode}): {_last_lines(result.stderr)}"
        )
    return result


def _last_lines(text: str, count: int = 4) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-count:]) or "(no output)"


def is_rootless() -> bool:
    """Rootless podman keeps container networks in a namespace the host cannot route into."""
    return os.geteuid() != 0


def image_exists(image: str = IMAGE, env: dict[str, str] | None = None) -> bool:
    return run(["image", "exists", image], env=env or dict(os.environ), check=False).returncode == 0


# --- environment detection -------------------------------------------------------------------------


def _forced_conf() -> Path | Literal[False] | None:
    """None: not forced; False: forced off; a Path: forced on."""
    value = os.environ.get(FORCE_ENV, "").strip()
    if not value:
        return None
    if value.lower() in {"0", "no", "false", "off"}:
        return False
    if value.lower() in {"1", "yes", "true", "on"}:
        return PROJECT_CONTAINERS_CONF
    path = Path(value).expanduser()
    if not path.is_file():
        raise ToolingError(
            f"{FORCE_ENV}={value}: no such file", hint=f"unset {FORCE_ENV} or point it at a file"
        )
    return path


def _with_conf(base: dict[str, str], conf: Path | None) -> dict[str, str]:
    env = dict(base)
    if conf is not None:
        env["CONTAINERS_CONF"] = str(conf)
    return env


def probe(env: dict[str, str], image: str = IMAGE) -> tuple[bool, str]:
    """Can a container start with this environment? (ok, podman's error when not)."""
    result = run(["run", "--rm", "--network", "none", image, "true"], env=env, check=False, timeout=120)
    return result.returncode == 0, _last_lines(result.stderr, 2)


def podman_version(env: dict[str, str] | None = None) -> str:
    return run(["version", "--format", "{{.Client.Version}}"], env=env or dict(os.environ)).stdout.strip()


def detect_env(base: dict[str, str], image: str = IMAGE) -> tuple[Path | None, str]:
    """Decide whether CONTAINERS_CONF must point at the project file. Returns (conf or None, why)."""
    forced = _forced_conf()
    if forced is False:
        return None, f"{FORCE_ENV} turns the project containers.conf off"
    if isinstance(forced, Path):
        return forced, f"{FORCE_ENV} forces {forced}"
    if base.get("CONTAINERS_CONF"):
        return None, "CONTAINERS_CONF is already set by the user"
    if not image_exists(image, base):
        raise ToolingError(
            f"cannot probe podman: the node image {image} does not exist yet",
            hint="build it with `tooling sandbox image` (or `python -m tooling.sandbox image`)",
        )
    ok, plain_error = probe(base, image)
    if ok:
        return None, "podman's defaults work on this host"
    ok, conf_error = probe(_with_conf(base, PROJECT_CONTAINERS_CONF), image)
    if ok:
        return PROJECT_CONTAINERS_CONF, f"podman's defaults fail here ({plain_error}); the project file works"
    raise ToolingError(
        f"podman cannot start a container from {image}.\nwith its defaults: {plain_error}\n"
        f"with {PROJECT_CONTAINERS_CONF}: {conf_error}",
        hint="run `podman run --rm IMAGE true` yourself to see the full error; "
        f"set {FORCE_ENV}=PATH to try your own containers.conf",
    )


def podman_env(state_dir: Path | None = None, *, refresh: bool = False) -> dict[str, str]:
    """The environment (os.environ plus CONTAINERS_CONF where needed) for every podman/molecule call."""
    base = dict(os.environ)
    podman_binary()
    forced = _forced_conf()
    if forced is not None:
        return _with_conf(base, forced or None)
    if base.get("CONTAINERS_CONF"):
        return base
    cache = (state_dir or default_state_dir()) / CACHE_NAME
    version = podman_version(base)
    if not refresh and cache.is_file():
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cached = {}
        if cached.get("podman_version") == version and cached.get("euid") == os.geteuid():
            conf = cached.get("containers_conf")
            if conf is None or Path(conf).is_file():
                return _with_conf(base, Path(conf) if conf else None)
    conf, why = detect_env(base)
    atomic_write_json(
        cache,
        {
            "podman_version": version,
            "euid": os.geteuid(),
            "containers_conf": str(conf) if conf else None,
            "reason": why,
        },
    )
    return _with_conf(base, conf)
