"""`tooling deploy --phase P --plan`: per node, the torchrun line and environment the role's own launcher
would run, the run and checkpoint directories, the endpoints Prometheus scrapes, and (unless --offline) what
Ansible's check mode finds, on an inventory written in another site's style: an INI hosts file, other host
names, a non-root SSH user with become and port 2222 in group_vars, a data-network address per node
(ddp_trainer_node_address) that differs from the address Ansible connects to, its own run root.

The whole command runs, through the CLI, with the real playbooks/plan.yml and role; nothing is faked. Every
run also proves that a plan writes no state: the state root it is given is never created.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ddp.ports import free_port_block
from tooling.cli import app
from tooling.inventory import load_inventory
from tooling.job.check_changes import HostChanges, RoleChanges
from tooling.job.deploy import derive_phase_launch
from tooling.job.preview import ansible_state, env_file_values, trainer_arguments
from tooling.job.preview_view import ansible_lines
from tooling.plan.phases import load_phases

PORT = 2222
USER = "trainer-ops"
RUN_ROOT = "/scratch/ddp/runs"
# Ansible reaches every host on loopback; the nodes talk and are scraped on the data network.
DATA = {"gpu-a07": "10.20.0.7", "gpu-b12": "10.20.0.12"}
RUN_ID = "plan-test-1"
TOP_KEYS = {
    "excluded",
    "phase",
    "group",
    "run_id",
    "inventory",
    "offline",
    "verification",
    "steps",
    "nnodes",
    "nproc_per_node",
    "world_size",
    "rendezvous",
    "config",
    "config_overrides",
    "nodes",
    "prometheus_targets",
    "other_hosts",
}
NODE_KEYS = {
    "host",
    "order",
    "rendezvous_host",
    "connection",
    "address",
    "command",
    "command_line",
    "environment",
    "run_dir",
    "checkpoint_dir",
    "metrics_endpoints",
    "prometheus_targets",
    "ansible",
}


def site_inventory(where: Path, port: int = PORT) -> Path:
    """Another site's inventory: INI hosts, connection settings in group_vars, no node1..node4."""
    where.mkdir(parents=True)
    (where / "hosts.ini").write_text(
        "[nodes]\n"
        f"gpu-a07 ansible_host=127.0.0.1 ddp_trainer_node_address={DATA['gpu-a07']}\n"
        f"gpu-b12 ansible_host=127.0.0.1 ddp_trainer_node_address={DATA['gpu-b12']}"
        " ddp_trainer_socket_ifname=ib0\n"
        "\n[monitoring]\nmon-01 ansible_host=127.0.0.1\n"
        "\n[phase1]\ngpu-a07\n"
        "\n[phase2a]\ngpu-b12\n"
        "\n[phase2a:children]\nphase1\n"
    )
    (where / "group_vars").mkdir()
    (where / "group_vars" / "all.yml").write_text(
        f"ansible_user: {USER}\nansible_become: true\nansible_port: {port}\n"
        f"ddp_trainer_run_root: {RUN_ROOT}\n"
    )
    return where


def options(command: list[str]) -> dict[str, str]:
    """Each argument of a command line -> the one after it (`--nnodes` -> `2:2`)."""
    return dict(itertools.pairwise(command))


def run_plan(tmp: Path, inventory: Path, *args: str) -> tuple[int, str, str, Path]:
    """`tooling deploy --plan ...`; (exit code, stdout, stderr, the state root it was given)."""
    home = tmp / "state-root"
    result = CliRunner().invoke(
        app,
        [
            "--home",
            str(home),
            "deploy",
            "-i",
            str(inventory),
            "--run-id",
            RUN_ID,
            "--set",
            "training.max_steps=7",
            "--plan",
            *args,
        ],
    )
    return result.exit_code, result.stdout, result.stderr, home


