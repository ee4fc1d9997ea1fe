"""`tooling deploy --phase P --fallback F`: which run continues where, and the refusals, before it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_deploy_plan import NESTED
from tooling.console import ToolingError
from tooling.job import deploy as deploy_module
from tooling.job import records
from tooling.job.deploy import DeployRequest, fallback_request
from tooling.plan.phases import load_phases


@pytest.fixture
def inventory_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(deploy_module, "load_inventory", lambda _path: NESTED)
    return tmp_path / "inventory"


def _record(
    inventory: Path, state: Path, phase: str = "2a", hosts: tuple[str, ...] = ("node1", "node2")
) -> None:
    records.save(
        records.Deployment(
            phase=phase,
            group=f"phase{phase}",
            run_id="phase2a-20261125-120000",
            inventory=str(inventory),
            hosts=list(hosts),
            run_root="/var/lib/ddp/runs",
            world_size=4 * len(hosts),
        ),
        state,
    )


def test_fallback_continues_the_recorded_run_on_the_smaller_phase(
    inventory_dir: Path, tmp_path: Path
) -> None:
    _record(inventory_dir, tmp_path / "state")
    request = DeployRequest(phase="2a", inventory=inventory_dir, overrides=["training.max_steps=90"])
    continued = fallback_request(request, load_phases(), "1", tmp_path / "state")
    assert (continued.phase, continued.run_id, continued.fallback_from) == (
        "1",
        "phase2a-20261125-120000",
        "2a",
    )
    assert continued.restart and not continued.provision  # the failed run's leftovers are replaced, in place
    assert continued.overrides == ["training.max_steps=90"]


@pytest.mark.parametrize(
    ("phase", "fallback", "record_phase", "run_id", "message"),
    [
        ("1", "2a", "1", None, "not fewer than phase 1's 4"),
        ("2a", "2a", "2a", None, "not fewer than"),
        ("2a", "1", "1", None, "is phase 1's 'phase2a-20261125-120000', not phase 2a's"),
        ("2a", "1", "2a", "mine", "leave out --run-id"),
    ],
)
def test_fallback_refusals(
    inventory_dir: Path,
    tmp_path: Path,
    phase: str,
    fallback: str,
    record_phase: str,
    run_id: str | None,
    message: str,
) -> None:
    _record(inventory_dir, tmp_path / "state", phase=record_phase)
    request = DeployRequest(phase=phase, inventory=inventory_dir, run_id=run_id)
    with pytest.raises(ToolingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fallback_request(request, load_phases(), fallback, tmp_path / "state")


def test_fallback_needs_a_recorded_run(inventory_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolingError, match="no deployment recorded"):
        fallback_request(
            DeployRequest(phase="2a", inventory=inventory_dir), load_phases(), "1", tmp_path / "none"
        )


def test_fallback_nodes_must_hold_the_runs_checkpoints(inventory_dir: Path, tmp_path: Path) -> None:
    # The recorded run never ran on node1 (a hand-edited inventory): node1 has none of its checkpoints.
    _record(inventory_dir, tmp_path / "state", hosts=("node2", "node3"))
    with pytest.raises(ToolingError, match="node1 did not take part in run"):
        fallback_request(
            DeployRequest(phase="2a", inventory=inventory_dir), load_phases(), "1", tmp_path / "state"
        )
