"""The torchrun command each node of each phase gets from role ddp_trainer, against tooling/phases.yml.

The role's own tasks (tasks/phase.yml) derive the phase and the rendezvous in a local ansible-playbook run
over a four-node inventory shaped like inventory/production (nested phase groups, which list their own
hosts before their children's, so a group's first host is NOT the phase's first node). Its templates are
rendered with those facts, and the rendered launcher is executed with --dry-run to get the real argv.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ddp.control import AGENT_MONITOR_ENV
from tooling.plan.phases import load_phases

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "ddp_trainer"
PLAN = load_phases()
NODES = ["node1", "node2", "node3", "node4"]
ADDRESS = {name: f"192.0.2.{10 + i}" for i, name in enumerate(NODES, start=1)}

pytestmark = pytest.mark.skipif(
    shutil.which("ansible-playbook") is None
    and not (Path(sys.executable).parent / "ansible-playbook").exists(),
    reason="ansible-playbook is not installed",
)


def _inventory() -> dict:
    """node1..node4 in `nodes`; phase groups nest like inventory/production/hosts.yml."""
    ordered = PLAN.ordered()
    members = PLAN.group_members(NODES)
    group: dict = {}
    previous_nodes: list[str] = []
    for _, phase in ordered:
        own = [n for n in members[phase.group] if n not in previous_nodes]
        new: dict = {"hosts": {n: None for n in own}}
        if group:
            new["children"] = group
        group = {phase.group: new}
        previous_nodes = members[phase.group]
    hosts = {
        n: {
            "ansible_host": ADDRESS[n],
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
        }
        for n in NODES
    }
    return {"all": {"children": {"nodes": {"hosts": hosts}, **group}}}


def _render_tasks(out: Path) -> list[dict]:
    templates = {
        name: str(ROLE / "templates" / f"{name}.j2")
        for name in ("ddp-launch", "trainer.env", "ddp-trainer.service", "trainer.yaml")
    }
    rendered = {
        name: f"{{{{ lookup('ansible.builtin.template', '{path}') }}}}" for name, path in templates.items()
    }
    return [
        {
            "name": "Derive the phase",
            "ansible.builtin.include_role": {
                "name": "ddp_trainer",
                "tasks_from": "phase.yml",
                "public": True,
            },
        },
        {
            "name": "Save the plan and the rendered templates",
            "ansible.builtin.copy": {
                "dest": f"{out}/{{{{ _ddp_trainer_launch.phase }}}}-{{{{ inventory_hostname }}}}.json",
                "content": "{{ {'launch': _ddp_trainer_launch, 'files': _files} | to_nice_json }}",
                "mode": "0644",
            },
            "vars": {
                "_files": rendered,
                "_ddp_trainer_run_user": "ddp",
                "_ddp_trainer_run_gid": "990",
                "ddp_trainer_socket_ifname": "eth1",
            },
        },
    ]


def _run(tmp: Path, plays: list[dict], *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / "inventory.yml").write_text(yaml.safe_dump(_inventory()))
    (tmp / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    # The project's filters (the launch derivation), as its own ansible.cfg registers them.
    filters = ROOT / "plugins" / "filter"
    (tmp / "ansible.cfg").write_text(
        f"[defaults]\nretry_files_enabled = false\nnocows = true\nfilter_plugins = {filters}\n"
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(tmp / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    binary = Path(sys.executable).parent / "ansible-playbook"
    cmd = [
        str(binary) if binary.exists() else "ansible-playbook",
        "-i",
        str(tmp / "inventory.yml"),
        str(tmp / "play.yml"),
        *args,
    ]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    tmp = tmp_path_factory.mktemp("launch-plan")
    out = tmp / "out"
    out.mkdir()
    explicit = tmp / "explicit"
    explicit.mkdir()
    plays = [
        {
            "name": f"Phase {name} derived from the play's hosts",
            "hosts": phase.group,
            "gather_facts": False,
            "vars_files": [str(ROOT / "tooling" / "phases.yml")],
            "tasks": _render_tasks(out),
        }
        for name, phase in PLAN.ordered()
    ]
    # An explicit phase on a play over every node: the nodes outside the phase are left alone.
    plays.append(
        {
            "name": "Phase 2a on all nodes",
            "hosts": "nodes",
            "gather_facts": False,
            "vars": {"ddp_trainer_phase": "2a"},
            "vars_files": [str(ROOT / "tooling" / "phases.yml")],
            "tasks": _render_tasks(explicit),
        }
    )
    result = _run(tmp, plays)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    plans = {}
    for file in out.glob("*.json"):
        phase, _, host = file.stem.partition("-")
        plans[(phase, host)] = json.loads(file.read_text())
    plans[("explicit", "files")] = sorted(p.name for p in explicit.iterdir())  # type: ignore[assignment]
    return plans


def _dry_run(script: str, tmp: Path, *args: str) -> list[str]:
    path = tmp / "ddp-launch"
    path.write_text(script)
    env = dict(os.environ, DDP_RUN_ID="run-7", DDP_NODE_NAME="from-unit")
    result = subprocess.run(
        ["bash", str(path), "--dry-run", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _sets(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--set")


CASES = [(name, host) for name, phase in PLAN.ordered() for host in PLAN.group_members(NODES)[phase.group]]


def test_every_node_of_every_phase_gets_a_plan(rendered: dict) -> None:
    assert sorted(key for key in rendered if key[0] != "explicit") == sorted(CASES)


@pytest.mark.parametrize(("phase_name", "host"), CASES)
def test_torchrun_arguments_follow_the_plan(
    rendered: dict, phase_name: str, host: str, tmp_path: Path
) -> None:
    phase = PLAN.get(phase_name)
    argv = _dry_run(rendered[(phase_name, host)]["files"]["ddp-launch"], tmp_path)

    # The role's default warm start: torchrun under the supervisor that starts the node's warm pool.
    assert argv[:4] == ["/opt/ddp/venv/bin/python", "-m", "ddp.warm_supervisor", "/opt/ddp/venv/bin/torchrun"]
    assert _option(argv, "--nnodes") == f"{phase.min_nodes}:{phase.nodes}"
    assert _option(argv, "--nproc-per-node") == str(phase.nproc_per_node)
    assert _option(argv, "--rdzv-backend") == PLAN.rendezvous.backend
    # The first node of the phase (node1), although the nested group lists its newest node first.
    assert _option(argv, "--rdzv-endpoint") == f"{ADDRESS['node1']}:{PLAN.rendezvous.port}"
    assert _option(argv, "--rdzv-id") == "run-7"
    rendezvous = PLAN.rendezvous
    # ddp-c10d reads a round it waits in as often as the agents poll (ddp/rendezvous_poll.py).
    poll = f"state_poll_interval={rendezvous.monitor_interval_s:g}"
    assert _option(argv, "--rdzv-conf") == f"join_timeout={rendezvous.join_timeout_s},{poll}"
    assert _option(argv, "--max-restarts") == str(PLAN.rendezvous.max_restarts)
    assert _option(argv, "--monitor-interval") == str(PLAN.rendezvous.monitor_interval_s)
    assert argv[argv.index("-m", 4) + 1] == "ddp.real_ddp_trainer"  # the supervisor has the first -m
    assert _option(argv, "--config") == "/etc/ddp/trainer.yaml"
    assert _sets(argv) == {
        "run.output_dir": "/var/lib/ddp/runs",
        "run.name": "run-7",
        "metrics.bind_address": ADDRESS[host],
        "metrics.base_port": str(PLAN.metrics.base_port),
    }


@pytest.mark.parametrize(("phase_name", "host"), CASES)
def test_environment_and_unit(rendered: dict, phase_name: str, host: str) -> None:
    files = rendered[(phase_name, host)]["files"]
    env = dict(
        line.split("=", 1) for line in files["trainer.env"].splitlines() if line and not line.startswith("#")
    )
    assert env["DDP_NODE_NAME"] == host
    assert env["DDP_PHASE"] == phase_name
    assert ("TORCH_DISABLE_SHARE_RDZV_TCP_STORE" in env) == PLAN.rendezvous.disable_shared_tcp_store
    if PLAN.rendezvous.disable_shared_tcp_store:
        assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert env["GLOO_SOCKET_IFNAME"] == env["NCCL_SOCKET_IFNAME"] == "eth1"
    # the ranks' wait for their agent follows the interval the agent polls at (ddp.control)
    assert float(env[AGENT_MONITOR_ENV]) == PLAN.rendezvous.monitor_interval_s

    unit = files["ddp-trainer.service"]
    assert "ExecStart=/usr/local/bin/ddp-launch\n" in unit
    assert "User=ddp\n" in unit and "Group=990\n" in unit
    assert "WorkingDirectory=/var/lib/ddp/runs\n" in unit
    assert "EnvironmentFile=/etc/ddp/trainer.env\n" in unit
    assert "EnvironmentFile=-/etc/ddp/run.env\n" in unit
    # The sandbox: nothing writable but the run root, no privileges to gain, homes hidden (venv in /opt).
    settings = [line for line in unit.splitlines() if line and not line.startswith("#")]
    for setting in (
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ddp/runs",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    ):
        assert setting in settings, f"{setting!r} missing from the unit:\n{unit}"
    # GPUs and PyTorch's JIT must keep working.
    assert not [line for line in settings if line.startswith(("PrivateDevices=", "MemoryDenyWriteExecute="))]

    config = yaml.safe_load(files["trainer.yaml"])
    assert config == {"base": f"/etc/ddp/configs/{Path(PLAN.get(phase_name).config).name}"}


@pytest.mark.parametrize(("phase_name", "host"), CASES)
def test_nodes_wait_for_the_store_except_its_own(rendered: dict, phase_name: str, host: str) -> None:
    """Every node but the store's checks it can reach the store before torchrun starts (ddp/store_wait.py),
    for at most the join timeout; the store's node starts it."""
    script = rendered[(phase_name, host)]["files"]["ddp-launch"]
    waits = [line for line in script.splitlines() if "-m ddp.store_wait" in line]
    if host == "node1":
        assert waits == []
        return
    endpoint = f"{ADDRESS['node1']}:{PLAN.rendezvous.port}"
    assert len(waits) == 1 and f"--endpoint {endpoint}" in waits[0], waits
    follows = script[script.index("-m ddp.store_wait") :].splitlines()[1]
    assert f"--timeout {PLAN.rendezvous.join_timeout_s}" in follows
    # Before torchrun, after the port check (and not in --check-ports, which runs before any store is up).
    assert script.index('[ "$check_only" = 0 ] || exit 0') < script.index("-m ddp.store_wait")
    assert script.index("-m ddp.store_wait") < script.index('exec "${cmd[@]}"')


