"""`tooling verify-node`: target resolution, usage errors (exit 2), report output, and one local run."""

from __future__ import annotations

import io
import json
import runpy
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from tooling.console import ToolingError
from tooling.verify.cli import verify_node
from tooling.verify.judge import CheckResult
from tooling.verify.run import (
    VIEW,
    Level,
    default_inventory,
    group_hosts,
    print_report,
    resolve_target,
    run_verify,
    summary_line,
)

INVENTORY = {
    "_meta": {"hostvars": {"node1": {}, "node2": {}, "node3": {}, "node10": {}, "monitor1": {}}},
    "all": {"children": ["ungrouped", "nodes", "monitoring", "phase2b"]},
    "nodes": {"hosts": ["node1", "node10", "node2", "node3"]},
    "monitoring": {"hosts": ["monitor1"]},
    "phase2b": {"hosts": ["node3"], "children": ["phase2a"]},
    "phase2a": {"hosts": ["node2"], "children": ["phase1"]},
    "phase1": {"hosts": ["node1"]},
}


def test_group_hosts_expands_nested_phase_groups_in_node_order() -> None:
    assert group_hosts(INVENTORY, "phase2b") == ["node1", "node2", "node3"]
    assert group_hosts(INVENTORY, "nodes") == ["node1", "node2", "node3", "node10"]
    with pytest.raises(KeyError):
        group_hosts(INVENTORY, "phase2c")


def test_resolve_target_by_phase_hosts_or_default_group(tmp_path: Path) -> None:
    target = resolve_target(INVENTORY, [], "2a", tmp_path)
    assert (target.hosts, target.scope, target.nproc_per_node) == (["node1", "node2"], "phase 2a", 4)
    assert resolve_target(INVENTORY, ["node2"], "2a", tmp_path).hosts == ["node2"]
    assert resolve_target(INVENTORY, [], None, tmp_path).scope == "group nodes"


@pytest.mark.parametrize(
    ("hosts", "phase", "message"),
    [
        ([], "3", "unknown phase '3'; expected one of: 1, 2a, 2b, 2c"),
        ([], "2c", "has no group 'phase2c' for phase 2c"),
        (["node9"], None, "not in inventory"),
        (["node3"], "2a", "not part of phase 2a (node1, node2): node3"),
    ],
)
def test_usage_errors(tmp_path: Path, hosts: list[str], phase: str | None, message: str) -> None:
    with pytest.raises(ToolingError) as info:
        resolve_target(INVENTORY, hosts, phase, tmp_path)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_missing_inventory_and_bad_profile_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(ToolingError, match="inventory not found") as info:
        run_verify([], None, tmp_path / "nope", "sandbox", as_json=True)
    assert info.value.exit_code == 2
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[nodes]\nnode1\n")
    bad = tmp_path / "profile.yml"
    bad.write_text("cpu_cores: {min: many}\n")
    with pytest.raises(ToolingError, match=r"profile.yml: cpu_cores.min: expected a valid number") as info:
        run_verify([], None, inventory, str(bad), as_json=True)
    assert info.value.exit_code == 2


def _mounted() -> typer.Typer:
    """verify-node mounted as a subcommand, as tooling's own CLI mounts it."""
    app = typer.Typer()
    app.command("verify-node")(verify_node)

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_typer_signature_mounts_and_reports_usage_errors(tmp_path: Path) -> None:
    app, runner = _mounted(), CliRunner()
    help_text = runner.invoke(app, ["verify-node", "--help"]).output
    for option in ("--phase", "--inventory", "--profile", "--json"):
        assert option in help_text
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[nodes]\nnode1\n")
    result = runner.invoke(app, ["verify-node", "--phase", "7", "--inventory", str(inventory)])
    assert isinstance(result.exception, ToolingError)
    assert result.exception.exit_code == 2


