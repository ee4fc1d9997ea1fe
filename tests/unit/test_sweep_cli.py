"""`tooling sweep` end to end with a fake trial runner: trials, ranking, sweep.json/sweep.md, exit codes,
then `--lock`; and the cluster runner's handling of launches that fail."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.progress import Progress
from typer.testing import CliRunner

from ddp.config import load_config
from tests.unit.panel_text import flat
from tests.unit.sweep_fakes import FakeTrials, install_fake, summary, use_production_dir
from tests.unit.test_deploy_plan import inventory
from tooling import console as console_module
from tooling.cli import app
from tooling.console import CheckFailed
from tooling.job import deploy as deploy_module
from tooling.job import production, records
from tooling.plan.phases import load_phases
from tooling.runner import RunResult
from tooling.sweep import trials as trials_module
from tooling.sweep.records import SweepStore
from tooling.sweep.run import EtaColumn
from tooling.sweep.trials import ClusterTrials, TrialSpec

runner = CliRunner()


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return use_production_dir(monkeypatch, tmp_path)


def _sweep(tmp_path: Path, *args: str, input: str | None = None) -> Any:
    return runner.invoke(app, ["sweep", "--sweeps-dir", str(tmp_path / "sweeps"), *args], input=input)


def test_sweep_ranks_records_and_locks_the_winner(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = install_fake(
        monkeypatch,
        FakeTrials(
            {
                frozenset({"training.batch_size=16", "optimizer.lr=0.01"}): summary(throughput=100.0),
                frozenset({"training.batch_size=16", "optimizer.lr=0.1"}): summary(
                    throughput=900.0, nonfinite=2
                ),
                frozenset({"training.batch_size=32", "optimizer.lr=0.01"}): summary(
                    throughput=300.0, sigma=3.0
                ),
                frozenset(
                    {"training.batch_size=32", "optimizer.lr=0.1"}
                ): "torchrun exited 1 (see s1-t04.log)",
            }
        ),
    )
    result = _sweep(
        tmp_path,
        "--phase",
        "1",
        "--local",
        "--id",
        "s1",
        "--grid",
        "batch_size=16,32",
        "--grid",
        "lr=0.01,0.1",
        "--steps",
        "20",
        "--set",
        "workload.hidden_dim=64",
    )
    assert result.exit_code == 0, result.output
    assert fake.modes == ["local"] and len(fake.prepared) == 1
    assert [s.run_id for s in fake.ran] == ["s1-t01", "s1-t02", "s1-t03", "s1-t04"]
    first = fake.ran[0].overrides
    # Trial defaults, then the user's --set, the sweep's step count, then the trial's own values.
    assert first == [
        "checkpoint.enabled=false",
        "metrics.bind_address=127.0.0.1",
        "workload.hidden_dim=64",
        "training.max_steps=20",
        "training.batch_size=16",
        "optimizer.lr=0.01",
    ]
    out = flat(result.output)
    assert "trial 3/4 batch_size=32 lr=0.01: 300.0 samples/s ± 3.0" in out
    assert "best: trial 3" in out and "--lock --phase 1 --id s1" in out

    store = SweepStore(tmp_path / "sweeps", "s1")
    lines = store.trials_path.read_text().splitlines()
    assert [json.loads(line)["trial"] for line in lines] == [1, 2, 3, 4]
    done = json.loads((store.dir / "sweep.json").read_text())
    assert done["best"] == 3 and done["ranking"]["ranked"] == [3, 1]
    assert done["ranking"]["excluded"] == [{"trial": 2, "why": "2 non-finite loss(es)"}]
    assert done["ranking"]["failed"] == [{"trial": 4, "why": "torchrun exited 1 (see s1-t04.log)"}]
    assert done["trials"][1]["loss_fell"] is True and done["trials"][1]["nonfinite"] == 2
    markdown = (store.dir / "sweep.md").read_text()
    assert "| 1 | 3 | batch_size=32 lr=0.01 | 300.0 | 3.0 | 5.0% | 2.3 -> 1.1 |" in markdown
    assert "| 4 | batch_size=32 lr=0.1 | - | - -> - | - | torchrun exited 1 (see s1-t04.log) |" in markdown

    # --lock without --id takes the phase's latest sweep.
    result = _sweep(tmp_path, "--lock", "--phase", "1")
    assert result.exit_code == 0, result.output
    assert "version 1" in flat(result.output)
    locked = folder / "phase1-v1.yaml"
    config = load_config(locked)
    assert (config.training.batch_size, config.optimizer.lr) == (32, 0.01)
    # The trial-only settings (--set, steps, checkpoints off) are not production settings.
    assert set(yaml.safe_load(locked.read_text())) == {"base", "training", "optimizer"}
    assert config.workload.model_dump()["hidden_dim"] == 1024 and config.checkpoint.enabled

    result = _sweep(tmp_path, "--lock", "--phase", "1", "--id", "s1", "--trial", "2")
    assert result.exit_code == 2 and "trial 2 cannot be locked: 2 non-finite" in flat(result.output)
    result = _sweep(tmp_path, "--lock", "--phase", "2a", "--id", "s1")
    assert result.exit_code == 2 and "a sweep of phase 1, not 2a" in flat(result.output)
    result = _sweep(tmp_path, "--lock", "--phase", "1", "--grid", "lr=1")
    assert result.exit_code == 2 and "--lock takes no --grid" in flat(result.output)
    assert sorted(p.name for p in folder.iterdir()) == [
        "phase1-v1.evidence.json",
        "phase1-v1.yaml",
        "phase1.current",
    ]


def test_a_sweep_where_nothing_qualifies_exits_1_and_still_records(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_fake(monkeypatch, FakeTrials(default=summary(first=1.0, last=1.5)))
    result = _sweep(tmp_path, "--phase", "1", "--local", "--id", "bad", "--grid", "lr=0.5,0.9")
    assert result.exit_code == 1, result.output
    assert "no trial qualifies" in flat(result.output)
    done = json.loads((tmp_path / "sweeps" / "bad" / "sweep.json").read_text())
    assert done["best"] is None and len(done["ranking"]["excluded"]) == 2
    result = _sweep(tmp_path, "--lock", "--phase", "1")
    assert result.exit_code == 2 and not folder.exists()


def test_cluster_sweep_checks_the_inventory_before_anything_runs(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(deploy_module, "load_inventory", lambda _path: {"phase1": {"hosts": ["node1"]}})
    launched: list[Any] = []
    monkeypatch.setattr(trials_module, "deploy", lambda *a, **k: launched.append(a))
    result = _sweep(tmp_path, "--phase", "2a", "--inventory", str(tmp_path), "--grid", "lr=0.1,0.2")
    assert result.exit_code == 2, result.output
    assert "has no group 'phase2a'" in flat(result.output)
    assert launched == [] and not (tmp_path / "sweeps").exists()


def _cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ClusterTrials:
    monkeypatch.chdir(tmp_path)  # _record's relative inventory "inv" resolves under tmp_path
    return ClusterTrials(load_phases(), "1", tmp_path / "inv", tmp_path / "trials", timeout_s=60)


def _record(run_id: str) -> records.Deployment:
    return records.Deployment("1", "phase1", run_id, str(Path("inv").resolve()), ["node1"], "/r", 4)


def test_cluster_trial_relaunches_and_fetches_the_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trials = _cluster(monkeypatch, tmp_path)
    requests: list[Any] = []

    def fake_deploy(request: Any, _plan: Any) -> records.Deployment:
        requests.append(request)
        return _record(request.run_id)

    monkeypatch.setattr(trials_module, "deploy", fake_deploy)
    monkeypatch.setattr(trials_module, "fetch_summary", lambda inv, host, run_dir, timeout: summary())
    result = trials.run(TrialSpec(1, "s1-t01", ["optimizer.lr=0.1"]))
    assert result.error is None and result.summary == summary()
    assert json.loads((tmp_path / "trials" / "s1-t01" / "summary.json").read_text()) == summary()
    request = requests[0]
    assert (request.provision, request.verify, request.restart) == (False, False, False)
    assert request.overrides == ["optimizer.lr=0.1"] and request.run_id == "s1-t01"
    trials.run(TrialSpec(2, "s1-t02", []))
    assert requests[1].restart is True  # replaces the sweep's own previous run if it lingers


def test_cluster_launch_failures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    trials = _cluster(monkeypatch, tmp_path)

    def refused(request: Any, _plan: Any) -> None:
        raise CheckFailed("launch failed: A run is already active: node1 (phase1-prod)")

    monkeypatch.setattr(trials_module, "deploy", refused)
    # Nothing of the trial started: the cluster is at fault, the sweep stops, the trial stays to run.
    with pytest.raises(CheckFailed, match=r"trial 1 could not be launched: .*already active"):
        trials.run(TrialSpec(1, "s1-t01", []))

    restarts: list[bool] = []

    def ranks_died(request: Any, _plan: Any) -> None:
        restarts.append(request.restart)
        # deploy records the run once the launch went through, then waits for the ranks.
        records.save(_record(request.run_id))
        raise CheckFailed(f"run {request.run_id} failed while starting")

    monkeypatch.setattr(trials_module, "deploy", ranks_died)
    # The trial itself failed (a batch too big, say): recorded as failed, the sweep goes on.
    result = trials.run(TrialSpec(2, "s1-t02", ["training.batch_size=4096"]))
    assert result.summary is None and "s1-t02 failed while starting" in (result.error or "")
    trials.run(TrialSpec(3, "s1-t03", []))
    # A refused launch never licenses replacing someone else's run; the sweep's own failed one may be.
    assert restarts == [False, True]


PHASE1_NODES = inventory({"phase1": ["node1"], "nodes": ["node1"], "monitoring": ["mon1"]})


@pytest.fixture
def ansible(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The cluster runner over the real deploy(), with Ansible and the nodes faked: the playbooks run, in
    order. launch.yml fails for a run id that ends in "-refused"."""
    ran: list[str] = []

    def run_playbook(playbook: str, **kwargs: Any) -> RunResult:
        ran.append(playbook)
        run_id = kwargs["extravars"]["ddp_trainer_run_id"]
        if playbook.endswith("launch.yml") and run_id.endswith("-refused"):
            return RunResult(2, "failed", "node1: unit ddp-trainer not found", tmp_path, tmp_path)
        published = {
            "run_id": run_id,
            "phase": "1",
            "group": "phase1",
            "hosts": ["node1"],
            "world_size": 4,
            "rendezvous_endpoint": "172.16.0.2:29400",
            "metrics_endpoints": ["http://172.16.0.2:9500/metrics"],
            "run_root": "/r",
        }
        stats = {"ddp_launch": published} if playbook.endswith("launch.yml") else {}
        return RunResult(0, "successful", "ok", tmp_path, tmp_path, custom_stats=stats)

    monkeypatch.setattr(deploy_module, "load_inventory", lambda _path: PHASE1_NODES)
    monkeypatch.setattr(deploy_module, "run_playbook", run_playbook)
    monkeypatch.setattr(deploy_module, "wait_for_ranks", lambda *_args, **_kwargs: [])
    monkeypatch.setattr(trials_module, "fetch_summary", lambda *_args: summary())
    return ran


