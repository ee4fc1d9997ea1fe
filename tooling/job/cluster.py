"""The phase's job on the cluster: started by deploy (tooling.job.deploy), read over SSH, stopped by
playbooks/stop.yml (every rank stops at one step after a final checkpoint), its summary read from the
first node once the run has ended.

`tooling stop` and the soak stop through `stop()`; rehearse, soak and the sweep read summaries through
`fetch_summary()`.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from tooling import home
from tooling.console import CheckFailed, ToolingError, console, err_console
from tooling.inventory import load_inventory, refuse_placeholder_hosts, ssh_targets
from tooling.job import records, status
from tooling.job.deploy import DeployRequest, Preflight, deploy
from tooling.job.status import NodeReport
from tooling.plan.phases import PhasePlan
from tooling.remote import SshTarget, run_command
from tooling.runner import run_playbook


def fetch_summary(inventory: Path, host: str, run_dir: str, timeout_s: float) -> dict[str, Any]:
    """The run's summary.json on `host` once the run is no longer running; CheckFailed after timeout_s."""
    target = ssh_targets(load_inventory(inventory), [host])[0]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = run_command(target, f"cat {shlex.quote(run_dir + '/summary.json')}")
        if result.rc == 0:
            summary: dict[str, Any] = json.loads(result.stdout)
            if summary["status"] != "running":
                return summary
        elif result.error:
            raise CheckFailed(f"cannot read the run's summary on {host}: {result.error}")
        time.sleep(3)
    raise CheckFailed(f"the run did not finish within {timeout_s:.0f} s", hint="see `tooling status`")


def stop(inventory: Path, timeout_s: int, run_id: str | None = None) -> records.Deployment:
    """Stop the run recorded for `inventory` cleanly (playbooks/stop.yml), then print every rank's state.
    With `run_id`, only that run: refused when the inventory has started another one since."""
    record = records.load(inventory)
    if run_id is not None and record.run_id != run_id:
        raise ToolingError(
            f"the inventory's current run is {record.run_id}, not this job's {run_id}: not stopping it",
            hint=f"stop {run_id} with playbooks/stop.yml -e ddp_trainer_run_id={run_id}",
        )
    refuse_placeholder_hosts(load_inventory(inventory), record.hosts, inventory)
    started = time.monotonic()
    result = run_playbook(
        "playbooks/stop.yml",
        inventory=inventory,
        runs_dir=home.ansible(),
        limit=record.group,
        extravars={
            "ddp_trainer_phase": record.phase,
            "ddp_trainer_run_id": record.run_id,
            "ddp_trainer_stop_timeout_s": timeout_s,
        },
        label=f"stop-{record.group}",
        console=err_console,
    )
    if not result.ok:
        raise CheckFailed(
            f"stopping run {record.run_id} failed: {result.explanation}",
            hint=f"ansible's output is in {result.artifact_dir}/stdout",
        )
    state = status.show(record, inventory)
    console.print(
        f"run {record.run_id} {state} in {time.monotonic() - started:.0f} s; "
        f"its last checkpoint and summary.json are in {record.run_dir} on each node"
    )
    return record


@dataclass
class ClusterJob:
    """One run of the phase on the inventory's nodes, as deploy recorded it."""

    inventory: Path
    hosts: list[str]
    run_id: str
    run_dir: str
    world_size: int

    kind: ClassVar[str] = "cluster"

    @classmethod
    def start(cls, request: DeployRequest, plan: PhasePlan, preflight: Preflight | None = None) -> Self:
        """Deploy the phase (provision, verify, launch, wait for every rank): the job deploy started."""
        return cls.of(deploy(request, plan, preflight))

    @classmethod
    def of(cls, record: records.Deployment) -> Self:
        return cls(Path(record.inventory), record.hosts, record.run_id, record.run_dir, record.world_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inventory": str(self.inventory),
            "hosts": self.hosts,
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "world_size": self.world_size,
        }

    def targets(self) -> list[SshTarget]:
        return ssh_targets(load_inventory(self.inventory), self.hosts)

    def status(self, targets: list[SshTarget] | None = None) -> list[NodeReport]:
        """Every rank's status file on every node now (an unreachable node says why); `targets` when the
        caller has read the inventory already."""
        return status.collect(targets if targets is not None else self.targets(), self.run_dir)

    def stop(self, timeout_s: float) -> str:
        """Stop this run, never another one the inventory has started since."""
        stop(self.inventory, int(timeout_s), run_id=self.run_id)
        return "stopped with playbooks/stop.yml (STOP file, final checkpoint)"

    def fetch_summary(self, timeout_s: float = 60.0) -> tuple[dict[str, Any] | None, str]:
        """The run's summary once it has ended (None if it cannot be had in time) and where it was read."""
        where = f"{self.hosts[0]}:{self.run_dir}/summary.json"
        try:
            return fetch_summary(self.inventory, self.hosts[0], self.run_dir, timeout_s), where
        except ToolingError:
            return None, where

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """The run's summary once it has ended; CheckFailed when it runs longer."""
        return fetch_summary(self.inventory, self.hosts[0], self.run_dir, timeout_s)
