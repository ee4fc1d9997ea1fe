"""Where the job stands: cumulative counts and the data position, both checkpointed.

The trainer and its telemetry hold the same two objects, so a resume loads them in place rather than
replacing them: a replaced object would leave the telemetry reporting the counts of the previous start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Counters:
    """Job-wide cumulative counts; checkpointed so a resumed run keeps counting."""

    steps: int = 0
    nonfinite: int = 0
    skipped: int = 0
    sync_checks: int = 0
    sync_mismatches: int = 0
    checkpoints_saved: int = 0
    checkpoint_failures: int = 0

    def load(self, saved: dict[str, Any]) -> None:
        _load_in_place(self, saved)


@dataclass
class Position:
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed

    def load(self, saved: dict[str, Any]) -> None:
        _load_in_place(self, saved)


def _load_in_place(target: Counters | Position, saved: dict[str, Any]) -> None:
    # Built through the constructor first, so an unknown key in the checkpoint is still a TypeError
    # and a key an older checkpoint lacks still takes its default.
    vars(target).update(vars(type(target)(**saved)))