CONFIGURE_AND_LAUNCH = ["playbooks/trainer.yml", "playbooks/targets.yml", "playbooks/launch.yml"]
LAUNCH_ALONE = ["playbooks/launch.yml"]


def _ran(ansible: list[str], trials: ClusterTrials, spec: TrialSpec) -> list[str]:
    ansible.clear()
    assert trials.run(spec).error is None
    return list(ansible)


def test_cluster_trials_configure_the_nodes_once(
    ansible: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trials = _cluster(monkeypatch, tmp_path)
    assert _ran(ansible, trials, TrialSpec(1, "s1-t01", ["optimizer.lr=0.1"])) == CONFIGURE_AND_LAUNCH
    # Nothing was deployed since: the next trial's settings travel with its launch alone.
    assert _ran(ansible, trials, TrialSpec(2, "s1-t02", ["optimizer.lr=0.2"])) == LAUNCH_ALONE
    assert _ran(ansible, trials, TrialSpec(3, "s1-t03", [])) == LAUNCH_ALONE
    # A --resume makes a new runner: its first trial configures again.
    resumed = _cluster(monkeypatch, tmp_path)
    assert _ran(ansible, resumed, TrialSpec(4, "s1-t04", [])) == CONFIGURE_AND_LAUNCH


def _lock_phase1() -> None:
    """A production config locked for phase 1, as `tooling sweep --lock` leaves it."""
    folder = production.directory()
    folder.mkdir()
    phase1 = Path(__file__).resolve().parents[2] / "ddp" / "configs" / "phase1.yaml"
    (folder / "phase1-v1.yaml").write_text(f"base: {phase1}\ntraining: {{batch_size: 8}}\n")
    (folder / "phase1.current").write_text("phase1-v1.yaml\n")


def _elsewhere(hosts: list[str], endpoints: list[str]) -> None:
    """Phase 2a deployed with another inventory, on `hosts` reached at `endpoints`."""
    other = str(Path("other").resolve())
    records.save(
        replace(_record("p2a-1"), phase="2a", inventory=other, hosts=hosts, metrics_endpoints=endpoints)
    )


@pytest.mark.parametrize(
    ("since", "second"),
    [
        pytest.param(lambda: None, LAUNCH_ALONE, id="nothing"),
        pytest.param(
            lambda: records.save(replace(_record("p2a-1"), phase="2a", group="phase2a")),
            CONFIGURE_AND_LAUNCH,
            id="other-phase",
        ),
        pytest.param(lambda: records.save(_record("phase1-by-hand")), CONFIGURE_AND_LAUNCH, id="other-run"),
        pytest.param(lambda: records.record_path(Path("inv")).unlink(), CONFIGURE_AND_LAUNCH, id="no-record"),
        # Another inventory naming the same node, or the same machine under another name.
        pytest.param(lambda: _elsewhere(["node1"], []), CONFIGURE_AND_LAUNCH, id="other-inventory-name"),
        pytest.param(
            lambda: _elsewhere(["n9"], ["http://172.16.0.2:9500/metrics"]),
            CONFIGURE_AND_LAUNCH,
            id="other-inventory-address",
        ),
        pytest.param(
            lambda: _elsewhere(["n9"], ["http://10.9.0.9:9500/metrics"]), LAUNCH_ALONE, id="other-cluster"
        ),
        # trainer.yml writes the locked production settings on the nodes: a lock since changes them.
        pytest.param(_lock_phase1, CONFIGURE_AND_LAUNCH, id="locked-config"),
    ],
)
def test_what_happened_between_trials_decides_whether_the_next_configures(
    ansible: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    since: Callable[[], object],
    second: list[str],
) -> None:
    trials = _cluster(monkeypatch, tmp_path)
    _ran(ansible, trials, TrialSpec(1, "s1-t01", []))
    since()
    assert _ran(ansible, trials, TrialSpec(2, "s1-t02", [])) == second
    assert _ran(ansible, trials, TrialSpec(3, "s1-t03", [])) == LAUNCH_ALONE


def test_a_launch_alone_that_fails_stops_the_sweep(
    ansible: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trials = _cluster(monkeypatch, tmp_path)
    _ran(ansible, trials, TrialSpec(1, "s1-t01", []))
    ansible.clear()
    with pytest.raises(
        CheckFailed, match=r"(?s)trial 2 could not be launched \(launch.yml alone.*unit ddp-trainer"
    ):
        trials.run(TrialSpec(2, "s1-t02-refused", []))
    assert ansible == LAUNCH_ALONE
    # Whatever went wrong, the nodes are configured again before the next launch.
    assert _ran(ansible, trials, TrialSpec(3, "s1-t03", [])) == CONFIGURE_AND_LAUNCH


def test_eta_comes_from_the_mean_trial_time() -> None:
    progress = Progress()
    progress.add_task("trial 2/4", total=4, completed=1, mean_s=60.0, started=time.time() - 10)
    progress.add_task("trial 1/4", total=4, mean_s=None)
    # Three trials left at a minute each, ten seconds into the current one.
    assert str(EtaColumn().render(progress.tasks[0])) in ("ETA 0:02:50", "ETA 0:02:49")
    assert str(EtaColumn().render(progress.tasks[1])) == "ETA after the first trial"


def test_sweep_json_is_one_document_of_the_results_and_lock_asks_first(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fast = frozenset({"optimizer.lr=0.1"})
    install_fake(monkeypatch, FakeTrials({fast: summary(throughput=500.0)}, default=summary()))
    result = _sweep(tmp_path, "--phase", "1", "--local", "--id", "j1", "--grid", "lr=0.01,0.1", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # the progress and the table went to stderr
    assert document["id"] == "j1" and document["best"] == 2 and document["ranking"]["ranked"] == [2, 1]
    assert [t["trial"] for t in document["trials"]] == [1, 2]
    assert document["written"]["markdown"] == str(tmp_path / "sweeps" / "j1" / "sweep.md")
    assert "best: trial 2" in flat(result.stderr)
    refused = _sweep(tmp_path, "--lock", "--phase", "1", "--json")
    assert refused.exit_code == 2 and "--lock takes no --json" in flat(refused.output)

    # On a terminal, --lock asks which trial of which sweep becomes the production config.
    monkeypatch.setattr(console_module, "interactive", lambda: True)
    declined = _sweep(tmp_path, "--lock", "--phase", "1", input="n\n")
    assert declined.exit_code == 1 and not folder.exists()
    said = "Make the best trial of sweep j1 phase 1's production config (a new version over the plan config;"
    assert said in flat(declined.output)
    assert _sweep(tmp_path, "--lock", "--phase", "1", "--yes").exit_code == 0
    assert (folder / "phase1-v1.yaml").is_file()
