"""The record of what `tooling deploy` started, so `status`, `stop`, `gate` and `rehearse` find the run.

Kept on the control machine under the state root (<home>/deployments, tooling.home), one file per
inventory (a sandbox and a production cluster can both have a current run), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
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


def record_path(inventory: Path, state_dir: Path | None = None) -> Path:
    """The record's file: under state_dir, by default the state root's deployments directory."""
    state_dir = state_dir or home.deployments()
    key = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:12]
    return state_dir / f"{inventory.resolve().name}-{key}.json"


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
