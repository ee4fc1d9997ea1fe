"""The job a soak watches: local torchrun processes on this machine, or the phase's job on the cluster
(tooling.job's LocalJob and ClusterJob), with what only a soak asks of them.

Both read every rank's status file and what the launcher logged about failed workers since the last look
(the torchrun log, or the trainer unit's journal on every node). Both can be rebuilt from the soak state,
so a resumed soak finds the same job again and reads the launcher's lines from where it stopped.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tooling.console import ToolingError
from tooling.inventory import load_inventory
from tooling.job.cluster import ClusterJob
from tooling.job.deploy import DeployRequest, Preflight
from tooling.job.local import LocalJob
from tooling.plan.phases import PhasePlan
from tooling.remote import run_everywhere
from tooling.soak.causes import is_relevant
from tooling.soak.watch import Observation

# The soak's end is a time, not a step count: the job is stopped then. Steps enough never to finish first.
SOAK_MAX_STEPS = 1_000_000_000
MAX_EVENTS_PER_LOOK = 50
DEFAULT_SERVICE = "ddp-trainer"  # ddp_trainer_service_name's default in roles/ddp_trainer


def final_from_summary(summary: dict[str, Any] | None, where: str, how: str) -> dict[str, Any]:
    """What the record keeps of the run's last summary: how it ended and its final checkpoint."""
    if summary is None:
        return {"stopped": how, "summary": where, "status": None, "steps": None, "checkpoint_step": None}
    checkpoints = summary.get("checkpoints") or {}
    return {
        "stopped": how,
        "summary": where,
        "status": summary.get("status"),
        "reason": summary.get("reason"),
        "steps": summary.get("steps"),
        "checkpoint_step": checkpoints.get("last_step"),
        "checkpoint_file": checkpoints.get("last_file"),
        "restarts": summary.get("restarts"),
        "incarnations": summary.get("incarnations", []),
    }


@dataclass
class LocalSoakJob(LocalJob):
    """A local job whose launcher log is read line by line, failures of workers kept."""

    log_offset: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        position = data.get("position") or {}
        return cls(
            str(data["run_id"]),
            Path(data["run_dir"]),
            Path(data["log_path"]),
            int(data["launcher_pid"]),
            int(data["world_size"]),
            log_offset=int(position.get("log_offset", 0)),
        )

    def _new_log_lines(self) -> list[str]:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                data = log.read()
        except OSError:
            return []
        complete = data.rfind(b"\n") + 1  # a half-written last line is read next time
        self.log_offset += complete
        lines = data[:complete].decode("utf-8", errors="replace").splitlines()
        return [line.strip()[:400] for line in lines if is_relevant(line)][:MAX_EVENTS_PER_LOOK]

    def observe(self) -> Observation:
        # Statuses first, then the log: a failure logged before the new workers wrote is never missed.
        reports = self.status()
        return Observation([rank for report in reports for rank in report.ranks], {}, self._new_log_lines())

    def position(self) -> dict[str, Any]:
        return {"log_offset": self.log_offset}

    def ended(self, observation: Observation) -> str | None:
        if self.alive():
            return None
        code = self.returncode()
        exit_text = f" with code {code}" if code is not None else ""
        return f"torchrun (pid {self.launcher_pid}) exited{exit_text}; see {self.log_path}"

    def how_to_stop(self) -> str:
        return f"torchrun pid {self.launcher_pid}; stop it cleanly with `touch {self.run_dir / 'STOP'}`"


@dataclass
class ClusterSoakJob(ClusterJob):
    """The phase's job on the cluster, with the trainer unit's journal read on every node."""

    service: str = DEFAULT_SERVICE
    journal_since: dict[str, float] = field(default_factory=dict)
    _units: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def launch(cls, request: DeployRequest, plan: PhasePlan, preflight: Preflight | None) -> Self:
        job = cls.start(request, plan, preflight)
        hostvars = load_inventory(request.inventory).get("_meta", {}).get("hostvars", {})
        job.service = str(hostvars.get(job.hosts[0], {}).get("ddp_trainer_service_name", DEFAULT_SERVICE))
        return job

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "service": self.service}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        position = data.get("position") or {}
        return cls(
            Path(data["inventory"]),
            list(data["hosts"]),
            str(data["run_id"]),
            str(data["run_dir"]),
            int(data["world_size"]),
            str(data.get("service", DEFAULT_SERVICE)),
            {k: float(v) for k, v in (position.get("journal_since") or {}).items()},
        )

    def journal_command(self, since: float) -> str:
        unit = shlex.quote(self.service)
        return (
            f"systemctl is-active {unit} || true; echo --ddp-journal--; "
            f"journalctl -u {unit} --since @{int(since)} -o short-unix --no-pager -q 2>/dev/null "
            "| grep -E 'failed \\(exitcode|attempts left' || true"
        )

    def parse_journal(self, host: str, text: str) -> list[str]:
        unit_state, _, journal = text.partition("--ddp-journal--")
        self._units[host] = unit_state.strip().splitlines()[-1] if unit_state.strip() else "unknown"
        since = self.journal_since.get(host, 0.0)
        events = []
        for line in journal.splitlines():
            stamp, _, rest = line.strip().partition(" ")
            try:
                when = float(stamp)
            except ValueError:
                continue
            if when <= since:  # --since has whole seconds: lines already read come again
                continue
            self.journal_since[host] = max(self.journal_since.get(host, 0.0), when)
            events.append(f"{host}: {rest.strip()[:400]}")
        return events[:MAX_EVENTS_PER_LOOK]

    def observe(self) -> Observation:
        targets = self.targets()
        reports = self.status(targets)
        statuses = [rank for report in reports for rank in report.ranks]
        unreachable = {r.host: r.error for r in reports if r.error}
        # The journal from a minute before the soak's first look: the launch's own failures count too.
        for target in targets:
            self.journal_since.setdefault(target.name, time.time() - 60)
        since = min(self.journal_since.values())
        events: list[str] = []
        for name, result in run_everywhere(targets, self.journal_command(since), 10.0).items():
            if result.error is None and result.rc in (0, None):
                events.extend(self.parse_journal(name, result.stdout))
        return Observation(statuses, unreachable, events)

    def position(self) -> dict[str, Any]:
        return {"journal_since": dict(self.journal_since)}

    def ended(self, observation: Observation) -> str | None:
        stopped = {h: s for h, s in self._units.items() if s in ("inactive", "failed")}
        if not stopped:
            return None
        return "the trainer unit is " + ", ".join(f"{s} on {h}" for h, s in sorted(stopped.items()))

    def how_to_stop(self) -> str:
        where = ", ".join(self.hosts)
        return f"run {self.run_id} on {where}; stop it with `tooling stop --inventory {self.inventory}`"


def job_from_state(job: dict[str, Any]) -> LocalSoakJob | ClusterSoakJob:
    kind = job.get("kind")
    try:
        if kind == "local":
            return LocalSoakJob.from_json(job)
        if kind == "cluster":
            return ClusterSoakJob.from_json(job)
    except (KeyError, TypeError, ValueError) as exc:
        raise ToolingError(f"the soak state's job entry is incomplete: {exc!r} missing or wrong") from None
    raise ToolingError(
        f"the soak state names no job it can find again (job kind {kind!r}): it ended before its launch"
    )
