"""What several cluster test files share: the roles verified on the cluster and how, and verify-node."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from tests.integration.sandbox_harness import ROOT, Sandbox
from tooling.sandbox.inventory import extra_ca_certificates

# Roles whose converge and changed=0 this cluster proves, so only their molecule `verify` runs here (on the
# hosts the role was applied to); tests/integration/test_molecule.py runs the full scenario of the others.
# ddp_trainer's verify needs node1 converged for phase 1: test_02_rollout runs it after deploying phase 1.
# common's verify needs what its scenario sets (NODE_SETTINGS below).
CLUSTER_VERIFIED_ROLES = {
    "common": "nodes",
    "numa_tuning": "nodes",
    "cuda_nccl": "nodes",
    "openmpi": "nodes",
    "pytorch": "nodes",
}


# What a site adds to the nodes' base setup, as common's molecule scenario adds it: its own CA (beside the
# control machine's, which the sandbox inventory passes on) and an extra package.
TEST_CA = ROOT / "roles" / "common" / "molecule" / "default" / "files" / "molecule-test-ca.crt"


def write_node_settings(box: Sandbox) -> None:
    """group_vars/nodes.yml of the cluster's inventory (the sandbox writes all.yml and hosts.yml only)."""
    settings = {
        "common_extra_ca_certificates": [*extra_ca_certificates(), str(TEST_CA)],
        "common_extra_packages": ["numactl"],
    }
    (box.inventory / "group_vars" / "nodes.yml").write_text(yaml.safe_dump(settings))


def run_role_verify(box: Sandbox, roles: list[str], limit: str) -> subprocess.CompletedProcess[str]:
    """The roles' molecule verify playbooks against the cluster's inventory, in one ansible-playbook run (as
    `ansible-playbook a.yml b.yml` runs them: one start-up, one set of SSH connections)."""
    playbooks = [str(ROOT / "roles" / role / "molecule" / "default" / "verify.yml") for role in roles]
    return box.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(box.inventory), "-l", limit,
         *playbooks],
        timeout=900,
    )  # fmt: skip


def verify_phase(box: Sandbox, phase: str = "2a", pairs: str = "ring") -> tuple[int, dict[str, Any]]:
    """`tooling verify-node --json [--pairs all]` on the cluster, in this process (no CLI start-up to pay)."""
    from tooling.verify.pair_schedule import PairMode
    from tooling.verify.run import run_verify

    buffer = io.StringIO()
    code = run_verify(
        [],
        phase,
        box.inventory,
        "sandbox",
        as_json=True,
        install_iperf3=True,
        runs_dir=box.runs,
        out=Console(file=buffer, width=200),
        pairs=PairMode(pairs),
    )
    return code, json.loads(buffer.getvalue())