@pytest.mark.parametrize(("code", "expected"), [(0, 0), (1, 1)])
def test_module_entry_point_exits_with_the_verdict(
    monkeypatch: pytest.MonkeyPatch, code: int, expected: int
) -> None:
    import tooling.verify.run as run  # verify-node imports run_verify from there when it runs

    monkeypatch.setattr(run, "run_verify", lambda *args, **kwargs: code)
    monkeypatch.setattr(sys, "argv", ["tooling.verify", "verify-node", "--phase", "1"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("tooling.verify", run_name="__main__")
    assert info.value.code == expected


def test_sandbox_inventories_pick_the_sandbox_profile(tmp_path: Path) -> None:
    from tooling.verify.run import is_sandbox_inventory

    generated = {"_meta": {"hostvars": {"node1": {"sandbox_container": "ddp-sandbox-node1"}}}}
    assert is_sandbox_inventory(generated, tmp_path / "inventory")
    assert is_sandbox_inventory({}, tmp_path / "sandbox")
    assert not is_sandbox_inventory(INVENTORY, tmp_path / "production")


def test_default_inventory_follows_ansible_cfg(tmp_path: Path) -> None:
    (tmp_path / "ansible.cfg").write_text("[defaults]\ninventory = inventory/mine\n")
    assert default_inventory(tmp_path) == tmp_path / "inventory" / "mine"


def test_report_table_summary_and_json() -> None:
    rows = [
        CheckResult("node1", "cpu.cores", "PASS", "32 cores", ">= 16 cores", "within range"),
        CheckResult("node2", "ssh", "FAIL", "unreachable", "reachable", "No route to host"),
        CheckResult("(cluster)", "net.gloo_allreduce", "SKIP", "-", ">= 1 GB/s", "fewer than 2 nodes"),
    ]
    buffer = io.StringIO()
    print_report(Console(file=buffer, width=140), rows, "phase 2a", "production")
    text = buffer.getvalue()
    assert "node1: PASS" in text and "node2: FAIL" in text and "No route to host" in text
    assert "network across the nodes" in text
    line = summary_line(rows, "phase 2a", "production")
    assert "2 node(s)" in line and "1 pass, 0 warn, 1 fail, 1 skip" in line and "node2: ssh" in line
    document = json.loads(VIEW.to_json(rows, scope="phase 2a"))
    assert document["verdict"] == "FAIL"
    assert document["results"][1]["reason"] == "No route to host"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_local_inventory(tmp_path: Path) -> Path:
    """Two 'nodes' on this machine over a local connection (the venv running the tests as their training
    venv) and a dead host, node3, in group `dead`."""
    venv = Path(sys.executable).parent.parent
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n"
        "  children:\n"
        "    nodes:\n"
        "      vars:\n"
        "        ansible_connection: local\n"
        f"        ansible_python_interpreter: {sys.executable}\n"
        f"        pytorch_venv_path: {venv}\n"
        f"        ddp_trainer_run_root: {tmp_path}/runs/ddp\n"
        "        ansible_host: 127.0.0.1\n"
        "        verify_iperf_seconds: 1\n"
        "        verify_gloo_iters: 2\n"
        "        verify_gloo_port: " + str(_closed_port()) + "\n"
        "      hosts:\n"
        "        node1:\n"
        "        node2:\n"
        "    dead:\n"
        "      hosts:\n"
        "        node3:\n"
        "          ansible_connection: ssh\n"
        "          ansible_host: 127.0.0.1\n"
        f"          ansible_port: {_closed_port()}\n"
    )
    return inventory


NEEDS_LOCAL_TOOLS = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("numactl", "mpirun", "iperf3")),
    reason="needs numactl, openmpi-bin and iperf3 on this machine (the 'nodes' are localhost)",
)


def run_local(tmp_path: Path, hosts: list[str], **options: Any) -> tuple[int, dict[str, Any]]:
    """`verify-node --json` on write_local_inventory's hosts: the exit code and the document."""
    buffer = io.StringIO()
    code = run_verify(
        hosts,
        None,
        write_local_inventory(tmp_path),
        "sandbox",
        as_json=True,
        runs_dir=tmp_path / "runs",
        out=Console(file=buffer, width=200),
        **options,
    )
    return code, json.loads(buffer.getvalue())


