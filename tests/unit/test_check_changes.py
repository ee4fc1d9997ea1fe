"""`deploy --plan`'s summary of an `ansible-playbook --check --diff` run, from real ansible-runner events.

The events come from a check-mode run made here, through the project's own runner (tooling.runner), of a
small playbook in a scratch directory: two hosts on connection=local (a node and a monitoring host that a
delegated task changes) and one on ssh to a loopback port nothing listens on. Its roles create a
directory, render a template, change a file that exists, leave one unchanged, edit lines in a loop, name
pip packages (pip lists what is installed and installs nothing in check mode) and delegate a file to the
other host; a play task then reads a file only a real run would have made, so it fails as check mode
does when a task needs an earlier change.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ddp.ports import free_port_block
from tooling.job.check_changes import PLAY_TASKS, HostChanges, RoleChanges, delegate_names, merge, summarise
from tooling.runner import RunResult, run_playbook

MON_ADDRESS = "127.0.0.9"
INVENTORY_NAMES = {MON_ADDRESS: "mon"}


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def check_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    root = tmp_path_factory.mktemp("check-run")
    out = root / "out"
    (out / "lines").mkdir(parents=True)
    (out / "existing.conf").write_text("old\n")
    (out / "same.conf").write_text("same\n")
    (out / "lines" / "a.conf").write_text("x=1\n")
    (out / "lines" / "b.conf").write_text("y=2\n")
    python = sys.executable
    local = {"ansible_connection": "local", "ansible_python_interpreter": python}
    _write(
        root / "inventory" / "hosts.yml",
        {
            "all": {
                "hosts": {
                    "web": local,
                    # Its address is what a delegated result names it by (connection=local ignores it).
                    "mon": {**local, "ansible_host": MON_ADDRESS},
                    "gone": {
                        "ansible_host": "127.0.0.1",
                        "ansible_port": free_port_block(),
                        "ansible_user": "ops",
                    },
                }
            }
        },
    )
    _write(root / "roles" / "site_files" / "templates" / "app.conf.j2", "port={{ 8000 + 80 }}\n")
    _write(
        root / "roles" / "site_files" / "tasks" / "main.yml",
        [
            {
                "name": "Create the config directory",
                "ansible.builtin.file": {"path": f"{out}/etc", "state": "directory", "mode": "0755"},
            },
            {
                "name": "Render the app config",
                "ansible.builtin.template": {
                    "src": "app.conf.j2",
                    "dest": f"{out}/etc/app.conf",
                    "mode": "0644",
                },
            },
            {
                "name": "Replace the existing config",
                "ansible.builtin.copy": {"content": "new\n", "dest": f"{out}/existing.conf", "mode": "0644"},
            },
            {
                "name": "Keep the unchanged config",
                "ansible.builtin.copy": {"content": "same\n", "dest": f"{out}/same.conf", "mode": "0644"},
            },
            {
                "name": "Set a line in each file",
                "ansible.builtin.lineinfile": {"path": f"{out}/lines/{{{{ item }}}}", "line": "x=1"},
                "loop": ["a.conf", "b.conf"],
            },
            {
                "name": "Write the target list on the monitoring host",
                "ansible.builtin.copy": {
                    "content": "- targets: [web]\n",
                    "dest": f"{out}/targets.yml",
                    "mode": "0644",
                },
                "delegate_to": "mon",
            },
        ],
    )
    _write(
        root / "roles" / "site_packages" / "tasks" / "main.yml",
        [
            {
                "name": "Install the tools",
                "ansible.builtin.pip": {
                    "name": ["surely-not-installed-package-4711", "pyyaml"],
                    "executable": str(Path(python).with_name("pip")),
                },
            }
        ],
    )
    _write(
        root / "site.yml",
        [
            {
                "name": "Nodes",
                "hosts": "web:gone",
                "gather_facts": False,
                "roles": ["site_files", "site_packages"],
                "tasks": [
                    {
                        "name": "Read the rendered config",
                        "ansible.builtin.slurp": {"src": f"{out}/etc/app.conf"},
                    }
                ],
            }
        ],
    )
    result = run_playbook(
        "site.yml",
        inventory=root / "inventory",
        runs_dir=root / "runs",
        check=True,
        diff=True,
        project_dir=root,
        label="check",
        progress=False,
    )
    return result, out


def test_changed_tasks_files_and_packages_per_role(check_run: tuple[RunResult, Path]) -> None:
    result, out = check_run
    web = summarise(result.events, INVENTORY_NAMES)["web"]
    files = web.roles["site_files"]
    assert files.tasks == [
        "Create the config directory",
        "Render the app config",
        "Replace the existing config",
        "Set a line in each file",
    ]
    # The unchanged file is left out; the loop counts once, with the one file it changes; the template is
    # named by its destination (its diff header is a temporary copy of the source).
    assert files.files == [f"{out}/etc", f"{out}/etc/app.conf", f"{out}/existing.conf", f"{out}/lines/b.conf"]
    assert web.roles["site_packages"].as_dict() == {
        "changed": 1,
        "tasks": ["Install the tools"],
        "files": [],
        "packages": ["surely-not-installed-package-4711", "pyyaml"],
    }
    assert web.changed == 5
    # Check mode made nothing: the play's last task finds no rendered file and stops the host there.
    assert not (out / "etc").exists() and (out / "existing.conf").read_text() == "old\n"
    assert len(web.failures) == 1 and web.failures[0].startswith("Read the rendered config: ")
    assert PLAY_TASKS not in web.roles


def test_a_delegated_change_counts_on_the_host_it_changes(check_run: tuple[RunResult, Path]) -> None:
    result, out = check_run
    summary = summarise(result.events, INVENTORY_NAMES)
    assert summary["mon"].roles["site_files"].files == [f"{out}/targets.yml"]
    assert "Write the target list on the monitoring host" not in summary["web"].roles["site_files"].tasks
    # Without the inventory's names, the delegate is named by its address.
    assert summarise(result.events)[MON_ADDRESS].roles["site_files"].changed == 1


def test_delegates_are_named_back_only_where_the_address_is_unique() -> None:
    hostvars = {
        "a": {"ansible_host": "10.0.0.1"},
        "b": {"ansible_host": "10.0.0.1"},
        "c": {},
        "d": {"ansible_host": "m"},
    }
    assert delegate_names(hostvars) == {"c": "c", "m": "d"}


def test_an_unreachable_host_is_named_with_ansibles_reason(check_run: tuple[RunResult, Path]) -> None:
    result, _ = check_run
    gone = summarise(result.events, INVENTORY_NAMES)["gone"]
    assert gone.unreachable is not None and "Connection refused" in gone.unreachable
    assert gone.roles == {} and gone.as_dict()["changed"] == 0


def test_a_later_playbooks_changes_are_added_once() -> None:
    first = {"n1": HostChanges({"r": RoleChanges(["t1"], ["/etc/a"], [])})}
    merge(first, {"n1": HostChanges({"r": RoleChanges(["t1", "t2"], ["/etc/a", "/etc/b"], ["p"])})})
    merge(first, {"n2": HostChanges(unreachable="refused")})
    assert first["n1"].as_dict()["roles"] == {
        "r": {"changed": 2, "tasks": ["t1", "t2"], "files": ["/etc/a", "/etc/b"], "packages": ["p"]}
    }
    assert first["n2"].unreachable == "refused"
