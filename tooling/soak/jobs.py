"""The job a soak watches: local torchrun processes on this machine, or the phase's job on the cluster.

Both start the job, read every rank's status file, read what the launcher logged about failed workers,
stop the job cleanly (STOP file: every rank stops at one step after a final checkpoint) and fetch the
run's summary. Both can be rebuilt from the soak state, so a resumed soak finds the same job again.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tooling import deployment, jobstatus
from tooling.console import CheckFailed, ToolingError
from tooling.deploy import DeployRequest, deploy
from tooling.inventory import load_inventory, ssh_targets
from tooling.job_cli import stop_command
from tooling.phases import PhasePlan
from tooling.rehearse import fetch_summary
from tooling.remote import SshTarget, run_everywhere
from tooling.soak.causes import is_relevant
from tooling.soak.watch import Observation

# The soak's end is a time, not a step count: the job is stopped then. Steps enough never to finish first.
SOAK_MAX_STEPS = 1_000_000_000
MAX_EVENTS_PER_LOOK = 50
DEFAULT_SERVICE = "ddp-trainer"  # ddp_trainer_service_name's default in roles/ddp_trainer


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, or mid-rename: the next look will see it
    return data if isinstance(data, dict) else None


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
class LocalJob:
    """torchrun --standalone in its own session: Ctrl-C on the soak does not reach it, and it outlives a
    killed soak process, so `--resume` can pick it up again."""

    run_id: str
    run_dir: Path
    log_path: Path
    launcher_pid: int
    world_size: int
    log_offset: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    kind = "local"

    @classmethod
    def launch(
        cls, command: list[str], env: dict[str, str], run_dir: Path, log_path: Path, world_size: int
    ) -> LocalJob:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        job = cls(run_dir.name, run_dir, log_path, proc.pid, world_size)
        job._proc = proc
        return job

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "log_path": str(self.log_path),
            "launcher_pid": self.launcher_pid,
            "world_size": self.world_size,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalJob:
        position = data.get("position") or {}
        return cls(
            str(data["run_id"]),
            Path(data["run_dir"]),
            Path(data["log_path"]),
            int(data["launcher_pid"]),
            int(data["world_size"]),
            int(position.get("log_offset", 0)),
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
        statuses = [
            status
            for path in sorted((self.run_dir / "status").glob("rank*.json"))
            if (status := _read_json(path)) is not None
        ]
        # Statuses first, then the log: a failure logged before the new workers wrote is never missed.
        return Observation(statuses, {}, self._new_log_lines())

    def position(self) -> dict[str, Any]:
        return {"log_offset": self.log_offset}

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        try:
            os.kill(self.launcher_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # the pid may have been reused since the state was saved
            cmdline = Path(f"/proc/{self.launcher_pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{self.launcher_pid}/stat").read_text()
        except OSError:
            return True
        return b"torch.distributed.run" in cmdline and stat.rpartition(")")[2].split()[:1] != ["Z"]

    def ended(self, observation: Observation) -> str | None:
        if self.alive():
            return None
        code = self._proc.returncode if self._proc is not None else None
        exit_text = f" with code {code}" if code is not None else ""
        return f"torchrun (pid {self.launcher_pid}) exited{exit_text}; see {self.log_path}"

    def _wait(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.2)
        return not self.alive()

    def stop(self, timeout_s: float) -> str:
        """STOP file (final checkpoint at the next heartbeat); SIGTERM to the job's process group if it
        does not end in time (ranks treat it as a stop request too); SIGKILL as the last resort."""
        if not self.alive():
            return "had already ended"
        (self.run_dir / "STOP").touch()
        if self._wait(timeout_s):
            return "stopped cleanly (STOP file)"
        for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.launcher_pid, sig)
            except ProcessLookupError:
                return "stopped cleanly (STOP file)"
            if self._wait(grace):
                return f"did not stop within {timeout_s:.0f} s of STOP; ended with {sig.name}"
        raise CheckFailed(f"torchrun (pid {self.launcher_pid}) survived SIGKILL", hint="look at it with ps")

    def final_summary(self, timeout_s: float = 30.0) -> tuple[dict[str, Any] | None, str]:
        path = self.run_dir / "summary.json"
        return _read_json(path), str(path)

    def how_to_stop(self) -> str:
        return f"torchrun pid {self.launcher_pid}; stop it cleanly with `touch {self.run_dir / 'STOP'}`"


@dataclass
class ClusterJob:
    """The phase's job started by `tooling deploy`, read over SSH, stopped by playbooks/stop.yml."""

    inventory: Path
    hosts: list[str]
    run_id: str
    run_dir: str
    world_size: int
    service: str = DEFAULT_SERVICE
    journal_since: dict[str, float] = field(default_factory=dict)
    _units: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    kind = "cluster"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inventory": str(self.inventory),
            "hosts": self.hosts,
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "world_size": self.world_size,
            "service": self.service,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterJob:
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

    def _targets(self) -> list[SshTarget]:
        return ssh_targets(load_inventory(self.inventory), self.hosts)

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
        targets = self._targets()
        reports = jobstatus.collect(targets, self.run_dir)
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

    @classmethod
    def launch(cls, request: DeployRequest, plan: PhasePlan) -> ClusterJob:
        record = deploy(request, plan)
        hostvars = load_inventory(request.inventory).get("_meta", {}).get("hostvars", {})
        service = str(hostvars.get(record.hosts[0], {}).get("ddp_trainer_service_name", DEFAULT_SERVICE))
        return cls(request.inventory, record.hosts, record.run_id, record.run_dir, record.world_size, service)

    def stop(self, timeout_s: float) -> str:
        current = deployment.load(self.inventory)
        if current.run_id != self.run_id:
            raise ToolingError(
                f"the inventory's current run is {current.run_id}, not the soak's {self.run_id}: "
                "not stopping it",
                hint=f"stop {self.run_id} with playbooks/stop.yml -e ddp_trainer_run_id={self.run_id}",
            )
        stop_command(inventory=self.inventory, timeout=int(timeout_s))
        return "stopped with playbooks/stop.yml (STOP file, final checkpoint)"

    def final_summary(self, timeout_s: float = 60.0) -> tuple[dict[str, Any] | None, str]:
        where = f"{self.hosts[0]}:{self.run_dir}/summary.json"
        try:
            return fetch_summary(self.inventory, self.hosts[0], self.run_dir, timeout_s), where
        except ToolingError:
            return None, where

    def how_to_stop(self) -> str:
        where = ", ".join(self.hosts)
        return f"run {self.run_id} on {where}; stop it with `tooling stop --inventory {self.inventory}`"


def job_from_state(job: dict[str, Any]) -> LocalJob | ClusterJob:
    kind = job.get("kind")
    try:
        if kind == "local":
            return LocalJob.from_json(job)
        if kind == "cluster":
            return ClusterJob.from_json(job)
    except (KeyError, TypeError, ValueError) as exc:
        raise ToolingError(f"the soak state's job entry is incomplete: {exc!r} missing or wrong") from None
    raise ToolingError(
        f"the soak state names no job it can find again (job kind {kind!r}): it ended before its launch"
    )
