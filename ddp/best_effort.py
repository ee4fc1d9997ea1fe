"""Writes that report on training and must never stop it: status files, the summary, log lines.

A full or read-only disk (ENOSPC, EDQUOT, EROFS, ...) used to kill rank 0 on its next status write, and
torchrun restarted it into the same failure. Now each refused write is counted
(`trainer_write_errors_total{target=...}`) and logged once per spell of failures; training goes on, and
checkpoints keep their own failure accounting (ddp/distributed_checkpoint.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("ddp.trainer")
T = TypeVar("T")


class BestEffortWrites:
    def __init__(self, count: Callable[[str], None]) -> None:
        self._count = count
        self._failing: dict[str, int] = {}  # target -> writes refused since its last good one

    def attempt(self, target: str, path: Path, write: Callable[[], T]) -> T | None:
        """`write()`'s result, or None when the disk refused it (counted and logged, not raised)."""
        try:
            result = write()
        except OSError as exc:
            self._count(target)
            refused = self._failing.get(target, 0) + 1
            self._failing[target] = refused
            if refused == 1:
                log.error(
                    "cannot write the %s file %s: %s; training goes on (refused writes are counted in "
                    "trainer_write_errors_total)",
                    target,
                    path,
                    exc.strerror or exc,
                    extra={"trainer": {"event": "write_error", "target": target, "errno": exc.errno}},
                )
            return None
        refused = self._failing.pop(target, 0)
        if refused:
            log.warning("the %s file %s is written again after %d refused writes", target, path, refused)
        return result
