"""The node launcher (roles/ddp_trainer/templates/ddp-launch.j2) refuses to start torchrun while a port the
job needs is taken on its node, and says which port, which setting it comes from and who holds it.

The template is rendered with jinja2 the way Ansible renders it (trim_blocks, the `quote` filter), with the
launch tasks/phase.yml derives (tooling.plan.launch.derive_launch, what its `ddp_launch` filter returns);
the rendered script runs here, and its port check (`python -m ddp.preflight`) against sockets this test
holds open.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from ddp.ports import free_port_block
from tooling.plan.launch import derive_launch
from tooling.plan.phases import DEFAULT_PHASES_FILE, PhasePlan

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "roles" / "ddp_trainer" / "templates"
NPROC = 3
ADDRESSES = {"node1": "192.0.2.11", "node2": "192.0.2.12"}


def launch_vars(rdzv_port: int, base_port: int, rendezvous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Phase 2a of the project's plan with this test's ports and NPROC ranks a node, derived as the role
    derives it."""
    data = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    for phase in data["phases"].values():
        phase["nproc_per_node"] = NPROC
    data["rendezvous"] = {**data["rendezvous"], "port": rdzv_port, **(rendezvous or {})}
    data["metrics"] = {"base_port": base_port}
    groups = {"nodes": ["node1", "node2"], "phase1": ["node1"], "phase2a": ["node2", "node1"]}
    hostvars = {host: {"ansible_host": address} for host, address in ADDRESSES.items()}
    return derive_launch(PhasePlan.model_validate(data), groups, hostvars, phase="2a").as_vars()


def render(
    tmp: Path,
    *,
    host: str,
    rdzv_port: int,
    base_port: int,
    rendezvous: dict[str, Any] | None = None,
    warm_start: bool = False,
) -> Path:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        trim_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    torchrun = tmp / "torchrun"
    # Stands in for torchrun: leaves a mark, so a test can tell whether the launcher got that far.
    torchrun.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(tmp / 'torchrun-started'))}\n")
    torchrun.chmod(0o755)
    facts = {
        "ansible_managed": "Ansible managed",
        "inventory_hostname": host,
        "ddp_trainer_service_name": "ddp-trainer",
        "ddp_trainer_run_root": str(tmp / "runs"),
        "ddp_trainer_torchrun_extra_args": [],
        "ddp_trainer_warm_start": warm_start,
        "ddp_trainer_metrics_bind_address": "127.0.0.1",
        "_ddp_trainer_torchrun": str(torchrun),
        "_ddp_trainer_python": sys.executable,
        "_ddp_trainer_config_file": str(tmp / "trainer.yaml"),
        "_ddp_trainer_env_file": str(tmp / "trainer.env"),
        "_ddp_trainer_run_env_file": str(tmp / "run.env"),
        "_ddp_trainer_run_args_file": str(tmp / "run.args"),
        "_ddp_trainer_launch": launch_vars(rdzv_port, base_port, rendezvous),
    }
    script = tmp / f"ddp-launch-{host}"
    script.write_text(env.get_template("ddp-launch.j2").render(**facts))
    if not (tmp / "trainer.yaml").exists():
        (tmp / "trainer.yaml").write_text("workload: {kind: digits}\n")
    return script


