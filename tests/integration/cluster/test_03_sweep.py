"""`tooling sweep` on the sandbox cluster: two trials of phase 2a (8 ranks over both nodes), each re-launched
by the sweep on the provisioned nodes with its own settings, measured from the run's summary fetched back
from node1, and ranked. (Locking the winner is a local file operation, tested in test_sweep_local.py.)

The sweep runs from the cluster's inventory kept in ansible-vault, as a site keeps its own: the nodes'
addresses are `!vault` values (tooling needs them decrypted for SSH, Ansible for its plays) and a
vault-encrypted group_vars file holds a secret; `--vault-password-file` must reach both, and neither the
password nor the secret may show up in anything the sweep wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.sandbox_harness import Sandbox, explain
from tests.integration.sandbox_jobs import RUN_ROOT, SMALL_RUN, on_node
from tests.unit.vault_fixtures import VAULT_PASSWORD, encrypt_file, password_file, vaulted

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group("cluster")]

# Three of the trainer's heartbeats (every 20 steps), at most 12 s at SMALL_RUN's pace (5 steps a second).
STEPS = 60
SECRET = "webhook-token-kept-in-vault"
VAULTED_HOSTS = ("node1", "node2")


def _vaulted_inventory(box: Sandbox) -> tuple[Path, Path]:
    """A copy of the cluster's inventory with the nodes' `ansible_host` as `!vault` values and an encrypted
    group_vars file, and the password file that opens both."""
    directory = box.tmp / "vaulted-inventory"
    shutil.copytree(box.inventory, directory)
    secret_file = password_file(box.tmp)
    vault_id = f"default@{secret_file}"
    hosts_file = directory / "hosts.yml"
    hosts = yaml.safe_load(hosts_file.read_text())
    nodes = hosts["all"]["children"]["nodes"]["hosts"]
    text = hosts_file.read_text()
    for host in VAULTED_HOSTS:
        address = nodes[host]["ansible_host"]
        line = f"ansible_host: {address}\n"
        at = text.index(line, text.index(f"{host}:"))
        indent = text[text.rindex("\n", 0, at) + 1 : at]
        block = vaulted("ansible_host", address, vault_id).replace("\n", "\n" + indent).rstrip(" ")
        text = text[:at] + block + text[at + len(line) :]
    hosts_file.write_text(text)
    assert yaml.safe_load(hosts_file.read_text().replace("!vault", "")) is not None
    encrypted = directory / "group_vars" / "nodes.yml"
    encrypted.write_text(
        yaml.safe_dump({"alertmanager_webhook_urls": [f"https://hooks.example.invalid/{SECRET}"]})
    )
    encrypt_file(encrypted, vault_id)
    return directory, secret_file


def test_sweep_runs_ranked_trials_on_the_cluster(phase2a_cluster: Sandbox) -> None:
    # The paced small run of every cluster test: the batch sizes' throughputs differ by the samples each paced
    # step carries, and eight unpaced ranks would hold both cores for the whole trial.
    box = phase2a_cluster
    sweeps = box.tmp / "sweeps"
    inventory, secret_file = _vaulted_inventory(box)
    for host in VAULTED_HOSTS:
        assert "ansible_host: !vault" in (inventory / "hosts.yml").read_text().split(f"{host}:", 1)[1]
    swept = box.tooling(
        "--vault-password-file", str(secret_file),
        "sweep", "--phase", "2a", "--inventory", str(inventory), "--id", "sandbox-2a",
        "--sweeps-dir", str(sweeps), "--grid", "batch_size=8,16", "--steps", str(STEPS),
        "--trial-timeout", "600", "--restart", *[a for s in SMALL_RUN for a in ("--set", s)],
    )  # fmt: skip
    assert swept.returncode == 0, explain(swept)
    done = json.loads((sweeps / "sandbox-2a" / "sweep.json").read_text())
    trials = {t["trial"]: t for t in done["trials"]}
    assert set(trials) == {1, 2}, trials
    for t in trials.values():
        assert t["status"] == "ok", t
        assert t["throughput"] > 0 and t["nonfinite"] == 0 and t["steps"] == STEPS, t
        # The copy kept beside the sweep is the run the nodes made: 8 ranks on 2 nodes, this trial's batch.
        summary = json.loads(Path(t["summary"]).read_text())
        assert (summary["world_size"], summary["nodes"]) == (8, 2), summary
        assert summary["config"]["training"]["batch_size"] == t["combination"]["training.batch_size"]
        on_nodes = on_node(box, "node1", f"cat {RUN_ROOT}/{t['run_id']}/summary.json")
        assert on_nodes.rc == 0 and json.loads(on_nodes.stdout) == summary, on_nodes
    assert done["best"] in trials and done["ranking"]["ranked"][0] == done["best"]
    assert "sandbox-2a" in (sweeps / "sandbox-2a" / "sweep.md").read_text()
    # Nothing the sweep wrote (its records, the trials' summaries, Ansible's artifacts) holds the password
    # or the secret, nor does what it printed.
    assert VAULT_PASSWORD not in swept.stdout + swept.stderr and SECRET not in swept.stdout + swept.stderr
    written = [p for root in (sweeps, box.home) for p in root.rglob("*") if p.is_file()]
    assert written
    leaked = [
        p for p in written if VAULT_PASSWORD.encode() in p.read_bytes() or SECRET.encode() in p.read_bytes()
    ]
    assert leaked == [], leaked
