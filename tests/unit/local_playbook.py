"""Run a throw-away playbook against localhost with the project's roles: how the unit tests render
role templates and run preflight checks without a remote host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_local_playbook(
    tmp_path: Path, playbook: list[dict[str, Any]], *args: str, callback: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Write `playbook` to tmp_path/play.yml and run it; the caller judges the result."""
    binary = Path(sys.executable).with_name("ansible-playbook")
    if not binary.exists():
        found = shutil.which("ansible-playbook")
        if found is None:
            pytest.fail("ansible-playbook not found: run scripts/bootstrap.sh")
        binary = Path(found)
    (tmp_path / "play.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        # The project's filters (plugins/filter), which its ansible.cfg registers.
        "ANSIBLE_FILTER_PLUGINS": str(ROOT / "plugins" / "filter"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / ".ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / ".ansible-remote-tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }
    # The project's ansible.cfg points at the production inventory and a fact cache: not wanted here.
    env.pop("ANSIBLE_CONFIG", None)
    if callback:
        env["ANSIBLE_STDOUT_CALLBACK"] = callback
    return subprocess.run(
        [str(binary), *args, "play.yml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def render_templates_task(name: str, out: Path, task_vars: dict[str, Any]) -> dict[str, Any]:
    """A task rendering every template of the play's `templates` var (name -> source) into `out`."""
    return {
        "name": f"Render the {name} variant",
        "ansible.builtin.template": {
            "src": "{{ item.value }}",
            "dest": f"{out}/{{{{ item.key }}}}",
            "mode": "0644",
        },
        "loop": "{{ templates | dict2items }}",
        "vars": task_vars,
    }


def preflight_case_task(case: str, role: str, role_vars: dict[str, Any], result: Path) -> dict[str, Any]:
    """A block that runs `role`'s tasks/preflight.yml with `role_vars` and writes to `result` an empty file
    when it passes, else the failure's message: many refusal cases in one playbook run."""
    return {
        "name": f"Preflight case {case}",
        "block": [
            {
                "name": f"Run the {role} preflight",
                "ansible.builtin.include_role": {"name": role, "tasks_from": "preflight"},
                "vars": role_vars,
            },
            {
                "name": "Record a pass",
                "ansible.builtin.copy": {"content": "", "dest": str(result), "mode": "0644"},
            },
        ],
        "rescue": [
            {
                "name": "Record the failure message",
                "ansible.builtin.copy": {
                    "content": "{{ ansible_failed_result.msg }}",
                    "dest": str(result),
                    "mode": "0644",
                },
            }
        ],
    }


def role_task(role: str, tasks_file: str, action: str, used: str, entry: str) -> dict[str, Any]:
    """roles/<role>/tasks/<tasks_file>'s one task whose `action` (include_role or import_role) runs `used`'s
    `entry`, as written there, so a test feeds a shared role exactly as that role does."""
    path = ROOT / "roles" / role / "tasks" / tasks_file
    tasks = yaml.safe_load(path.read_text())
    wanted = {"name": used, "tasks_from": entry}
    found = [t for t in tasks if t.get(f"ansible.builtin.{action}") == wanted]
    assert len(found) == 1, f"{path.relative_to(ROOT)}: expected one {action} of {used} {entry}, got {found}"
    return found[0]  # type: ignore[no-any-return]


def role_include(role: str, included: str, entry: str) -> dict[str, Any]:
    """`role`'s own task in its tasks/install.yml that includes `included`'s `entry`."""
    return role_task(role, "install.yml", "include_role", included, entry)


def role_import_vars(role: str, tasks_file: str, imported: str, entry: str) -> dict[str, Any]:
    """The variables roles/<role>/tasks/<tasks_file> passes to its one import_role of `imported`'s `entry`."""
    return role_task(role, tasks_file, "import_role", imported, entry)["vars"]  # type: ignore[no-any-return]