def launch(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DDP_RUN_ID": "run-1", "DDP_NODE_NAME": "from-unit"}
    return subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@contextmanager
def held(port: int) -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1:port, owned by this test's process."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def ports() -> tuple[int, int]:
    """(rendezvous port, metrics base port), all free."""
    block = free_port_block(NPROC + 1)
    return block + NPROC, block


def test_free_ports_pass_and_the_script_parses(tmp_path: Path, ports: tuple[int, int]) -> None:
    rdzv, base = ports
    script = render(tmp_path, host="node1", rdzv_port=rdzv, base_port=base)
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    result = launch(script, "--check-ports")
    assert result.returncode == 0, result.stderr
    assert "in use" not in result.stderr
    assert not (tmp_path / "torchrun-started").exists()


def test_rendezvous_port_in_use_is_named_with_its_setting_and_holder(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    rdzv, base = ports
    script = render(tmp_path, host="node1", rdzv_port=rdzv, base_port=base)
    with held(rdzv):
        result = launch(script, "--check-ports")
    assert result.returncode == 2
    assert (
        f"node1: port {rdzv} (rendezvous.port in tooling/phases.yml) is in use by pid {os.getpid()} "
        in result.stderr
    )
    assert result.stderr.strip().splitlines()[-1].startswith(f"node1: port {rdzv} ")


def test_only_the_rendezvous_host_checks_the_rendezvous_port(tmp_path: Path, ports: tuple[int, int]) -> None:
    rdzv, base = ports
    with held(rdzv):
        other = launch(render(tmp_path, host="node2", rdzv_port=rdzv, base_port=base), "--check-ports")
        alone = launch(
            render(tmp_path, host="node1", rdzv_port=rdzv, base_port=base), "--standalone", "--check-ports"
        )
    assert other.returncode == 0, other.stderr
    assert alone.returncode == 0, alone.stderr


def test_metrics_port_in_use_names_the_rank(tmp_path: Path, ports: tuple[int, int]) -> None:
    rdzv, base = ports
    script = render(tmp_path, host="node2", rdzv_port=rdzv, base_port=base)
    with held(base + 2):
        result = launch(script, "--check-ports")
    assert result.returncode == 2
    setting = f"(metrics.base_port {base} in tooling/phases.yml + local rank 2)"
    assert f"node2: port {base + 2} {setting} on 127.0.0.1 is in use by pid {os.getpid()}" in result.stderr
    assert f"port {base} (" not in result.stderr and f"port {base + 1} (" not in result.stderr


def test_settings_of_the_run_decide_which_ports_are_checked(tmp_path: Path, ports: tuple[int, int]) -> None:
    rdzv, base = ports
    script = render(tmp_path, host="node2", rdzv_port=rdzv, base_port=base)
    moved = free_port_block(NPROC)
    with held(moved):
        result = launch(script, "--set", f"metrics.base_port={moved}", "--check-ports")
    assert result.returncode == 2
    assert f"port {moved} (metrics.base_port {moved} set for this run + local rank 0)" in result.stderr
    with held(base):
        assert launch(script, "--set", "metrics.enabled=false", "--check-ports").returncode == 0
        fewer = launch(
            script, "--standalone", "--nproc-per-node", "1", "--set", f"metrics.base_port={base + 1}"
        )
    assert fewer.returncode == 0, fewer.stderr


def test_a_taken_port_stops_the_launch_before_torchrun(tmp_path: Path, ports: tuple[int, int]) -> None:
    rdzv, base = ports
    script = render(tmp_path, host="node1", rdzv_port=rdzv, base_port=base)
    with held(base):
        dry = launch(script, "--dry-run")
        result = launch(script)
    # --dry-run only prints (the role runs it on every provisioning, with a job possibly running).
    assert dry.returncode == 0 and "--rdzv-endpoint" in dry.stdout
    assert result.returncode == 2
    assert "node1: not starting the trainer" in result.stderr
    assert not (tmp_path / "torchrun-started").exists()
    assert launch(script).returncode == 0
    assert (tmp_path / "torchrun-started").exists()


def test_bad_config_or_process_count_is_reported_not_a_traceback(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    rdzv, base = ports
    script = render(tmp_path, host="node2", rdzv_port=rdzv, base_port=base)
    result = launch(script, "--nproc-per-node", "four", "--check-ports")
    assert (
        result.returncode == 2
        and "--nproc-per-node: expected a positive number (got 'four')" in result.stderr
    )
    (tmp_path / "trainer.yaml").write_text("workload: {kind: digits}\nmetrics: {base_prot: 1}\n")
    result = launch(script, "--check-ports")
    assert result.returncode == 2 and "metrics.base_prot: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("rendezvous", "expected"),
    [
        ({}, "join_timeout=120,state_poll_interval=0.25"),
        ({"last_call_timeout_s": 45}, "join_timeout=120,last_call_timeout=45,state_poll_interval=0.25"),
        (
            {"read_timeout_s": 90, "last_call_timeout_s": 45, "monitor_interval_s": 0.5},
            "join_timeout=120,last_call_timeout=45,read_timeout=90,state_poll_interval=0.5",
        ),
        # ddp-c10d's poll is the monitor's interval up to torch's own second (ddp/rendezvous_poll.py) ...
        ({"monitor_interval_s": 5}, "join_timeout=120,state_poll_interval=1"),
        # ... and torch's own backend knows no such key.
        ({"backend": "c10d"}, "join_timeout=120"),
    ],
)
def test_rendezvous_timeouts_reach_torchrun(
    tmp_path: Path, ports: tuple[int, int], rendezvous: dict[str, Any], expected: str
) -> None:
    rdzv, base = ports
    script = render(tmp_path, host="node1", rdzv_port=rdzv, base_port=base, rendezvous=rendezvous)
    argv = shlex.split(launch(script, "--dry-run").stdout)
    assert argv[argv.index("--rdzv-conf") + 1] == expected
    assert argv[argv.index("--rdzv-endpoint") + 1] == f"{ADDRESSES['node1']}:{rdzv}"
    assert f"metrics.base_port={base}" in argv


@pytest.mark.parametrize("warm_start", [True, False], ids=["warm start", "cold"])
def test_the_warm_start_puts_torchrun_under_its_supervisor(
    tmp_path: Path, ports: tuple[int, int], warm_start: bool
) -> None:
    """ddp_trainer_warm_start: the unit's main process is the supervisor (ddp/warm_supervisor.py), which
    starts the warm pool beside torchrun and outlives both; without it the launcher execs torchrun."""
    rdzv, base = ports
    script = render(tmp_path, host="node1", rdzv_port=rdzv, base_port=base, warm_start=warm_start)
    result = launch(script, "--dry-run")
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    torchrun = str(tmp_path / "torchrun")
    expected = [sys.executable, "-m", "ddp.warm_supervisor", torchrun] if warm_start else [torchrun]
    assert argv[: len(expected)] == expected
    assert argv.count(torchrun) == 1 and "ddp.real_ddp_trainer" in argv