def test_standalone_mode_drops_the_rendezvous(rendered: dict, tmp_path: Path) -> None:
    script = rendered[("2c", "node3")]["files"]["ddp-launch"]
    argv = _dry_run(
        script, tmp_path, "--standalone", "--nproc-per-node", "2", "--set", "training.max_steps=5"
    )
    assert "--standalone" in argv
    assert "--rdzv-endpoint" not in argv and "--nnodes" not in argv
    assert _option(argv, "--nproc-per-node") == "2"
    assert _sets(argv)["training.max_steps"] == "5"


def test_launcher_refuses_to_start_without_a_run_id(rendered: dict, tmp_path: Path) -> None:
    path = tmp_path / "ddp-launch"
    path.write_text(rendered[("1", "node1")]["files"]["ddp-launch"])
    env = {k: v for k, v in os.environ.items() if k != "DDP_RUN_ID"}
    env["DDP_NODE_NAME"] = "node1"
    result = subprocess.run(
        ["bash", str(path), "--dry-run"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "DDP_RUN_ID is not set" in result.stderr


def test_explicit_phase_leaves_other_nodes_alone(rendered: dict) -> None:
    assert rendered[("explicit", "files")] == ["2a-node1.json", "2a-node2.json"]


def test_hosts_that_are_no_phase_fail_with_their_names(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    plays = [
        {
            "name": "Not a phase",
            "hosts": "nodes",
            "gather_facts": False,
            "vars_files": [str(ROOT / "tooling" / "phases.yml")],
            "tasks": _render_tasks(out),
        }
    ]
    result = _run(tmp_path, plays, "-l", "node1,node3")
    assert result.returncode != 0
    assert "Cannot tell which phase to deploy" in result.stdout
    assert "node1, node3" in result.stdout
    assert not list(out.iterdir())
