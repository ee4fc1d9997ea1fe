"""Where `deploy --plan` gets each node's launch from: playbooks/plan.yml's `ddp_plan`, worked out in one pass
in this process (tooling.job.one_pass_plan), or by running the play when that pass cannot be exact for
this inventory (then a line on stderr names the host, the variable and why). Either way the same data,
and a failing task is reported the same way: `playbooks/plan.yml could not work out the launch:` and
`<host>: task '<name>': <message>`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console

from tooling.console import ToolingError
from tooling.job.ansible_jinja import NotExact
from tooling.job.deploy import DeployRequest, Plan, failure_detail, task_failure_line
from tooling.job.one_pass_plan import PLAYBOOK, Prepared, TaskFailed, one_pass_plan, prepare
from tooling.runner import PROJECT_ROOT, RunResult, run_playbook

# What playbooks/plan.yml publishes with set_stats (roles/ddp_trainer/tasks/plan.yml).
PLAN_STATS_KEY = "ddp_plan"


def _could_not(detail: str) -> ToolingError:
    return ToolingError(f"{PLAYBOOK} could not work out the launch:\n{detail}")


def _raise_unless_planned(result: RunResult) -> dict[str, Any]:
    published = result.published(PLAN_STATS_KEY)
    if result.ok and published.get("nodes"):
        return published
    raise _could_not(failure_detail(result))


def played(
    request: DeployRequest, deploy_plan: Plan, runs_dir: Path, progress: Console | None
) -> dict[str, Any]:
    """`ddp_plan` as the play publishes it, run by Ansible on the control machine (it connects to no node)."""
    result = run_playbook(
        PLAYBOOK,
        inventory=request.inventory,
        runs_dir=runs_dir,
        limit=deploy_plan.limit,
        extravars=deploy_plan.extravars,
        label=f"plan-{deploy_plan.group}",
        console=progress,
        progress=progress is not None,
    )
    return _raise_unless_planned(result)


def preparing(project: Path = PROJECT_ROOT) -> Future[Prepared]:
    """The one pass's preparation (one_pass_plan.prepare: reading the play, compiling the templates, and
    importing Ansible's plugins first, half a second in all) on a thread of its own: started before the
    inventory is listed, it is done by the time the inventory is."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="one-pass-plan")
    try:
        return pool.submit(prepare, project)
    finally:
        pool.shutdown(wait=False)


def planned(
    request: DeployRequest,
    deploy_plan: Plan,
    runs_dir: Path,
    progress: Console | None,
    note: Console,
    prepared: Future[Prepared] | None = None,
) -> dict[str, Any]:
    """`ddp_plan` for the deploy: in one pass when that is exact, else from the play (said on `note`)."""
    try:
        published = one_pass_plan(
            deploy_plan.inventory,
            request.inventory,
            deploy_plan.limit,
            deploy_plan.extravars,
            prepared.result() if prepared is not None else None,
        ).get(PLAN_STATS_KEY)
    except TaskFailed as failed:
        raise _could_not(task_failure_line(failed.host, failed.task, failed.message)) from None
    except NotExact as why:
        note.print(f"[yellow]plan[/yellow]: {why}; working the launch out with {PLAYBOOK} instead")
        return played(request, deploy_plan, runs_dir, progress)
    if not isinstance(published, dict) or not published.get("nodes"):
        raise _could_not(f"{PLAYBOOK} published no {PLAN_STATS_KEY}.nodes")
    return published