@pytest.fixture(scope="module")
def offline_2a(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("plan-2a")
    inventory = site_inventory(tmp / "inventory")
    code, out, err, home = run_plan(tmp, inventory, "--phase", "2a", "--offline", "--json")
    assert code == 0, err
    assert not home.exists(), "a plan must write no state"
    shown = json.loads(out)
    assert [n["checkpoint_dir"] for n in shown["nodes"]] == [f"{RUN_ROOT}/{RUN_ID}/checkpoints"] * 2
    return shown, inventory


def test_offline_json_for_phase_1(tmp_path: Path) -> None:
    inventory = site_inventory(tmp_path / "inventory")
    # Trainer settings the role lays over the phase's config (trainer.yaml): the checkpoints move.
    (inventory / "group_vars" / "nodes.yml").write_text(
        "ddp_trainer_config_overrides: {checkpoint: {dir: /shared/ckpt}}\n"
    )
    code, out, err, home = run_plan(tmp_path, inventory, "--phase", "1", "--offline", "--json")
    assert code == 0, err
    assert not home.exists()
    shown = json.loads(out)
    assert set(shown) == TOP_KEYS
    plan = load_phases()
    base, rdzv_port = plan.metrics.base_port, plan.rendezvous.port
    assert (shown["phase"], shown["group"], shown["run_id"], shown["offline"]) == (
        "1",
        "phase1",
        RUN_ID,
        True,
    )
    assert (shown["nnodes"], shown["nproc_per_node"], shown["world_size"]) == ("1:1", 4, 4)
    (node,) = shown["nodes"]
    assert set(node) == NODE_KEYS
    assert node["host"] == "gpu-a07" and node["rendezvous_host"] and node["order"] == 1
    assert node["connection"] == {
        "address": "127.0.0.1",
        "port": PORT,
        "user": USER,
        "become": True,
        "become_user": "root",
    }
    command = node["command"]
    # The role's default warm start: torchrun under the supervisor that starts the node's warm pool.
    assert command[:4] == [
        "/opt/ddp/venv/bin/python",
        "-m",
        "ddp.warm_supervisor",
        "/opt/ddp/venv/bin/torchrun",
    ]
    pairs = options(command)
    assert pairs["--local-addr"] == DATA["gpu-a07"]
    assert pairs["--nnodes"] == "1:1"
    assert pairs["--rdzv-endpoint"] == f"{DATA['gpu-a07']}:{rdzv_port}"
    assert pairs["--rdzv-id"] == RUN_ID and pairs["--nproc-per-node"] == "4"
    assert trainer_arguments(command) == (
        "/etc/ddp/trainer.yaml",
        [
            f"run.output_dir={RUN_ROOT}",
            f"run.name={RUN_ID}",
            f"metrics.bind_address={DATA['gpu-a07']}",
            f"metrics.base_port={base}",
            "training.max_steps=7",
        ],
    )
    assert node["environment"]["DDP_NODE_NAME"] == "gpu-a07"
    assert node["environment"]["DDP_RUN_ID"] == RUN_ID and node["environment"]["DDP_PHASE"] == "1"
    assert (node["run_dir"], node["checkpoint_dir"]) == (f"{RUN_ROOT}/{RUN_ID}", "/shared/ckpt")
    assert node["metrics_endpoints"] == [f"http://{DATA['gpu-a07']}:{base + i}/metrics" for i in range(4)]
    assert node["ansible"]["status"] == "offline"
    assert shown["other_hosts"] == {}


def test_offline_json_for_phase_2a_follows_the_one_derivation(
    offline_2a: tuple[dict[str, Any], Path],
) -> None:
    shown, inventory = offline_2a
    assert set(shown) == TOP_KEYS and all(set(node) == NODE_KEYS for node in shown["nodes"])
    # What tooling derives before a deploy (tooling/plan/launch.py) is what the role's launcher runs.
    launch = derive_phase_launch(load_inventory(inventory), inventory, load_phases(), "2a")
    assert [n["host"] for n in shown["nodes"]] == launch.hosts == ["gpu-a07", "gpu-b12"]
    assert shown["rendezvous"]["endpoint"] == launch.rdzv_endpoint == f"{DATA['gpu-a07']}:29400"
    assert shown["prometheus_targets"] == [t.target for t in launch.metrics_targets]
    assert all(t.split(":")[0] in DATA.values() for t in shown["prometheus_targets"])
    assert shown["steps"] == [{"playbook": "site.yml", "limit": "phase2a:monitoring"}]
    assert "profile production" in shown["verification"]
    first, second = shown["nodes"]
    for node in shown["nodes"]:
        pairs = options(node["command"])
        assert pairs["--local-addr"] == DATA[node["host"]] == node["address"]
        assert pairs["--rdzv-endpoint"] == launch.rdzv_endpoint and pairs["--nnodes"] == "2:2"
        assert node["connection"]["address"] == "127.0.0.1" and node["connection"]["port"] == PORT
        assert node["prometheus_targets"] == [
            t.target for t in launch.metrics_targets if t.node == node["host"]
        ]
        assert node["ansible"]["status"] == "offline"
    assert (first["rendezvous_host"], second["rendezvous_host"]) == (True, False)
    assert "GLOO_SOCKET_IFNAME" not in first["environment"]
    assert second["environment"]["GLOO_SOCKET_IFNAME"] == second["environment"]["NCCL_SOCKET_IFNAME"] == "ib0"


def test_offline_text_names_every_node(tmp_path: Path, offline_2a: tuple[dict[str, Any], Path]) -> None:
    shown, inventory = offline_2a
    code, out, err, home = run_plan(tmp_path, inventory, "--phase", "2a", "--offline")
    assert code == 0, err
    assert not home.exists()
    assert "node gpu-a07 (1 of 2, rendezvous host)" in out and "node gpu-b12 (2 of 2)" in out
    for node in shown["nodes"]:
        assert node["command_line"] in out
    assert f"{USER}@127.0.0.1:{PORT}, become root" in out
    assert out.count("OFFLINE") == 2


def test_unreachable_nodes_are_named_and_the_launch_is_still_shown(tmp_path: Path) -> None:
    port = free_port_block()
    inventory = site_inventory(tmp_path / "inventory", port=port)
    code, out, err, home = run_plan(tmp_path, inventory, "--phase", "2a", "--json")
    assert code == 1, err
    assert not home.exists()
    shown = json.loads(out)
    assert shown["offline"] is False
    for node in shown["nodes"]:
        assert node["ansible"]["status"] == "unreachable"
        assert (
            f"port {port}" in node["ansible"]["reason"] and "Connection refused" in node["ansible"]["reason"]
        )
        assert node["command"][3].endswith("torchrun") and node["metrics_endpoints"]
    assert shown["other_hosts"]["mon-01"]["status"] == "unreachable"


@pytest.mark.parametrize("rendezvous_host", ["gpu-b12", "gpu-zz"])
def test_the_roles_own_settings_decide_the_launch(tmp_path: Path, rendezvous_host: str) -> None:
    """ddp_trainer_rendezvous_host is read by the role's derivation alone; the plan follows it, or fails
    with the role's words when it names no node of the phase."""
    inventory = site_inventory(tmp_path / "inventory")
    (inventory / "group_vars" / "nodes.yml").write_text(f"ddp_trainer_rendezvous_host: {rendezvous_host}\n")
    code, out, err, home = run_plan(tmp_path, inventory, "--phase", "2a", "--offline", "--json")
    assert not home.exists()
    if rendezvous_host == "gpu-zz":
        assert code == 2 and "ddp_trainer_rendezvous_host 'gpu-zz' is not a node of phase 2a" in err
        return
    assert code == 0, err
    shown = json.loads(out)
    endpoint = f"{DATA['gpu-b12']}:{load_phases().rendezvous.port}"
    assert shown["rendezvous"]["endpoint"] == endpoint
    assert [n["rendezvous_host"] for n in shown["nodes"]] == [False, True]
    assert all(options(n["command"])["--rdzv-endpoint"] == endpoint for n in shown["nodes"])


def test_help_shows_the_plan_with_an_example() -> None:
    help_text = CliRunner().invoke(app, ["deploy", "--help"], env={"COLUMNS": "120"}).output
    assert "--plan" in help_text and "tooling deploy --phase 2a --plan --offline" in help_text


def test_offline_and_json_need_plan(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "h"), "deploy", "--phase", "1", "--offline"])
    assert result.exit_code == 2 and "--offline and --json go with --plan" in result.stderr


