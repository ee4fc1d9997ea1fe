"""The one-pass plan against the play it stands in for: the same inventory rendered both ways
(ansible-playbook playbooks/plan.yml, and tooling/job/one_pass_plan.py in this process) publishes the same
launch, run id and, byte for byte, the same launcher, environment and run files for every node; the
grouped dry runs (tooling/job/launcher_dry_runs.py) give every node the command line its own launcher
prints; a failing check reads the same; and what the one pass does not mirror is worked out by the play.

The inventory is another site's, varied per host and group: bench/plan_scale.py's (rack-unit host names,
IPv6 documentation addresses, svc-train with become on port 2222, its own phases file passed as extra vars)
with a socket interface and another SSH port on one node, extra environment set per group and per host (one
value templated from the host's own variables), a data-network address on one node, the run root, the venv
(templated) and trainer settings in group_vars, and --set items for the run.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from bench.plan_scale import host_name, write_site
from tooling.console import ToolingError
from tooling.job import launcher_dry_runs
from tooling.job.ansible_jinja import supported
from tooling.job.deploy import DeployRequest, Plan, build_plan
from tooling.job.one_pass_plan import one_pass_plan
from tooling.job.plan_source import PLAN_STATS_KEY, planned, played
from tooling.plan.phase_file import PHASES_FILE_ENV
from tooling.plan.phases import load_phases

pytestmark = [
    pytest.mark.skipif(
        shutil.which("ansible-playbook") is None
        and not (Path(sys.executable).parent / "ansible-playbook").exists(),
        reason="ansible-playbook is not installed",
    ),
    pytest.mark.skipif(supported() is not None, reason="the one-pass plan mirrors ansible-core 2.19"),
]

NODES = 8
NAMES = [host_name(i) for i in range(NODES)]
RUN_ID = "equivalence-1"
OVERRIDES = ["training.max_steps=7", "checkpoint.every_steps=3"]
IFNAME_NODE, TAGGED_NODE, DATA_NODE = NAMES[2], NAMES[3], NAMES[4]
DATA_ADDRESS = "2001:db8:30::5"


def _write(file: Path, data: dict[str, Any]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(yaml.safe_dump(data), encoding="utf-8")


def varied_site(where: Path, nodes: int = NODES) -> tuple[Path, Path]:
    inventory, phases = write_site(where, nodes)
    _write(
        inventory / "host_vars" / f"{IFNAME_NODE}.yml",
        {"ddp_trainer_socket_ifname": "ib0", "ansible_port": 2200},
    )
    _write(
        inventory / "host_vars" / f"{TAGGED_NODE}.yml",
        {
            "ddp_trainer_extra_env": {
                "NCCL_DEBUG": "INFO",
                "NODE_TAG": "{{ inventory_hostname }}-{{ ansible_port }}",
            }
        },
    )
    _write(inventory / "host_vars" / f"{DATA_NODE}.yml", {"ddp_trainer_node_address": DATA_ADDRESS})
    _write(inventory / "group_vars" / "train_2b.yml", {"ddp_trainer_extra_env": {"NCCL_IB_HCA": "mlx5"}})
    _write(
        inventory / "group_vars" / "nodes.yml",
        {
            "ddp_trainer_run_root": "/scratch/runs",
            "ddp_trainer_venv_path": "{{ ddp_trainer_dir }}/venv-{{ ansible_user }}",
            "ddp_trainer_config_overrides": {"checkpoint": {"dir": "/shared/ckpt"}},
        },
    )
    return inventory, phases


def _deploy_plan(inventory: Path, phase: str, run_id: str = RUN_ID) -> tuple[DeployRequest, Plan]:
    request = DeployRequest(phase=phase, inventory=inventory, run_id=run_id, overrides=list(OVERRIDES))
    return request, build_plan(request, load_phases(), out=Console(quiet=True))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(scratch directory, inventory, the site's phases file: DDP_PHASES_FILE, which each test sets)."""
    tmp = tmp_path_factory.mktemp("one-pass")
    return tmp, *varied_site(tmp)


