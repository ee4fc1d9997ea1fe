"""Running one trial: on the phase's nodes (a re-launch, like `tooling deploy --skip-provision`; after the
first, launch.yml alone while nothing else was deployed there) or on this machine (the local launcher).
Both sit behind `TrialRunner`, so the sweep's flow is tested with a fake.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ddp.atomic import atomic_write_json
from tooling.console import CheckFailed, ToolingError
from tooling.job import production, records
from tooling.job.cluster import fetch_summary
from tooling.job.deploy import DeployRequest, build_plan, deploy
from tooling.job.local import read_json
from tooling.job.torchrun import local_launch
from tooling.plan.phases import PhasePlan

# A trial is a measurement, not a run to keep: checkpoints would only add their I/O to the figures.
TRIAL_DEFAULTS = ["checkpoint.enabled=false"]
# Local trials share this machine with everything else on it: keep their metrics off other interfaces.
LOCAL_DEFAULTS = ["metrics.bind_address=127.0.0.1"]


def trial_settings(mode: str, sets: list[str], steps: int) -> list[str]:
    """What every trial of a sweep runs with, before its own combination: the user's --set win over the
    defaults, and the step count is the sweep's."""
    defaults = TRIAL_DEFAULTS + (LOCAL_DEFAULTS if mode == "local" else [])
    return [*defaults, *sets, f"training.max_steps={steps}"]


@dataclass(frozen=True)
class TrialSpec:
    trial: int
    run_id: str
    overrides: list[str]


@dataclass(frozen=True)
class TrialResult:
    summary: dict[str, Any] | None
    error: str | None = None  # why the trial did not finish, when it did not
    summary_path: str | None = None


class TrialRunner(Protocol):
    def prepare(self, overrides: list[str]) -> None:
        """Check that trials can start at all (phase, inventory, hosts); raise ToolingError if not."""

    def run(self, spec: TrialSpec) -> TrialResult:
        """Run the trial to its end. Failures of the trial itself are returned, not raised."""


class LocalTrials:
    """Every process of the phase as torchrun workers on this machine; output goes to a log per trial."""

    def __init__(self, plan: PhasePlan, phase: str, out_dir: Path, timeout_s: float) -> None:
        self.plan, self.phase, self.out_dir, self.timeout_s = plan, phase, out_dir.resolve(), timeout_s

    def prepare(self, overrides: list[str]) -> None:
        local_launch(self.plan, self.phase, self.out_dir, "check", overrides)

    def run(self, spec: TrialSpec) -> TrialResult:
        launch = local_launch(self.plan, self.phase, self.out_dir, spec.run_id, spec.overrides)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log = self.out_dir / f"{spec.run_id}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(launch.command, stdout=handle, stderr=subprocess.STDOUT, env=launch.env)
            try:
                rc: int | None = proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                # Interrupted or out of time: end the launcher we started (it ends its workers).
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        summary_path = self.out_dir / spec.run_id / "summary.json"
        summary = read_json(summary_path)
        error = None
        if rc is None:
            error = f"did not finish within {self.timeout_s:.0f} s (see {log})"
        elif rc != 0:
            error = f"torchrun exited {rc} (see {log})"
        return TrialResult(summary, error, str(summary_path) if summary is not None else None)


@dataclass(frozen=True)
class _Configured:
    """How a cluster sweep last left the nodes: configured for its phase, with this locked production config
    (trainer.yml writes it on the nodes), and running the trial `run_id` launched."""

    run_id: str
    locked: production.LockedConfig | None


class ClusterTrials:
    """Each trial re-launches the phase's job with the trial's settings on nodes already provisioned, waits
    for every rank, then for the run's summary, and keeps a copy of it beside the sweep.

    The first trial points the nodes and Prometheus at the phase (trainer.yml, targets.yml); later ones run
    launch.yml alone, the trial's settings travelling as launch overrides, unless the nodes may have changed
    since (`_still_configured`)."""

    def __init__(
        self,
        plan: PhasePlan,
        phase: str,
        inventory: Path,
        out_dir: Path,
        timeout_s: float,
        restart_first: bool = False,
    ) -> None:
        self.plan, self.phase, self.inventory, self.out_dir = plan, phase, inventory, out_dir
        self.timeout_s = timeout_s
        # The sweep replaces its own previous trial's run if it lingers, never a run it did not start
        # unless asked to.
        self._restart = restart_first
        self._configured: _Configured | None = None

    def _request(
        self, overrides: list[str], run_id: str | None = None, configure: bool = True
    ) -> DeployRequest:
        # No pre-flight verification per trial: the phase was verified when it was deployed, and the
        # probes would take longer than a short trial.
        return DeployRequest(
            phase=self.phase,
            inventory=self.inventory,
            overrides=overrides,
            provision=False,
            configure=configure,
            verify=False,
            run_id=run_id,
            restart=self._restart,
        )

    def prepare(self, overrides: list[str]) -> None:
        build_plan(self._request(overrides), self.plan)

    def _launched(self, run_id: str) -> bool:
        """deploy records a run once its launch succeeded, before waiting for the ranks."""
        try:
            return records.load(self.inventory).run_id == run_id
        except ToolingError:
            return False

    def _locked(self) -> production.LockedConfig | None:
        return production.current(self.phase, self.plan.get(self.phase).config)

    def _still_configured(self) -> bool:
        """Whether the nodes are as this sweep's previous trial left them: the inventory's latest deployment
        is still that trial's run and no other inventory's was recorded on its nodes since (a deploy of
        another phase, or another run of this one, re-points the nodes and Prometheus), and the phase's
        locked production config is the one they were given."""
        if self._configured is None:
            return False
        try:
            latest = records.load(self.inventory)
        except ToolingError:
            return False
        if (latest.phase, latest.run_id) != (self.phase, self._configured.run_id):
            return False
        return not records.deployed_since(latest) and self._locked() == self._configured.locked

    def run(self, spec: TrialSpec) -> TrialResult:
        configure = not self._still_configured()
        locked = self._locked()
        try:
            record = deploy(self._request(spec.overrides, spec.run_id, configure), self.plan)
        except CheckFailed as exc:
            if not self._launched(spec.run_id):
                # Nothing of this trial started: the cluster, not the combination, is at fault, and every
                # later trial would fail the same way. Stop; the trial stays to be run by --resume, whose
                # first trial configures the nodes again.
                self._configured = None
                how = "" if configure else " (launch.yml alone, on the nodes the previous trial configured)"
                raise CheckFailed(
                    f"trial {spec.trial} could not be launched{how}: {exc}",
                    hint=f"{exc.hint or 'fix the cause above'}; then continue with --resume",
                ) from None
            # The launch went through, so the nodes are configured for the phase: the trial itself failed.
            self._configured = _Configured(spec.run_id, locked)
            self._restart = True
            return TrialResult(None, f"failed while starting: {exc}")
        self._configured = _Configured(record.run_id, locked)
        self._restart = True
        try:
            summary = fetch_summary(self.inventory, record.hosts[0], record.run_dir, self.timeout_s)
        except CheckFailed as exc:
            return TrialResult(None, str(exc))
        local = self.out_dir / spec.run_id / "summary.json"
        with contextlib.suppress(OSError):
            atomic_write_json(local, summary)
        return TrialResult(summary, None, str(local))
