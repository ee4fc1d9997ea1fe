"""Every long command ends with the command to run next, on one line that pastes whole (`next: ...`), through
the real CLI with the work under it faked: deploy (follow the run), verify-node (fix and run it again, deploy
the phase, or see which phase comes next), sandbox up (rehearse on the default sandbox, deploy through the
inventory of another one). gate, rehearse, soak and sweep are checked by their own tests."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.test_deployment_following import _closed_port, _deployed, _inventory
from tooling.cli import app
from tooling.job import deploy as deploy_module
from tooling.sandbox import cluster as sandbox_cluster
from tooling.verify import run as verify_run

runner = CliRunner()


def _last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


def test_deploy_ends_with_the_watch_command_of_its_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = _inventory(tmp_path / "site inventory", _closed_port())

    def deploy(request: Any, _plan: Any, _preflight: Any) -> Any:
        return _deployed(request.inventory, "run-a", request.phase, 1000.0)

    monkeypatch.setattr(deploy_module, "deploy", deploy)
    result = runner.invoke(app, ["deploy", "--phase", "2a", "--inventory", str(inventory), "--skip-verify"])
    assert result.exit_code == 0, result.output
    # The inventory's path has a space: quoted so that the pasted line works.
    expected = shlex.join(["tooling", "status", "--watch", "--inventory", str(inventory.resolve())])
    assert _last_line(result.output) == f"next: {expected}"


@pytest.mark.parametrize(
    ("code", "args", "expected"),
    [
        (1, ["node2", "--phase", "2a", "--level", "quick"],
         "next: fix the FAIL rows above, then again: tooling verify-node node2 --phase 2a --inventory {inv} "
         "--level quick"),
        (1, ["--profile", "production"],
         "next: fix the FAIL rows above, then again: tooling verify-node --inventory {inv} "
         "--profile production"),
        (0, ["--phase", "2b"], "next: tooling deploy --phase 2b --inventory {inv}"),
        (0, [], "next: tooling phases (which phase comes next; then `tooling deploy --phase P`)"),
    ],
)  # fmt: skip
def test_verify_node_says_what_follows_its_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, args: list[str], expected: str
) -> None:
    inventory = _inventory(tmp_path / "inventory", _closed_port())
    monkeypatch.setattr(verify_run, "run_verify", lambda *_args, **_kwargs: code)
    result = runner.invoke(app, ["verify-node", *args, "--inventory", str(inventory)])
    assert result.exit_code == code, result.output
    assert _last_line(result.output) == expected.format(inv=inventory)


def _up(settings: Any, **_kwargs: Any) -> sandbox_cluster.UpResult:
    row = sandbox_cluster.HostStatus("node1", settings.container_name("node1"), "running", "10.0.0.2")
    return sandbox_cluster.UpResult(False, [row], "present", 3.0, settings.inventory_dir / "hosts.yml")


def test_sandbox_up_leads_to_a_rehearsal_on_the_default_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_cluster, "up", _up)
    result = runner.invoke(app, ["sandbox", "up", "--nodes", "1", "--no-monitor"])
    assert result.exit_code == 0, result.output
    assert _last_line(result.output) == "next: tooling rehearse --phase 1"


def test_another_sandbox_leads_to_a_deploy_through_its_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_cluster, "up", _up)
    where = tmp_path / "other"
    result = runner.invoke(
        app, ["sandbox", "up", "--nodes", "1", "--prefix", "other", "--inventory", str(where)]
    )
    assert result.exit_code == 0, result.output
    hosts = where / "hosts.yml"
    assert _last_line(result.output) == f"next: tooling deploy --phase 1 --inventory {hosts}"
