"""A site's own phases file (DDP_PHASES_FILE, `tooling --phases FILE`): read by tooling, validated, and
handed to every playbook as `-e @FILE`, where it beats the playbooks' vars_files."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml
from ansible_runner.exceptions import ConfigurationError
from typer.testing import CliRunner

from ddp.config_errors import ConfigError
from tests.unit.local_playbook import run_local_playbook
from tooling.cli import app
from tooling.plan.phase_file import DEFAULT_PHASES_FILE, PHASES_FILE_ENV
from tooling.plan.phases import load_phases
from tooling.runner import run_playbook

PLAYBOOK = """\
- name: Read the plan
  hosts: all
  gather_facts: false
  vars_files:
    - {phases}
  tasks:
    - name: Publish what the play sees
      ansible.builtin.set_stats:
        data:
          min_nodes_2a: "{{{{ phases['2a'].min_nodes }}}}"
          base_port: "{{{{ metrics.base_port }}}}"
          marker: "{{{{ marker }}}}"
        per_host: false
"""


def _site_file(path: Path, phases: dict[str, dict[str, Any]], **sections: Any) -> Path:
    """A complete copy of tooling/phases.yml with `phases` edited per phase and top-level `sections` set."""
    data = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    for name, changes in phases.items():
        data["phases"][name].update(changes)
    data.update(sections)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def elastic_2a(tmp_path: Path) -> Path:
    return _site_file(tmp_path / "site phases.yml", {"2a": {"min_nodes": 1}})


# --- load_phases ---------------------------------------------------------------------------------------


def test_env_var_names_the_plan(elastic_2a: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_phases().get("2a").min_nodes == 2
    monkeypatch.chdir(elastic_2a.parent)
    monkeypatch.setenv(PHASES_FILE_ENV, elastic_2a.name)  # relative: against the current directory
    assert load_phases().get("2a").min_nodes == 1
    # An explicit path still wins over the variable.
    assert load_phases(DEFAULT_PHASES_FILE).get("2a").min_nodes == 2


def test_empty_env_var_means_the_project_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PHASES_FILE_ENV, "")
    assert load_phases().get("2a").min_nodes == 2


def test_missing_file_names_the_variable_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(PHASES_FILE_ENV, "nope.yml")
    with pytest.raises(ConfigError) as caught:
        load_phases()
    assert str(caught.value).startswith(f"{PHASES_FILE_ENV}: {tmp_path / 'nope.yml'}: file not found")


def test_invalid_file_names_the_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = _site_file(tmp_path / "site.yml", {"2a": {"min_nodes": 3}})
    monkeypatch.setenv(PHASES_FILE_ENV, str(site))
    with pytest.raises(
        ConfigError, match=r"phases\.2a: min_nodes \(3\) must not exceed nodes \(2\)"
    ) as caught:
        load_phases()
    assert caught.value.source == str(site)


def test_site_file_must_spell_out_every_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ansible replaces whole variables: a left-out `metrics` would come from the project's file there.
    data = yaml.safe_load(DEFAULT_PHASES_FILE.read_text())
    del data["metrics"]
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(data))
    monkeypatch.setenv(PHASES_FILE_ENV, str(site))
    with pytest.raises(ConfigError, match=r"metrics: missing") as caught:
        load_phases()
    assert caught.value.source == str(site)
    # The rule is for site files only: an explicit path keeps the schema's defaults.
    assert load_phases(site).metrics.base_port == 9500


# --- run_playbook -------------------------------------------------------------------------------------


def _capture_run(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_run(**kwargs: Any) -> None:
        calls.append(kwargs)
        raise ConfigurationError("not running Ansible in this test")

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    return calls


def test_run_playbook_passes_the_site_file_as_extra_vars(
    elastic_2a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _capture_run(monkeypatch)
    book = tmp_path / "pb.yml"
    book.write_text(PLAYBOOK.format(phases=DEFAULT_PHASES_FILE))
    monkeypatch.chdir(elastic_2a.parent)
    monkeypatch.setenv(PHASES_FILE_ENV, elastic_2a.name)
    run_playbook(
        book, inventory=book, runs_dir=tmp_path / "runs", cmdline="--diff", check=True, progress=False
    )
    (kwargs,) = calls
    # Absolute (ansible-runner runs elsewhere), quoted (the name has a space), before the caller's options.
    assert shlex.split(kwargs["cmdline"]) == ["-e", f"@{elastic_2a}", "--diff", "--check"]

    monkeypatch.delenv(PHASES_FILE_ENV)
    run_playbook(book, inventory=book, runs_dir=tmp_path / "runs", progress=False)
    assert "cmdline" not in calls[1]


def test_run_playbook_refuses_a_bad_site_file_before_ansible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _capture_run(monkeypatch)
    book = tmp_path / "pb.yml"
    book.write_text(PLAYBOOK.format(phases=DEFAULT_PHASES_FILE))
    site = _site_file(tmp_path / "site.yml", {"2a": {"min_nodes": 3}})
    monkeypatch.setenv(PHASES_FILE_ENV, str(site))
    with pytest.raises(ConfigError, match=r"min_nodes \(3\) must not exceed nodes \(2\)"):
        run_playbook(book, inventory=book, runs_dir=tmp_path / "runs", progress=False)
    assert calls == [] and not (tmp_path / "runs").exists()


def test_site_file_beats_vars_files_in_a_real_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = _site_file(tmp_path / "site.yml", {"2a": {"min_nodes": 1}}, metrics={"base_port": 9700})
    book = tmp_path / "pb.yml"
    book.write_text(PLAYBOOK.format(phases=DEFAULT_PHASES_FILE))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    monkeypatch.setenv(PHASES_FILE_ENV, str(site))
    result = run_playbook(
        book,
        inventory=inventory,
        runs_dir=tmp_path / "runs",
        extravars={"marker": "caller"},
        progress=False,
    )
    assert result.ok, result.explanation
    assert result.custom_stats == {"min_nodes_2a": 1, "base_port": 9700, "marker": "caller"}


# --- the CLI ------------------------------------------------------------------------------------------


def test_phases_option_reaches_the_subcommand(tmp_path: Path) -> None:
    site = _site_file(tmp_path / "site.yml", {"2b": {"nproc_per_node": 2}})
    result = CliRunner().invoke(
        app, ["--phases", str(site), "phases", "--json", "--decisions", str(tmp_path / "decisions")]
    )
    assert result.exit_code == 0, result.output
    rows = {row["phase"]: row for row in json.loads(result.stdout)}
    assert (rows["2b"]["nproc_per_node"], rows["2b"]["world_size"]) == (2, 6)
    # Set for the process, so Ansible runs and other children see it too.
    assert os.environ[PHASES_FILE_ENV] == str(site.resolve())


def test_phases_option_refuses_a_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a short name: the error panel wraps long paths
    result = CliRunner().invoke(app, ["--phases", "nope.yml", "phases"])
    assert result.exit_code == 2
    assert "--phases" in result.output and "nope.yml" in result.output
    assert PHASES_FILE_ENV not in os.environ


def test_bad_site_file_is_a_usage_error(tmp_path: Path) -> None:
    site = _site_file(tmp_path / "site.yml", {"2a": {"min_nodes": 3}})
    result = subprocess.run(
        [sys.executable, "-m", "tooling.cli", "phases", "--decisions", str(tmp_path)],
        env={**os.environ, PHASES_FILE_ENV: str(site), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert f"{site}: phases.2a: min_nodes (3) must not exceed nodes (2)" in result.stderr
    assert "Traceback" not in result.stderr


# --- the roles: what a site file changes on the nodes ------------------------------------------------


def _inventory(tmp_path: Path) -> Path:
    """node1, node2 (phase1 in phase2a) and a monitoring host; all local, with cluster-looking addresses."""
    hosts = {"node1": {"ansible_host": "192.0.2.11"}, "node2": {"ansible_host": "192.0.2.12"}}
    groups = {
        "nodes": {"hosts": hosts},
        "phase2a": {"hosts": {"node2": None}, "children": {"phase1": {"hosts": {"node1": None}}}},
        "monitoring": {"hosts": {"monitor1": {"ansible_host": "192.0.2.100"}}},
    }
    path = tmp_path / "hosts.yml"
    all_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    path.write_text(yaml.safe_dump({"all": {"vars": all_vars, "children": groups}}))
    return path


def test_elastic_site_file_makes_torchrun_nnodes_a_range(elastic_2a: Path, tmp_path: Path) -> None:
    # --nnodes is derived in role ddp_trainer (tasks/phase.yml), not in Python: check it there, with the
    # play loading the project's file through vars_files as playbooks/launch.yml does.
    out = tmp_path / "launch.json"
    play = {
        "name": "Phase 2a",
        "hosts": "phase2a",
        "gather_facts": False,
        "vars_files": [str(DEFAULT_PHASES_FILE)],
        "tasks": [
            {
                "name": "Derive the phase",
                "ansible.builtin.include_role": {"name": "ddp_trainer", "tasks_from": "phase.yml"},
            },
            {
                "name": "Save the launch plan",
                "ansible.builtin.copy": {
                    "dest": str(out),
                    "content": "{{ _ddp_trainer_launch | to_json }}",
                    "mode": "0644",
                },
                "run_once": True,
            },
        ],
    }
    result = run_local_playbook(tmp_path, [play], "-i", str(_inventory(tmp_path)), "-e", f"@{elastic_2a}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    launch = json.loads(out.read_text())
    assert (launch["phase"], launch["nnodes"]) == ("2a", "1:2")
