"""Whether a run may be judged for a phase at all, before any criterion is looked at.

Two questions, both answered from the run's summary.json:
- its size: the run's nodes and world size are the phase's (tooling/phases.yml). A run of another size is
  refused outright, naming the phases it does match: a 4-process run recorded as phase 2a's NO-GO would
  stand in `tooling phases` and the reports as that phase's decision.
- whether it ran to its end (`completeness`). Complete: status `completed` (all max_steps), or `stopped`
  by the STOP file: the operator's planned stop (`tooling stop`) and a soak's planned end both write it.
  Incomplete: `stopped` by a signal (Ctrl-C's SIGINT, a SIGTERM), `stopped` with no cause named, `failed`,
  `running` (the summary of a checkpoint of a run still going, or one killed before its end) and any other
  status. The stop's cause is read back by ddp.control, which also writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddp.control import SIGNAL, STOP_FILE, stop_cause
from tooling.console import ToolingError
from tooling.gates.evidence import RunInfo

if TYPE_CHECKING:
    from tooling.plan.phases import PhasePlan  # annotation only: `gate --help` quotes COMPLETE_RULE

# What `--help` and the README say about it, in one place.
COMPLETE_RULE = (
    "complete: status completed, or stopped by the STOP file (`tooling stop`, a soak's planned end); "
    "incomplete: stopped by a signal (Ctrl-C, SIGTERM) or with no cause named, failed, or still running"
)


def _size(nodes: int, world_size: int) -> str:
    per_node = f"{world_size // nodes}" if nodes and world_size % nodes == 0 else "?"
    return f"{nodes} node(s) x {per_node} = {world_size} processes"


def check_shape(plan: PhasePlan, phase: str, run: RunInfo) -> None:
    """Refuse (ToolingError, exit 2) a run whose node count or world size is not the phase's."""
    wanted = plan.get(phase)
    if not isinstance(run.nodes, int) or not isinstance(run.world_size, int):
        raise ToolingError(
            f"{run.summary_path}: the run summary has no nodes/world_size "
            f"(got nodes={run.nodes!r}, world_size={run.world_size!r}); cannot tell which phase it ran",
            hint="gate a summary.json written by the trainer (ddp/summary.py)",
        )
    if (run.nodes, run.world_size) == (wanted.nodes, wanted.world_size):
        return
    matches = plan.shaped(run.nodes, run.world_size)
    if matches:
        names = " or ".join(f"phase {name}" for name in matches)
        where = f"It matches {names}."
        hint = f"`tooling gate --phase {matches[0]} --run {run.summary_path}`, or gate a run of phase {phase}"
    else:
        sizes = ", ".join(f"{name}: {_size(p.nodes, p.world_size)}" for name, p in plan.ordered())
        where = f"It matches no phase of the plan ({sizes})."
        hint = f"gate a run of phase {phase} (`tooling deploy --phase {phase}` starts one)"
    raise ToolingError(
        f"run {run.run_id} ran {_size(run.nodes, run.world_size)}; phase {phase} is "
        f"{_size(wanted.nodes, wanted.world_size)}. {where} Not judged, nothing recorded.",
        hint=hint,
    )


@dataclass(frozen=True)
class Completeness:
    complete: bool
    why: str  # one line, for the operator and the decision record

    def as_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "why": self.why}


def completeness(summary: dict[str, Any]) -> Completeness:
    """Whether the run ran to its end or to the operator's planned stop (see the module's rule)."""
    status, reason = summary.get("status"), summary.get("reason")
    steps = summary.get("steps")
    max_steps = ((summary.get("config") or {}).get("training") or {}).get("max_steps")
    at = f"at step {steps}" + (f" of {max_steps}" if max_steps is not None else "")
    if status == "completed":
        return Completeness(True, f"completed {at}")
    if status == "stopped":
        cause = stop_cause(reason)
        if cause == STOP_FILE:
            return Completeness(True, f"stopped as planned {at} ({reason})")
        if cause == SIGNAL:
            return Completeness(False, f"interrupted {at}: {reason}")
        return Completeness(False, f"stopped {at} without a recorded cause ({reason!r})")
    if status == "failed":
        return Completeness(False, f"failed {at}: {reason}")
    if status == "running":
        return Completeness(
            False, f"still running, or killed before its end: the summary is from a checkpoint {at}"
        )
    return Completeness(False, f"unknown status {status!r} {at}")


def require_complete(ended: Completeness, phase: str, run_id: str) -> None:
    """Refuse (exit 2) an incomplete run as a phase's decision; the CLI has shown its judgement by then."""
    if ended.complete:
        return
    raise ToolingError(
        f"run {run_id} is incomplete: {ended.why}. The judgement above is not recorded as phase "
        f"{phase}'s decision.",
        hint="gate a run that ran to its end or was stopped with `tooling stop`, or pass "
        "--allow-incomplete to record this one (its record then says it is incomplete)",
    )
