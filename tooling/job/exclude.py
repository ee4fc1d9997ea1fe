"""Deploying a phase without its quarantined nodes (`tooling deploy --phase P --exclude NODE`).

A node named with --exclude is quarantined (tooling.job.quarantine) once it is known to be one of the
phase's nodes; every quarantined node of the phase is then left out: the phase runs on the nodes left,
with the world size they give. A newly excluded node's phase continues the run recorded for it, under
the same id, from its newest checkpoint (every node keeps a copy, and a writer broadcasts the newest to
the others). Leaving the quarantined nodes out, and halting their trainers, is every deploy's own work
(tooling.job.deploy.build_plan and deploy); this module puts nodes in quarantine and picks the run to
continue.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from tooling.console import ToolingError, console
from tooling.inventory import load_inventory
from tooling.job import quarantine, records
from tooling.job.deploy import DeployRequest, derive_phase_launch
from tooling.plan.phases import PhasePlan


def excluding_request(
    request: DeployRequest,
    plan: PhasePlan,
    exclude: list[str],
    reason: str | None = None,
    out: Console = console,
) -> DeployRequest:
    """`exclude` checked to be nodes of the phase and quarantined; when the inventory's recorded run is of
    this phase, `request` made to continue it (same id, its settings, from its newest checkpoint). The
    deploy itself leaves every quarantined node out (build_plan)."""
    members = derive_phase_launch(
        load_inventory(request.inventory), request.inventory, plan, request.phase
    ).hosts
    strangers = [node for node in exclude if node not in members]
    if strangers:
        raise ToolingError(
            f"--exclude {', '.join(strangers)}: not a node of phase {request.phase} ({', '.join(members)})",
            hint="name one of the phase's nodes; `tooling deploy --phase P --plan --offline` lists them",
        )
    out_of_phase = set(exclude) | {q.node for q in quarantine.load(request.inventory)}
    left = [h for h in members if h not in out_of_phase]
    if not left:
        # Refused before the list is written: nothing is quarantined by a deploy that cannot run.
        raise ToolingError(
            f"every node of phase {request.phase} would be quarantined: {', '.join(members)}",
            hint="a node leaves quarantine when `tooling verify-node NODE` passes on it",
        )
    if exclude:
        quarantine.add(request.inventory, exclude, reason or quarantine.DEFAULT_REASON)
    if not exclude or request.run_id:
        return request
    try:
        record = records.load(request.inventory)
    except ToolingError:
        return request  # nothing recorded for the inventory: a new run on the nodes left
    # The phase's own run, or the run it fell back from (--fallback) coming back to it without the node.
    if request.phase not in (record.phase, record.fallback_from):
        return request
    out.print(
        f"run {record.run_id} continues as phase {request.phase} on {', '.join(left)} "
        "from its newest checkpoint"
    )
    # As a fallback does: same run (and so the same checkpoints), same model and settings, nodes as they are.
    return replace(
        request,
        run_id=record.run_id,
        restart=True,
        provision=False,
        overrides=[*record.overrides, *request.overrides],
        config=request.config or (Path(record.config) if record.config else None),
    )
