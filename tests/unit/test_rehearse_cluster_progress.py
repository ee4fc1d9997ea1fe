"""`tooling rehearse --phase P` on a cluster, watched: the run directory first, a step bar with ETA and
samples/s fed by rank 0's status file read over SSH, the summary read from rank 0's node at the end;
Ctrl-C leaves the run training and prints the commands that watch, stop and re-attach to it; `--resume RUN`
re-attaches. The nodes are faked at the SSH boundary (tests/unit/fake_nodes.py): node1 reads a local run
directory with the real shell command, so the status files are the trainer's own (ddp.status.RankStatus)
and the summary is a real trainer summary (tests/unit/fixtures/gates)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from ddp.dist import DistEnv
from ddp.status import RankStatus
from tests.unit import fake_nodes
from tests.unit.panel_text import flat, squeezed
from tests.unit.pty_run import run_in_pty
from tests.unit.test_deployment_following import _closed_port, _inventory
from tooling import rehearse
from tooling.cli import app
from tooling.job import cluster_watch, records
from tooling.job.deploy import DeployRequest
from tooling.job.records import Deployment

runner = CliRunner()
SUMMARY = Path(__file__).parent / "fixtures" / "gates" / "phase2a_2x4_cpu.json"  # 8 ranks, 200 steps
RUN_ID = "rehearsal-phase2a-test"
STEPS = 200


def write_rank0(run_dir: Path, state: str, step: int, rate: float = 12.5) -> None:
    """Rank 0's status file as the trainer writes it (ddp/status.py, fields of Telemetry.write_status)."""
    env = DistEnv(0, 0, 8, 4, "node1", 0, "gloo", torch.device("cpu"))
    fields = {"step": step, "max_steps": STEPS, "samples_per_second": rate, "last_checkpoint_step": None}
    RankStatus(run_dir / "status", env, RUN_ID).write(state, **fields)