def test_environment_files_are_read_literally() -> None:
    text = "# comment\nDDP_PHASE=2a\n\nNCCL_DEBUG=INFO=x\n  # indented comment\nEMPTY=\n"
    assert env_file_values(text) == {"DDP_PHASE": "2a", "NCCL_DEBUG": "INFO=x", "EMPTY": ""}


def test_what_ansible_would_change_per_node_in_words() -> None:
    found = {
        "n1": HostChanges({"common": RoleChanges(["Install tools"], [], ["htop", "numactl"])}),
        "n2": HostChanges(
            {"ddp_trainer": RoleChanges(["Render", "Unit"], ["/etc/ddp/trainer.yaml", "/etc/x.service"])},
            failures=["Keep the unit disabled at boot: Could not find the requested service ddp-trainer"],
        ),
        "n3": HostChanges(unreachable="ssh: connect to host 10.0.0.3 port 22: No route to host"),
    }
    assert ansible_state("n1", found, [])["status"] == "checked"
    n2 = ansible_state("n2", found, [])
    assert n2["status"] == "incomplete" and n2["changed"] == 2
    assert ansible_state("n3", found, [])["reason"].endswith("No route to host")
    assert ansible_state("n4", found, ["site.yml --check did not run: x"]) == {
        "status": "not checked",
        "reason": "site.yml --check did not run: x",
    }
    assert ansible_state("n1", None, [])["status"] == "offline"
    out = Console(record=True, width=200)
    for line in ansible_lines(n2) + ansible_lines(ansible_state("n1", found, [])):
        out.print(line)
    text = out.export_text()
    assert "2 task(s) would change" in text and "ddp_trainer: 2 task(s); files: /etc/ddp/trainer.yaml" in text
    assert "check mode stopped: Keep the unit disabled at boot" in text
    assert "common: 1 task(s); packages: htop, numactl" in text


