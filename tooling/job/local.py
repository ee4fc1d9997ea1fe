"""A job of torchrun processes on this machine: started in a session of its own, read from its run
directory (status/rank*.json, summary.json), stopped with the STOP file, then signals if it must.

Used by `tooling run` (in the foreground), `soak --local` (found again from its saved state by
`--resume`) and the sweep's local trials.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from tooling.console import CheckFailed, console
from tooling.job import production
from tooling.job.status import NodeReport
from tooling.job.torchrun import TorchrunLaunch, local_launch
from tooling.plan.phases import PhasePlan

SUMMARY_FILE = "summary.json"
LOCAL_HOST = "localhost"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None while it is absent or mid-rename (the next look will see it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class LocalJob:
    """torchrun --standalone in its own session: Ctrl-C on the caller does not reach it, and it outlives
    the process that started it, so a later one can find it again from `to_json()`."""

    run_id: str
    run_dir: Path
    log_path: Path
    launcher_pid: int
    world_size: int
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    kind: ClassVar[str] = "local"

    @classmethod
    def start(cls, launch: TorchrunLaunch, run_dir: Path, log_path: Path, world_size: int) -> Self:
        """The launch worked out by tooling.job.torchrun, its output in `log_path`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                launch.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=launch.env,
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

    def status(self) -> list[NodeReport]:
        """Every rank's status file now, as the one node this machine is."""
        statuses = [
            status
            for path in sorted((self.run_dir / "status").glob("rank*.json"))
            if (status := read_json(path)) is not None
        ]
        return [NodeReport(LOCAL_HOST, statuses, time.time())]

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

    def returncode(self) -> int | None:
        """torchrun's exit code, known only to the process that started it."""
        return self._proc.returncode if self._proc is not None else None

    def _wait_ended(self, timeout_s: float) -> bool:
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
        if self._wait_ended(timeout_s):
            return "stopped cleanly (STOP file)"
        for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.launcher_pid, sig)
            except ProcessLookupError:
                return "stopped cleanly (STOP file)"
            if self._wait_ended(grace):
                return f"did not stop within {timeout_s:.0f} s of STOP; ended with {sig.name}"
        raise CheckFailed(f"torchrun (pid {self.launcher_pid}) survived SIGKILL", hint="look at it with ps")

    def fetch_summary(self, timeout_s: float = 30.0) -> tuple[dict[str, Any] | None, str]:
        """The run's summary.json as it is now (None if not written yet) and where it was read."""
        path = self.run_dir / SUMMARY_FILE
        return read_json(path), str(path)

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """The run's summary once torchrun has ended; CheckFailed when it runs longer or fails."""
        if not self._wait_ended(timeout_s):
            raise CheckFailed(
                f"torchrun (pid {self.launcher_pid}) did not finish within {timeout_s:.0f} s",
                hint=f"see {self.log_path}",
            )
        code = self.returncode()
        summary, where = self.fetch_summary()
        if code not in (0, None) or summary is None:
            raise CheckFailed(
                f"run {self.run_id} failed (torchrun exit {code})"
                if code not in (0, None)
                else f"run {self.run_id} left no {where}",
                hint=f"see {self.log_path} and the per-rank logs in {self.run_dir / 'logs'}",
            )
        return summary


def run_local(
    plan: PhasePlan, phase_name: str, output_dir: Path, run_name: str, overrides: list[str]
) -> dict[str, Any]:
    """`tooling run`: every process of the phase on this machine, in the foreground (its output on the
    terminal), then the run's summary."""
    launch = local_launch(plan, phase_name, output_dir, run_name, overrides)
    console.print(f"[bold]phase {phase_name}[/bold]: {plan.get(phase_name).world_size} local processes")
    if (locked := production.current(phase_name, plan.get(phase_name).config)) is not None:
        console.print(f"production config: {locked.describe()}")
    proc = subprocess.run(launch.command, env=launch.env, check=False)
    summary_path = output_dir / run_name / SUMMARY_FILE
    if proc.returncode != 0:
        raise CheckFailed(
            f"the phase {phase_name} run failed (torchrun exit {proc.returncode})",
            hint=f"see the per-rank logs in {output_dir / run_name / 'logs'}",
        )
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    return summary
