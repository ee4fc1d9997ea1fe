"""ddp/preflight.py, the node's port check before torchrun starts: taken ports are named with their setting
and holder, free ones pass, and bad input is a message with exit status 2, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ddp import preflight
from ddp.ports import free_port_block

NPROC = 2


@contextmanager
def held(port: int, address: str = "127.0.0.1") -> Iterator[None]:
    """A socket of this test's process listening on address:port."""
    with socket.socket() as sock:
        sock.bind((address, port))
        sock.listen()
        yield


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "trainer.yaml"
    path.write_text("workload: {kind: digits}\n")
    return path


@pytest.fixture
def base() -> int:
    """The metrics base port: NPROC free ports, then one more for the rendezvous."""
    return free_port_block(NPROC + 1)


def args(config: Path, base: int, *extra: str, rdzv: bool = True) -> list[str]:
    return [
        "--node",
        "node1",
        "--nproc-per-node",
        str(NPROC),
        *(["--rdzv-port", str(base + NPROC)] if rdzv else []),
        "--plan-metrics-base-port",
        str(base),
        "--config",
        str(config),
        "--set",
        "metrics.bind_address=127.0.0.1",
        "--set",
        f"metrics.base_port={base}",
        *extra,
    ]


def test_free_ports_pass(config: Path, base: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert preflight.main(args(config, base)) == 0
    assert capsys.readouterr().err == ""


def test_taken_rendezvous_port_names_the_setting_and_the_holder(
    config: Path, base: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rdzv = base + NPROC
    with held(rdzv):
        code = preflight.main(args(config, base))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == preflight.EXIT_PROBLEM
    assert err[0] == "node1: not starting the trainer; stop what holds these ports or change them:"
    # The detail last: Ansible shows a failed command's last stderr line.
    assert err[-1].startswith(
        f"node1: port {rdzv} (rendezvous.port in tooling/phases.yml) is in use by pid {os.getpid()} ("
    )


def test_a_node_without_the_rendezvous_does_not_check_its_port(config: Path, base: int) -> None:
    with held(base + NPROC):
        assert preflight.main(args(config, base, rdzv=False)) == 0


def test_taken_metrics_port_names_the_rank_and_where_the_port_comes_from(config: Path, base: int) -> None:
    plan = preflight.plan_from_args(args(config, base, rdzv=False))
    with held(base + 1):
        (problem,) = preflight.port_problems(plan)
    assert problem.startswith(
        f"node1: port {base + 1} (metrics.base_port {base} in tooling/phases.yml + local rank 1) "
        f"on 127.0.0.1 is in use by pid {os.getpid()} ("
    )
    moved = free_port_block(NPROC)
    run_plan = preflight.plan_from_args(args(config, base, "--set", f"metrics.base_port={moved}", rdzv=False))
    with held(moved):
        (problem,) = preflight.port_problems(run_plan)
    assert f"port {moved} (metrics.base_port {moved} set for this run + local rank 0)" in problem


def test_disabled_metrics_need_no_ports(config: Path, base: int) -> None:
    plan = preflight.plan_from_args(args(config, base, "--set", "metrics.enabled=false", rdzv=False))
    with held(base):
        assert preflight.port_problems(plan) == []


def test_ports_past_65535_are_refused(config: Path) -> None:
    plan = preflight.plan_from_args(args(config, 65535, rdzv=False))
    assert preflight.port_problems(plan) == [
        "node1: port 65536 (metrics.base_port 65535 in tooling/phases.yml + local rank 1) is past 65535; "
        "lower metrics.base_port"
    ]


def test_holder_of_a_port_nobody_holds_points_at_ss(base: int) -> None:
    assert preflight.port_holder(base).startswith("another process (`ss -ltnp")
    assert not preflight.port_taken("127.0.0.1", base)
    with held(base):
        assert preflight.port_taken("127.0.0.1", base)
        assert preflight.port_holder(base).startswith(f"pid {os.getpid()} (")


def test_an_address_that_is_not_this_nodes_warns_instead_of_failing(base: int) -> None:
    warnings: list[str] = []
    # TEST-NET-1 is nobody's address here: the trainer reports a bind failure itself.
    assert not preflight.port_taken("192.0.2.1", base, warn=warnings.append)
    assert warnings and warnings[0].startswith(f"cannot test 192.0.2.1:{base}: ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--nproc-per-node", "four"], "node1: --nproc-per-node: expected a positive number (got 'four')"),
        (["--nproc-per-node", "0"], "node1: --nproc-per-node: expected a positive number (got '0')"),
        (["--set", "metrics.base_prot=1"], "metrics.base_prot: unknown key"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(
    config: Path, base: int, change: list[str], message: str
) -> None:
    # As the launcher runs it: a separate interpreter, stderr and the exit status are all it sees.
    result = subprocess.run(
        [sys.executable, "-m", "ddp.preflight", *args(config, base, rdzv=False), *change],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_preflight_resolves_the_metrics_address_without_loading_torch() -> None:
    """It runs on every launch: ddp.metrics (and with it torch) would cost seconds each time."""
    code = "import sys, ddp.preflight; print('torch' in sys.modules, 'ddp.metrics' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=root
    )
    assert result.stdout.split() == ["False", "False"]