def finish(run_dir: Path, state: str = "completed") -> dict[str, Any]:
    """The end as rank 0 leaves it: the summary written first, then its final status."""
    summary: dict[str, Any] = {**json.loads(SUMMARY.read_text()), "status": state, "run": RUN_ID}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    write_rank0(run_dir, state, STEPS)
    return summary


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fakes in place; the run root node1 reads (this machine's tmp_path/runs-on-nodes)."""
    fake_nodes.calls.clear()
    fake_nodes.install(monkeypatch.setattr)
    monkeypatch.setattr(cluster_watch.time, "sleep", lambda _s: None)
    root = tmp_path / "runs-on-nodes"
    root.mkdir()
    return root


def _record(inventory: Path, run_root: Path, run_id: str = RUN_ID) -> Deployment:
    record = Deployment(
        phase="2a",
        group="phase2a",
        run_id=run_id,
        inventory=str(inventory.resolve()),
        hosts=["node1", "node2"],
        run_root=str(run_root),
        world_size=8,
    )
    records.save(record)
    return record


@pytest.fixture
def sandbox(tmp_path: Path, nodes: Path, monkeypatch: pytest.MonkeyPatch) -> list[DeployRequest]:
    """A sandbox that is up and a deploy that launches on it: node1's run starts at step 0."""
    inventory = _inventory(tmp_path / "sandbox", _closed_port())
    deployed: list[DeployRequest] = []

    def deploy(request: DeployRequest, _plan: Any, _preflight: Any) -> Deployment:
        deployed.append(request)
        record = _record(inventory, nodes, request.run_id or "")
        write_rank0(Path(record.run_dir), "running", 0)
        return record

    monkeypatch.setattr(rehearse, "ensure_sandbox", lambda _plan, _phase: inventory)
    monkeypatch.setattr(rehearse, "deploy", deploy)
    return deployed


def _launched_run_dir() -> Path:
    """The run directory of the run the (fake) deploy launched: its id is the rehearsal's own."""
    return Path(records.recorded()[-1].run_dir)


def _progressing(monkeypatch: pytest.MonkeyPatch, end: str = "completed") -> None:
    """Each look at the nodes finds rank 0 further on: 50, 100, 150 steps, then the end."""
    looks = iter([50, 100, 150])
    real = fake_nodes.everywhere

    def everywhere(targets: Any, command: str, timeout_s: float = 10.0) -> Any:
        step = next(looks, None)
        if step is None:
            finish(_launched_run_dir(), end)
        else:
            write_rank0(_launched_run_dir(), "running", step)
        return real(targets, command, timeout_s)

    monkeypatch.setattr(fake_nodes.status, "run_everywhere", everywhere)


def test_a_cluster_rehearsal_reads_rank0_over_ssh_and_the_summary_from_its_node(
    tmp_path: Path, nodes: Path, sandbox: list[DeployRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    _progressing(monkeypatch)
    result = runner.invoke(
        app,
        ["rehearse", "--phase", "2a", "--steps", str(STEPS), "--runs-dir", str(runs)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    [request] = sandbox
    run_dir = _launched_run_dir()
    assert run_dir.name == request.run_id
    assert f"training.max_steps={STEPS}" in request.overrides
    lines = result.output.splitlines()
    # Where the run's summary will be, before anything else (the sandbox and the deploy take minutes).
    local = runs / request.run_id  # type: ignore[operator]
    assert lines[0] == f"run directory: {local} (its summary comes here from the nodes)"
    assert f"on the nodes: {run_dir} (node1, node2)" in result.output
    # Only rank 0's file was asked for, from every node, until rank 0 said the run had ended.
    assert fake_nodes.calls and all("/rank0.json" in c and "rank*" not in c for c in fake_nodes.calls)
    assert len(fake_nodes.calls) == 4
    # The summary read from node1 (where rank 0 was), copied here, shown, and the gate as the next step.
    copied = json.loads((local / "summary.json").read_text())
    assert copied == json.loads((run_dir / "summary.json").read_text())
    assert f"run {RUN_ID}: completed" in result.output  # the summary's own name for the run
    assert lines[-1] == f"next: tooling gate --phase 2a --run {local}"
    assert "\x1b[" not in result.output  # not a terminal: no bar


def test_a_run_that_did_not_complete_is_kept_and_exits_1(
    tmp_path: Path, nodes: Path, sandbox: list[DeployRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    _progressing(monkeypatch, end="stopped")
    result = runner.invoke(app, ["rehearse", "--phase", "2a", "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)  # people's lines went to stderr
    assert document["exit_status"] == 1 and "ended stopped" in document["error"]
    assert (Path(document["run_dir"]) / "summary.json").is_file()


def _interrupt_on_look(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    looks = iter(range(1, 100))
    real = fake_nodes.everywhere

    def everywhere(targets: Any, command: str, timeout_s: float = 10.0) -> Any:
        if next(looks) == number:
            raise KeyboardInterrupt
        return real(targets, command, timeout_s)

    monkeypatch.setattr(fake_nodes.status, "run_everywhere", everywhere)


def test_ctrl_c_leaves_the_run_training_and_says_how_to_watch_stop_and_reattach(
    tmp_path: Path, nodes: Path, sandbox: list[DeployRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    _interrupt_on_look(monkeypatch, 3)
    result = runner.invoke(app, ["rehearse", "--phase", "2a", "--runs-dir", str(runs)])
    assert result.exit_code == 130, result.output
    inventory = str((tmp_path / "sandbox").resolve())
    out = squeezed(result.output)
    [request] = sandbox
    run_id = request.run_id
    assert squeezed(f"detached: run {run_id} goes on training on node1, node2") in out
    assert squeezed(f"watch it: tooling status --watch --inventory {inventory}") in out
    assert squeezed(f"stop it: tooling stop --inventory {inventory}") in out
    assert (
        squeezed(f"re-attach: tooling rehearse --phase 2a --runs-dir {runs.resolve()} --resume {run_id}")
        in out
    )
    assert not (runs / str(run_id) / "summary.json").exists()
    # As JSON: the same commands in one document.
    _interrupt_on_look(monkeypatch, 1)
    again = runner.invoke(app, ["rehearse", "--phase", "2a", "--runs-dir", str(runs), "--json"])
    assert again.exit_code == 130
    document = json.loads(again.stdout)
    assert document["exit_status"] == 130 and document["hosts"] == ["node1", "node2"]
    assert document["watch"] == f"tooling status --watch --inventory {inventory}"
    assert document["stop"] == f"tooling stop --inventory {inventory}"
    assert document["resume"].endswith(f"--resume {sandbox[1].run_id}")


def test_resume_reattaches_to_a_recorded_run_and_reads_its_end(tmp_path: Path, nodes: Path) -> None:
    inventory = _inventory(tmp_path / "sandbox", _closed_port())
    record = _record(inventory, nodes)
    finish(Path(record.run_dir))  # it ended while nobody watched: the summary at the first look
    runs = tmp_path / "runs"
    result = runner.invoke(app, ["rehearse", "--phase", "2a", "--runs-dir", str(runs), "--resume", RUN_ID])
    assert result.exit_code == 0, result.output
    assert len(fake_nodes.calls) == 1
    assert (runs / RUN_ID / "summary.json").is_file()
    assert squeezed(result.output).endswith(squeezed(f"next: tooling gate --phase 2a --run {runs / RUN_ID}"))


def test_resume_of_an_unknown_run_or_of_another_phase_is_a_usage_error(tmp_path: Path, nodes: Path) -> None:
    _record(_inventory(tmp_path / "sandbox", _closed_port()), nodes)
    unknown = runner.invoke(app, ["rehearse", "--phase", "2a", "--resume", "nope"])
    assert unknown.exit_code == 2
    assert "no deployment of run nope recorded" in flat(unknown.output) and RUN_ID in flat(unknown.output)
    other = runner.invoke(app, ["rehearse", "--phase", "1", "--resume", RUN_ID])
    assert other.exit_code == 2
    assert f"tooling rehearse --phase 2a --resume {RUN_ID}" in flat(other.output)
    assert fake_nodes.calls == []


@pytest.fixture
def reattachable(tmp_path: Path) -> Iterator[Path]:
    """A recorded run of phase 2a whose rank 0 on node1 steps on (a thread writes its status file) until
    the test ends; the run directory."""
    record = _record(_inventory(tmp_path / "sandbox", _closed_port()), tmp_path / "runs-on-nodes")
    run_dir = Path(record.run_dir)
    write_rank0(run_dir, "running", 10)
    done = threading.Event()

    def train() -> None:
        step = 10
        while not done.wait(0.2) and step < STEPS - 10:
            step += 2
            write_rank0(run_dir, "running", step)

    trainer = threading.Thread(target=train, daemon=True)
    trainer.start()
    yield run_dir
    done.set()
    trainer.join()


def test_on_a_terminal_the_bar_follows_rank0_and_ctrl_c_detaches(tmp_path: Path, reattachable: Path) -> None:
    args = ["rehearse", "--phase", "2a", "--runs-dir", str(tmp_path / "runs"), "--resume", RUN_ID]
    code, out = run_in_pty(
        args, module="tests.unit.fake_nodes", wait_for="samples/s", interrupt_after_s=2.0, timeout_s=60
    )
    assert code == 130, out
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    # The bar: steps of rank 0's max_steps, the job's rate (12.5 per rank x 8 ranks), elapsed and ETA.
    steps = [int(m) for m in re.findall(rf"(\d+)/{STEPS}", text)]
    assert steps and max(steps) > 10, text  # it moved as rank 0 stepped on
    assert "100 samples/s" in text and "ETA" in text
    assert f"detached: run {RUN_ID} goes on training" in text
    assert "watch it: tooling status --watch --inventory" in text and "stop it: tooling stop" in text
    # Nothing stopped the run: rank 0 is still running.
    assert json.loads((reattachable / "status" / "rank0.json").read_text())["state"] == "running"
