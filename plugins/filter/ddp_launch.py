"""Jinja filters over tooling/plan/launch.py, so the roles derive a phase's launch where tooling does.

    {{ ddp_trainer_phases_file | ddp_launch(phases=..., rendezvous=..., metrics=..., hostvars=hostvars,
       groups=groups, phase=ddp_trainer_phase, play_hosts=ansible_play_hosts_all) }}
    {{ ddp_trainer_run_root | default(none) | ddp_run_root }}

Registered through ansible.cfg's `filter_plugins` (and ANSIBLE_FILTER_PLUGINS where molecule or a test runs
Ansible with another configuration). The one-pass plan (tooling/job/one_pass_plan.py) calls the same
tooling.plan.role_launch.role_launch in-process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

# Ansible may run from an interpreter that has not installed the project: the checkout holding this file
# is the one whose roles are running, so its packages are the ones to read.
_PROJECT = Path(__file__).resolve().parents[2]
if str(_PROJECT) not in sys.path:
    sys.path.append(str(_PROJECT))

from ddp.config_errors import ConfigError  # noqa: E402
from tooling.plan.launch import LaunchError, run_root  # noqa: E402
from tooling.plan.role_launch import role_launch  # noqa: E402


def ddp_launch(plan_file: str, **settings: Any) -> dict[str, Any]:
    """The phase's launch (tooling.plan.launch.Launch.as_vars) for the roles; `settings` are
    tooling.plan.role_launch.role_launch's keywords (hostvars, groups, phase, ...)."""
    try:
        return role_launch(plan_file, **settings)
    except (ConfigError, LaunchError) as exc:
        raise AnsibleFilterError(str(exc)) from None


def ddp_run_root(value: Any = None) -> str:
    """`ddp_trainer_run_root` when set, else role ddp_trainer's default (its defaults file)."""
    return run_root(value)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"ddp_launch": ddp_launch, "ddp_run_root": ddp_run_root}
