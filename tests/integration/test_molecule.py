"""`molecule test` for the roles whose scenario checks something the shared sandbox cluster does not.

A role's default scenario (roles/<role>/molecule/default) creates, converges, checks idempotence, verifies and
destroys its own containers; by hand:
    cd roles/<role> && MOLECULE_ROLE_NAME=<role> molecule test
The suite runs a role's whole scenario only when that scenario sets the role up differently from the
cluster (node_exporter's binary install, an Alertmanager webhook, Prometheus behind TLS and basic auth).
The cluster (tests/integration/cluster) converges every other role with `site.yml`, proves changed=0 and
runs the role's own verify.yml against its nodes: the same checks without another converge (common's with
the CA and extra package its scenario sets, written into the cluster's group_vars/nodes.yml).
Roles that only run together share one scenario (VERIFIED_IN): prometheus' scenario also sets up
alertmanager and node_exporter, and its verify.yml imports their checks (roles/<role>/molecule/verify.yml):
one converge for three roles.
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
import yaml

from tests.integration.cluster.checks import CLUSTER_VERIFIED_ROLES
from tooling.sandbox.podman import is_rootless, podman_env

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/ddp-node:bookworm"
SCENARIOS = sorted(ROOT.glob("roles/*/molecule/default/molecule.yml"))
# Verified on the shared cluster instead (cluster/checks.py CLUSTER_VERIFIED_ROLES, ddp_trainer in
# test_02_rollout once node1 is converged for phase 1, firewall in test_05_long_run: loaded while a run
# trains, its own verify step, changed=0, another tool's table kept, who reaches the store and the metrics).
# Firewall's scenario (four hosts: every kind of port from an outsider, a tampered table) stays for `molecule
# test` by hand: about 13 minutes here, which the suite cannot spare.
ON_THE_CLUSTER = {*CLUSTER_VERIFIED_ROLES, "ddp_trainer", "firewall"}
ROLES = [path.parents[2] for path in SCENARIOS if path.parents[2].name not in ON_THE_CLUSTER]
TIMEOUT_S = 1800

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def molecule_env() -> dict[str, str]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/bootstrap.sh installs it)")
    env = podman_env()
    probe = subprocess.run(["podman", "image", "exists", IMAGE], env=env, check=False)
    if probe.returncode != 0:
        pytest.fail(f"node image {IMAGE} is missing: build it with `python -m tooling.sandbox image`")
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_ROLES_PATH"] = str(ROOT / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["NO_COLOR"] = "1"
    env["PY_COLORS"] = "0"
    if is_rootless():
        # The host cannot route into a rootless container network: the monitoring scenario's plays go
        # through podman instead of SSH (roles/prometheus/molecule/default/molecule.yml).
        env["MOLECULE_MONITORING_CONNECTION"] = "containers.podman.podman"
    return env


# Roles with no molecule scenario, and why: their packages come only from their vendors' repositories,
# which cannot be reached here, so tests/unit renders and validates them instead; package_source and
# web_config have no entry point of their own and run inside the roles that import them (web_config in
# prometheus' scenario, for Prometheus, Alertmanager and node_exporter).
WITHOUT_SCENARIO = {
    "elasticsearch",
    "logstash",
    "kibana",
    "filebeat",
    "grafana",
    "package_source",
    "web_config",
}
# Roles checked in another role's scenario, role -> that role: the scenario sets them up as well and its
# verify.yml imports their checks (roles/<role>/molecule/verify.yml). Alertmanager and node_exporter always
# run with Prometheus (playbooks/monitoring.yml): one monitoring stack is created and converged, not three.
VERIFIED_IN = {"alertmanager": "prometheus", "node_exporter": "prometheus"}


def _imported_playbooks(playbook: Path) -> set[Path]:
    """The playbooks `playbook` imports (ansible.builtin.import_playbook), as absolute paths."""
    plays = yaml.safe_load(playbook.read_text()) or []
    return {
        (playbook.parent / play["ansible.builtin.import_playbook"]).resolve()
        for play in plays
        if "ansible.builtin.import_playbook" in play
    }


def test_every_role_is_verified_somewhere() -> None:
    """A new role gets a scenario (run here until the cluster verifies it), a place in another role's
    scenario, or a reason for having none; a role verified on the cluster must have the verify.yml the cluster
    runs; a role checked in another's scenario has its checks imported by that scenario's verify.yml."""
    with_scenario = {path.parents[2].name for path in SCENARIOS}
    every_role = {path.parent.name for path in ROOT.glob("roles/*/tasks")}
    folded = set(VERIFIED_IN)
    assert every_role - with_scenario - folded == WITHOUT_SCENARIO, (
        every_role - with_scenario - folded ^ WITHOUT_SCENARIO
    )
    assert with_scenario >= ON_THE_CLUSTER, ON_THE_CLUSTER - with_scenario
    # A folded role keeps no scenario of its own: its checks would run twice.
    assert not folded & with_scenario, folded & with_scenario
    run_here = {role.name for role in ROLES}
    for role, host in VERIFIED_IN.items():
        assert host in run_here, f"{role}'s checks run in {host}'s scenario, which this suite does not run"
        checks = ROOT / "roles" / role / "molecule" / "verify.yml"
        imported = _imported_playbooks(ROOT / "roles" / host / "molecule" / "default" / "verify.yml")
        assert checks.is_file() and checks.resolve() in imported, (
            f"roles/{host}/molecule/default/verify.yml does not import {checks.relative_to(ROOT)}"
        )


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
