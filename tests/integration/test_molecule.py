"""`molecule test` for the roles whose scenario checks something the shared sandbox cluster does not.

Every role has a default scenario (roles/*/molecule/default) that creates, converges, checks idempotence,
verifies and destroys its own containers; by hand:
    cd roles/<role> && MOLECULE_ROLE_NAME=<role> molecule test
The suite runs a role's whole scenario only when that scenario sets the role up differently from the
cluster (an extra CA, node_exporter's binary install, an Alertmanager webhook, Prometheus behind basic
auth). The cluster (tests/integration/cluster) converges every other role with `site.yml`, proves
changed=0 and runs the role's own verify.yml against its nodes: the same checks without another converge.
Roles are discovered by glob, so a new role's scenario runs here until the cluster verifies it.
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

from tests.integration.cluster.test_01_provisioned import CLUSTER_VERIFIED_ROLES

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/ddp-node:bookworm"
SCENARIOS = sorted(ROOT.glob("roles/*/molecule/default/molecule.yml"))
# Verified on the shared cluster instead (test_01_provisioned.CLUSTER_VERIFIED_ROLES, and ddp_trainer in
# test_02_rollout once node1 is converged for phase 1).
ON_THE_CLUSTER = {*CLUSTER_VERIFIED_ROLES, "ddp_trainer"}
ROLES = [path.parents[2] for path in SCENARIOS if path.parents[2].name not in ON_THE_CLUSTER]
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


def test_every_role_is_verified_somewhere() -> None:
    """A role left out here must have its verify.yml run on the cluster, and the other way round."""
    with_scenario = {path.parents[2].name for path in SCENARIOS}
    assert with_scenario >= ON_THE_CLUSTER, ON_THE_CLUSTER - with_scenario
    assert {role.name for role in ROLES} | ON_THE_CLUSTER == with_scenario


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
