"""The record of what `tooling deploy` started, so `status`, `stop`, `gate` and `rehearse` find the run.

Kept on the control machine under the state root (<home>/deployments, tooling.home), one file per
inventory (a sandbox and a production cluster can both have a current run), written atomically. A command
given no inventory acts on the latest deployment (`choose`): the one the operator just started.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ddp.atomic import atomic_write_json
from tooling import home
from tooling.console import ToolingError


@dataclass
class Deployment:
    phase: str
    group: str
    run_id: str
    inventory: str
    hosts: list[str]
    run_root: str
    world_size: int
    started_at: float = field(default_factory=time.time)
    metrics_endpoints: list[str] = field(default_factory=list)
    rendezvous_endpoint: str = ""  # host:port of the c10d rendezvous, as launch.yml published it
    fallback_from: str | None = None  # the larger phase whose run this one continues
    # The run's own settings (--set, --config): a fallback resumes the same model from its checkpoints.
    overrides: list[str] = field(default_factory=list)
    config: str | None = None

    @property
    def run_dir(self) -> str:
        return f"{self.run_root}/{self.run_id}"


def inventory_file(inventory: Path, state_dir: Path) -> Path:
    """The file under `state_dir` kept for `inventory`: its name and a hash of its absolute path, so two
    inventories of the same name (sandbox/, production/ in two checkouts) keep files of their own."""
    key = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:12]
    return state_dir / f"{inventory.resolve().name}-{key}.json"


def record_path(inventory: Path, state_dir: Path | None = None) -> Path:
    """The record's file: under state_dir, by default the state root's deployments directory."""
    return inventory_file(inventory, state_dir or home.deployments())


def save(deployment: Deployment, state_dir: Path | None = None) -> Path:
    path = record_path(Path(deployment.inventory), state_dir)
    atomic_write_json(path, asdict(deployment))
    return path


def load(inventory: Path, state_dir: Path | None = None) -> Deployment:
    path = record_path(inventory, state_dir)
    try:
        return Deployment(**json.loads(path.read_text()))
    except FileNotFoundError:
        raise ToolingError(
            f"no deployment recorded for inventory {inventory}",
            hint="start one with `tooling deploy --phase P --inventory DIR`",
        ) from None
    except (ValueError, TypeError) as exc:
        raise ToolingError(f"deployment record {path} is unreadable: {exc}", hint="deploy again") from None


@dataclass(frozen=True)
class Chosen:
    """The deployment a command acts on, and how it was chosen (for the line that says so)."""

    deployment: Deployment
    inventory: Path
    latest_of: int | None = None  # how many were recorded, when chosen as the latest (no inventory given)

    def describe(self) -> str:
        d = self.deployment
        line = f"deployment: run {d.run_id}, phase {d.phase}, inventory {self.inventory}"
        if self.latest_of is None:
            return line
        others = f" of {self.latest_of}" if self.latest_of > 1 else ""
        return f"{line} (the latest recorded{others}; -i DIR for another)"


def recorded(state_dir: Path | None = None) -> list[Deployment]:
    """Every readable deployment record, oldest start first; unreadable files are skipped, not fatal."""
    found: list[Deployment] = []
    for path in sorted((state_dir or home.deployments()).glob("*.json")):
        try:
            found.append(Deployment(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(found, key=lambda d: d.started_at)


def machines(deployment: Deployment) -> set[str]:
    """The nodes a deployment ran on, by inventory name and by the address its ranks were reached at: two
    inventories may name the same machines differently."""
    addresses = {urllib.parse.urlsplit(url).hostname for url in deployment.metrics_endpoints}
    return set(deployment.hosts) | {address for address in addresses if address}


def deployed_since(deployment: Deployment, state_dir: Path | None = None) -> list[Deployment]:
    """The deployments recorded for other inventories on any of `deployment`'s nodes (by name or address)
    that started after it, or with it (the order is then unknown): they may have re-pointed those nodes."""
    mine = machines(deployment)
    return [
        other
        for other in recorded(state_dir)
        if other.inventory != deployment.inventory
        and other.started_at >= deployment.started_at
        and machines(other) & mine
    ]


def choose(inventory: Path | None, state_dir: Path | None = None) -> Chosen:
    """The deployment of `inventory`, or with none given the latest one recorded."""
    if inventory is not None:
        path = inventory.resolve()
        return Chosen(load(path, state_dir), path)
    every = recorded(state_dir)
    if not every:
        raise ToolingError(
            f"no deployment recorded (looked in {state_dir or home.deployments()})",
            hint="start one with `tooling deploy --phase P --inventory DIR`, "
            "or pass --inventory DIR for the cluster you deployed",
        )
    latest = every[-1]
    return Chosen(latest, Path(latest.inventory), latest_of=len(every))


def of_run(run_id: str, state_dir: Path | None = None) -> Chosen:
    """The recorded deployment of run `run_id`, whichever inventory it used. A later deploy on that
    inventory replaces its record: the run is then no longer followed here."""
    found = [d for d in recorded(state_dir) if d.run_id == run_id]
    if not found:
        known = ", ".join(d.run_id for d in recorded(state_dir)) or "none"
        raise ToolingError(
            f"no deployment of run {run_id} recorded (looked in {state_dir or home.deployments()}; "
            f"recorded: {known})",
            hint="name a run an earlier `tooling rehearse --phase P` printed, or add --local for a local run",
        )
    return Chosen(found[-1], Path(found[-1].inventory))
