"""Checkpointing as a collective: who writes, and which rank's copy a resumed group starts from.

Writers are each node's local rank 0 (every_node) or global rank 0 (rank0). On resume every writer looks
for its newest valid checkpoint; the group takes the newest step any writer has, and that writer
broadcasts the state, so nodes that never held a copy (a fallback or replacement node) resume too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from ddp import rng
from ddp.checkpoint import CheckpointEntry, CheckpointStore
from ddp.dist import DistEnv

log = logging.getLogger("ddp.checkpoint")


@dataclass(frozen=True)
class SaveOutcome:
    entry: CheckpointEntry | None  # None on non-writers and on failure
    error: str | None


class DistributedCheckpointer:
    def __init__(self, store: CheckpointStore, env: DistEnv, writers: str) -> None:
        self.store = store
        self.env = env
        self.is_writer = env.local_rank == 0 if writers == "every_node" else env.rank == 0

    def save(
        self, state: dict[str, Any], step: int, rank_payload: Any = None
    ) -> tuple[SaveOutcome, list[Any]]:
        """Collective. Gathers each rank's RNG state (and `rank_payload`), writers write.

        Returns this rank's outcome and every rank's payload (in rank order)."""
        gathered: list[Any] = [None] * self.env.world_size
        dist.all_gather_object(gathered, {"rng": rng.capture(), "payload": rank_payload})
        outcome = SaveOutcome(None, None)
        if self.is_writer:
            try:
                entry = self.store.save({**state, "rng": [g["rng"] for g in gathered]}, step)
                outcome = SaveOutcome(entry, None)
            except OSError as exc:
                previous = self.store.entries()
                kept = f"keeping {previous[-1].file}" if previous else "no earlier checkpoint exists"
                message = f"checkpoint at step {step} failed in {self.store.directory}: {exc}; {kept}"
                log.error(message)
                outcome = SaveOutcome(None, message)
        return outcome, [g["payload"] for g in gathered]

    def resume(self) -> dict[str, Any] | None:
        """Collective. The newest valid state any writer holds, on every rank; None for a fresh start."""
        found = self.store.load_newest() if self.is_writer else None
        step = found[0].step if found else -1
        steps: list[int] = [0] * self.env.world_size
        dist.all_gather_object(steps, step)
        best = max(steps)
        if best < 0:
            return None
        source = steps.index(best)
        holder: list[Any] = [found[1] if (found and self.env.rank == source) else None]
        dist.broadcast_object_list(holder, src=source)
        if self.env.rank == source and found:
            log.info(
                "resuming from %s (step %d), broadcast by rank %d",
                self.store.directory / found[0].file,
                best,
                source,
            )
        state: dict[str, Any] = holder[0]
        return state
