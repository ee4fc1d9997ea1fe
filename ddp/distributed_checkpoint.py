"""Checkpointing as a collective: who writes, and which rank's copy a resumed group starts from.

Writers are each node's local rank 0 (every_node) or global rank 0 (rank0). On resume every writer looks
for its newest valid checkpoint; the group takes the newest step any writer has, and that writer
broadcasts the state, so nodes that never held a copy (a fallback or replacement node) resume too.
What ranks tell each other travels as JSON or as a checkpoint read back with the weights-only loader
(ddp/plain_collectives.py): a peer's bytes are never unpickled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ddp import rng
from ddp.checkpoint import CheckpointEntry, CheckpointStore
from ddp.checkpoint_format import decode_state, encode_state
from ddp.dist import DistEnv
from ddp.plain_collectives import all_gather_json, broadcast_bytes

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
        """Collective. Gathers each rank's RNG state (and its JSON-able `rank_payload`), writers write.

        Returns this rank's outcome and every rank's payload (in rank order)."""
        gathered = all_gather_json({"rng": rng.capture(), "payload": rank_payload}, self.env.device)
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

    def start_fresh(self) -> None:
        """checkpoint.resume is false: this start begins a new run in the checkpoint directory.

        Checkpoints already there (a reused run id, or an earlier incarnation of this job) are moved
        into a subdirectory rather than refused or deleted: refusing would fail every torchrun restart
        of such a job (each finds its previous incarnation's checkpoints), deleting would lose another
        run's work to a mistyped run id. Left listed, a later resume would take them for this run's.
        """
        if not self.is_writer:
            return
        try:
            moved = self.store.set_aside()
        except OSError as exc:
            log.error(
                "checkpoint.resume is false but the checkpoints in %s cannot be moved aside (%s): a later "
                "resume could still find them until this run's first checkpoint supersedes them",
                self.store.directory,
                exc,
            )
            return
        if moved is not None:
            log.warning(
                "checkpoint.resume is false: moved the checkpoints of %s (steps %s) from %s to %s; this "
                "run starts a new manifest (delete that directory once it is not needed)",
                f"run {moved.run!r}" if moved.run else "an earlier run",
                moved.steps or "none listed",
                self.store.directory,
                moved.directory,
            )

    def resume(self) -> dict[str, Any] | None:
        """Collective. The newest valid state any writer holds, on every rank; None for a fresh start."""
        found = self.store.load_newest() if self.is_writer else None
        steps = [int(s) for s in all_gather_json(found[0].step if found else -1, self.env.device)]
        best = max(steps)
        if best < 0:
            return None
        source = steps.index(best)
        mine = found[1] if found is not None and self.env.rank == source else None
        data = broadcast_bytes(None if mine is None else encode_state(mine), source, self.env.device)
        if mine is not None and found is not None:
            log.info(
                "resuming from %s (step %d), broadcast by rank %d",
                self.store.directory / found[0].file,
                best,
                source,
            )
            return mine
        return decode_state(data, f"the checkpoint of step {best} broadcast by rank {source}")