@pytest.fixture(scope="module")
def both_ways(site: tuple[Path, Path, Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    tmp, inventory, phases = site
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PHASES_FILE_ENV, str(phases))
        request, deploy_plan = _deploy_plan(inventory, "2c")
        ours = one_pass_plan(deploy_plan.inventory, inventory, deploy_plan.limit, deploy_plan.extravars)
        theirs = played(request, deploy_plan, tmp / "ansible", None)
    return ours[PLAN_STATS_KEY], theirs


def test_the_one_pass_publishes_what_the_play_publishes(
    both_ways: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    ours, theirs = both_ways
    assert ours["launch"] == theirs["launch"] and ours["run_id"] == theirs["run_id"] == RUN_ID
    assert sorted(ours["nodes"]) == sorted(theirs["nodes"]) == sorted(NAMES)
    for host, node in theirs["nodes"].items():
        mine = ours["nodes"][host]
        assert mine["launcher"] == node["launcher"], host
        for name, text in node["files"].items():
            assert mine["files"][name] == text, f"{host}: {name}"
        assert mine == node, host
    # The variety is there, both ways.
    files = {host: node["files"] for host, node in theirs["nodes"].items()}
    assert "GLOO_SOCKET_IFNAME=ib0" in files[IFNAME_NODE]["trainer.env"]
    assert f"NODE_TAG={TAGGED_NODE}-2222" in files[TAGGED_NODE]["trainer.env"]
    assert "NCCL_IB_HCA" not in files[TAGGED_NODE]["trainer.env"]  # the host's dict replaces the group's
    assert "NCCL_IB_HCA=mlx5" in files[NAMES[1]]["trainer.env"]
    assert f"--local-addr {DATA_ADDRESS}" in theirs["nodes"][DATA_NODE]["launcher"]
    assert "TORCHRUN=/opt/ddp/venv-svc-train/bin/torchrun" in theirs["nodes"][NAMES[0]]["launcher"]
    assert files[NAMES[0]]["run.args"].splitlines()[1:] == OVERRIDES


def test_grouped_dry_runs_give_each_launchers_own_command_line(
    both_ways: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, theirs = both_ways
    launch, nodes = theirs["launch"], theirs["nodes"]
    own = {h: launcher_dry_runs.dry_run(h, nodes[h], tmp_path / "own" / h) for h in launch["hosts"]}
    runs: list[str] = []
    real = launcher_dry_runs.dry_run

    def counted(host: str, files: Any, where: Path) -> Any:
        runs.append(host)
        return real(host, files, where)

    monkeypatch.setattr(launcher_dry_runs, "dry_run", counted)
    grouped = launcher_dry_runs.command_lines(
        nodes, launch["addresses"], launch["hosts"], tmp_path / "grouped"
    )
    assert grouped == own
    assert len(runs) < len(launch["hosts"]), runs
    # A launcher that looked inside the node's name would break the derivation: the group's first member's
    # own run shows it, and every member then runs on its own.
    peeking = {
        h: {
            **node,
            "launcher": node["launcher"].replace(
                "printf '%q ' \"${cmd[@]}\"", 'printf \'%q \' "${cmd[@]}" "${NODE//-/_}"'
            ),
        }
        for h, node in nodes.items()
    }
    runs.clear()
    grouped = launcher_dry_runs.command_lines(
        peeking, launch["addresses"], launch["hosts"], tmp_path / "peeking"
    )
    monkeypatch.setattr(launcher_dry_runs, "dry_run", real)
    assert grouped == {h: real(h, peeking[h], tmp_path / "peeking-own" / h) for h in launch["hosts"]}
    assert grouped[NAMES[-1]][0][-1] == NAMES[-1].replace("-", "_")


def test_a_failing_check_reads_as_it_reads_from_the_play(
    site: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp, inventory, phases = site
    monkeypatch.setenv(PHASES_FILE_ENV, str(phases))
    request, deploy_plan = _deploy_plan(inventory, "1", run_id="bad id!")
    with pytest.raises(ToolingError) as one_pass:
        planned(request, deploy_plan, tmp / "ansible-bad-id", None, Console(quiet=True))
    with pytest.raises(ToolingError) as play:
        played(request, deploy_plan, tmp / "ansible-bad-id", None)
    assert str(one_pass.value) == str(play.value)
    assert "ddp_trainer_run_id 'bad id!' must match" in str(one_pass.value)


def test_what_is_not_mirrored_is_worked_out_by_the_play(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory, phases = varied_site(tmp_path, nodes=4)
    monkeypatch.setenv(PHASES_FILE_ENV, str(phases))
    first = host_name(0)
    _write(
        inventory / "host_vars" / f"{first}.yml",
        {"ddp_trainer_extra_env": {"HOME_DIR": "{{ lookup('env', 'HOME') }}"}},
    )
    request, deploy_plan = _deploy_plan(inventory, "1")
    note = Console(record=True, width=300)
    shown = planned(request, deploy_plan, tmp_path / "ansible", None, note)
    said = note.export_text()
    assert f"{first}: ddp_trainer_extra_env" in said and "playbooks/plan.yml instead" in said
    assert shown == played(request, deploy_plan, tmp_path / "ansible", None)
    assert f"HOME_DIR={os.environ['HOME']}" in shown["nodes"][first]["files"]["trainer.env"]
