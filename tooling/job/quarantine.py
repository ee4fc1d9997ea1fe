"""Quarantined nodes: the nodes a site took out of its phases until they verify again.

`tooling deploy --phase P --exclude NODE` puts NODE here (with the reason and the time) and every later
deploy of a phase holding NODE runs without it; `status` and `phases` show the list; NODE leaves only when
`tooling verify-node` passes on it (no FAIL row). One file per inventory under the state root
(<home>/quarantine), written atomically, so a node quarantined on the production cluster stays so whichever
command or terminal deploys next.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ddp.atomic import atomic_write_json
from tooling import home
from tooling.console import ToolingError
from tooling.job.records import inventory_file

DEFAULT_REASON = "excluded by tooling deploy --exclude"


@dataclass(frozen=True)
class Quarantined:
    node: str
    reason: str
    since: float = field(default_factory=time.time)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.since))
        return f"{self.node} (since {when}: {self.reason})"


def _path(inventory: Path, state_dir: Path | None) -> Path:
    return inventory_file(inventory, state_dir or home.quarantine())


def _read(path: Path) -> tuple[str, list[Quarantined]]:
    """One list file: the inventory it is kept for and its entries."""
    try:
        document = json.loads(path.read_text())
        return str(document["inventory"]), [Quarantined(**entry) for entry in document["nodes"]]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        # Never guess: a list that cannot be read might be hiding a bad node from the next deploy.
        raise ToolingError(
            f"quarantine list {path} is unreadable: {type(exc).__name__}: {exc}",
            hint="fix or remove the file; it holds the nodes to leave out of every phase",
        ) from None


def load(inventory: Path, state_dir: Path | None = None) -> list[Quarantined]:
    """The inventory's quarantined nodes, in the order they were quarantined; none when no file exists."""
    path = _path(inventory, state_dir)
    return _read(path)[1] if path.exists() else []


def every(state_dir: Path | None = None) -> dict[str, list[Quarantined]]:
    """Each inventory's quarantined nodes (the inventories with none left out); unreadable lists are
    named rather than skipped."""
    read = (_read(path) for path in sorted((state_dir or home.quarantine()).glob("*.json")))
    return {inventory: nodes for inventory, nodes in read if nodes}


def _save(inventory: Path, nodes: list[Quarantined], state_dir: Path | None) -> None:
    path = _path(inventory, state_dir)
    atomic_write_json(path, {"inventory": str(inventory.resolve()), "nodes": [asdict(q) for q in nodes]})


def add(inventory: Path, nodes: list[str], reason: str, state_dir: Path | None = None) -> list[Quarantined]:
    """Quarantine `nodes` (those already quarantined keep their first reason and time); returns the list."""
    current = load(inventory, state_dir)
    known = {q.node for q in current}
    current += [Quarantined(node, reason) for node in dict.fromkeys(nodes) if node not in known]
    _save(inventory, current, state_dir)
    return current


def release(inventory: Path, nodes: list[str], state_dir: Path | None = None) -> list[Quarantined]:
    """Take `nodes` out of quarantine (verify-node passed on them); returns the entries released."""
    current = load(inventory, state_dir)
    released = [q for q in current if q.node in nodes]
    if released:
        _save(inventory, [q for q in current if q.node not in nodes], state_dir)
    return released


def names(inventory: Path, state_dir: Path | None = None) -> list[str]:
    return [q.node for q in load(inventory, state_dir)]