def test_offline_plan_of_a_generated_ipv6_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/plan_scale.py's site (12 nodes x 8 ranks, rack-unit names, IPv6, svc-train with become on port
    2222, its own phases file): every node's torchrun line has its own address and the bracketed rendezvous
    endpoint, and its targets are its own ranks."""
    from bench.plan_scale import PHASE, RANKS, SSH_PORT, SSH_USER, host_address, write_site
    from tooling.plan.phase_file import PHASES_FILE_ENV

    inventory, phases = write_site(tmp_path, 12)
    monkeypatch.setenv(PHASES_FILE_ENV, str(phases))
    code, out, err, _home = run_plan(tmp_path, inventory, "--phase", PHASE, "--offline", "--json")
    assert code == 0, err
    shown = json.loads(out)
    plan = load_phases()
    launch = derive_phase_launch(load_inventory(inventory), inventory, plan, PHASE)
    assert [n["host"] for n in shown["nodes"]] == launch.hosts and len(launch.hosts) == 12
    endpoint = f"[{host_address(0)}]:{plan.rendezvous.port}"
    assert shown["rendezvous"]["endpoint"] == launch.rdzv_endpoint == endpoint
    assert (shown["nnodes"], shown["world_size"]) == ("12:12", 12 * RANKS)
    for index, node in enumerate(shown["nodes"]):
        pairs = options(node["command"])
        assert pairs["--rdzv-endpoint"] == endpoint and pairs["--nproc-per-node"] == str(RANKS)
        assert pairs["--local-addr"] == host_address(index) == node["address"]
        connection = node["connection"]
        assert (connection["user"], connection["port"], connection["become"]) == (SSH_USER, SSH_PORT, True)
        base = plan.metrics.base_port
        assert node["prometheus_targets"] == [f"[{host_address(index)}]:{base + r}" for r in range(RANKS)]
        assert node["run_dir"] == shown["nodes"][0]["run_dir"]


def test_the_trainer_config_files_are_read_once_for_the_same_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each node's --set items differ (its own metrics address): the config's files are read once per
    distinct overrides, each node's items validated on that, and the directories are load_config's."""
    from ddp.config_errors import ConfigError
    from tooling.job import run_directories

    reads: list[object] = []
    real = run_directories.load_config

    def counted(path: Any, sets: Any = None, overlay: Any = None) -> Any:
        reads.append(sets)
        return real(path, sets, overlay)

    monkeypatch.setattr(run_directories, "load_config", counted)
    launch = {"config": "ddp/configs/phase2a.yaml"}
    phase = run_directories.PhaseDirectories(launch)
    nodes = [
        ["run.name=a", f"metrics.bind_address=10.0.0.{i}", "metrics.base_port=9600"] for i in range(1, 4)
    ]
    moved = {"checkpoint": {"dir": "/shared/ckpt"}}
    cases = [({}, sets) for sets in nodes]
    cases += [(moved, nodes[0]), ({}, [*nodes[0][:2], "run.output_dir=/x"])]  # an item of its own, apart
    cases += [({}, ["run.name=b", "metrics.bind_address=10.0.0.9", "run=1"])]  # not apart: all its items
    shown = [phase(overrides, sets, tmp_path) for overrides, sets in cases[:-1]]
    assert reads == [None, None], "the files are read once per distinct overrides, without any node's items"
    with pytest.raises(ConfigError, match="run: expected"):
        phase(*cases[-1], tmp_path)  # as load_config fails: a value where the section goes
    monkeypatch.setattr(run_directories, "load_config", real)
    assert shown == [
        run_directories.directories(launch, overrides, sets, tmp_path) for overrides, sets in cases[:-1]
    ]
    assert shown[3][1] == "/shared/ckpt" and shown[4][0] == "/x/a"
    # A node whose own item the trainer would refuse fails as load_config fails, naming the --set.
    with pytest.raises(ConfigError, match=r"--set metrics\.bind_address=0\.0\.0\.0"):
        phase({}, ["run.name=a", "metrics.bind_address=0.0.0.0", "metrics.base_port=9600"], tmp_path)
