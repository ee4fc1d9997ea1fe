"""`molecule test` for every role that has a default scenario (roles/*/molecule/default).

Roles are discovered by glob, so a new role's scenario is picked up without editing this file. Each run
creates, converges, checks idempotence, verifies and destroys its own containers (named after the role
by .config/molecule/config.yml, so scenarios of different roles never collide). Slow: minutes per role.
Run alone: pytest -m sandbox tests/integration/test_molecule.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/ddp-node:bookworm"
SCENARIOS = sorted(ROOT.glob("roles/*/molecule/default/molecule.yml"))
ROLES = [path.parents[2] for path in SCENARIOS]
TIMEOUT_S = 1800

pytestmark = pytest.mark.sandbox


def _podman_env() -> dict[str, str]:
    try:
        from tooling.sandbox.podman import podman_env
    except ImportError:
        env = dict(os.environ)
        conf = ROOT / "tooling" / "sandbox" / "containers.conf"
        if conf.exists():
            env.setdefault("CONTAINERS_CONF", str(conf))
        return env
    return podman_env()


@pytest.fixture(scope="module")
def molecule_env() -> dict[str, str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/bootstrap.sh installs it)")
    env = _podman_env()
    probe = subprocess.run(["podman", "image", "exists", IMAGE], env=env, check=False)
    if probe.returncode != 0:
        pytest.fail(f"node image {IMAGE} is missing: build it with `python -m tooling.sandbox image`")
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_ROLES_PATH"] = str(ROOT / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["NO_COLOR"] = "1"
    env["PY_COLORS"] = "0"
    return env


@pytest.mark.parametrize("role", ROLES, ids=[role.name for role in ROLES])
def test_molecule_default_scenario(role: Path, molecule_env: dict[str, str]) -> None:
    env = {**molecule_env, "MOLECULE_ROLE_NAME": role.name}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "molecule"), "test", "--scenario-name", "default"],
            cwd=role,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or ""
        output = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        subprocess.run(["molecule", "destroy"], cwd=role, env=env, capture_output=True, check=False)
        pytest.fail(f"molecule test for {role.name} ran past {TIMEOUT_S}s:\n{output[-6000:]}")
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    print(f"molecule test {role.name}: rc={proc.returncode} in {elapsed:.0f}s")
    assert proc.returncode == 0, (
        f"molecule test for {role.name} failed (rc {proc.returncode}):\n{output[-8000:]}"
    )