@pytest.mark.slow
@NEEDS_LOCAL_TOOLS
@pytest.mark.parametrize("level", ["full", "quick"])
def test_local_run_judges_reachable_nodes_and_fails_the_unreachable_one(tmp_path: Path, level: str) -> None:
    """The whole command against this machine: two 'nodes' over a local connection, one dead host."""
    code, document = run_local(tmp_path, ["node1", "node2", "node3"], level=Level(level))
    assert code == 1
    failing = [r for r in document["results"] if r["status"] == "FAIL"]
    assert [(r["host"], r["check"]) for r in failing] == [("node3", "ssh")], [
        (r["host"], r["check"], r["measured"], r["reason"]) for r in failing
    ]
    assert "Connection refused" in failing[0]["reason"]
    by_check = {(r["host"], r["check"]): r["status"] for r in document["results"]}
    assert by_check[("node1", "torch.version")] == "PASS"
    assert by_check[("node2", "mpi.version")] == "PASS"
    assert by_check[("(cluster)", "net.gloo_allreduce")] == "PASS"
    # The quick level (deploy's pre-flight) still joins the nodes with Gloo, but measures no iperf3 pair.
    iperf = sorted((host, check) for host, check in by_check if check.startswith("net.iperf3"))
    if level == "quick":
        assert iperf == [("(cluster)", "net.iperf3")]
        assert by_check[("(cluster)", "net.iperf3")] == "SKIP"
    else:
        assert iperf == [("node1", "net.iperf3 -> node2")]
    assert document["level"] == level
    assert Path(document["run"]["artifact_dir"]).is_dir()


# --- levels -------------------------------------------------------------------------------------------------


def test_level_option_defaults_to_full_and_rejects_others(monkeypatch: pytest.MonkeyPatch) -> None:
    import tooling.verify.run as run
    from tooling.verify.levels import Level

    seen: dict[str, object] = {}
    monkeypatch.setattr(run, "run_verify", lambda *args, **kwargs: seen.update(kwargs) or 0)
    app, runner = _mounted(), CliRunner()
    # rich boxes and wraps the help: read it without the box lines.
    help_text = " ".join(runner.invoke(app, ["verify-node", "--help"]).output.replace("│", " ").split())
    assert "--level" in help_text and "full (default, the acceptance run)" in help_text
    assert runner.invoke(app, ["verify-node"]).exit_code == 0
    assert seen["level"] is Level.full
    assert runner.invoke(app, ["verify-node", "--level", "quick"]).exit_code == 0
    assert seen["level"] is Level.quick
    assert runner.invoke(app, ["verify-node", "--level", "thorough"]).exit_code == 2


def test_deploy_preflight_runs_the_quick_level(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tooling.verify.run as cli
    from tooling.job.deploy import DeployRequest

    seen: dict[str, object] = {}
    monkeypatch.setattr(cli, "run_verify", lambda *args, **kwargs: seen.update(kwargs, args=args) or 0)
    assert cli.preflight(DeployRequest(phase="2a", inventory=tmp_path / "hosts.yml", runs_dir=tmp_path)) == 0
    assert seen["level"] is cli.Level.quick
    assert seen["args"] == ([], "2a", tmp_path / "hosts.yml", None)


def test_level_and_the_profiles_dcgm_level_reach_the_playbook(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tooling.verify.run as cli

    seen: dict[str, object] = {}
    monkeypatch.setattr(cli, "run_playbook", lambda *args, **kwargs: seen.update(kwargs) or "ran")
    target = cli.Target(["node1"], "node1", None)
    cli.collect(
        target,
        tmp_path,
        tmp_path,
        install_iperf3=False,
        progress_console=None,
        level=cli.Level.quick,
        dcgm_diag_level=3,
        rdma_fabric=False,
    )
    assert seen["extravars"] == {
        "verify_target": "node1",
        "verify_install_iperf3": False,
        "verify_level": "quick",
        "verify_dcgm_diag_level": 3,
        "verify_ib_write_bw": False,
    }
