"""The rank's own hang evidence: its Python stacks, written by faulthandler shortly before the collective
timeout would end a stuck rank, so a hang leaves stacks behind even where py-spy cannot attach.

Re-armed after every step (a step that finishes pushes the deadline back), cancelled on a clean end. The
stacks go to a plain-text file beside the rank's ndjson log: faulthandler writes raw text from its own
thread, which would break the log's one-JSON-object-per-line format that Filebeat parses.
"""

from __future__ import annotations

import faulthandler
import time
from pathlib import Path
from typing import TextIO

# Stacks this long before the collective timeout; a quarter of it for short timeouts.
MARGIN_S = 30.0
MIN_DELAY_S = 1.0
# faulthandler starts a new thread on every arming: a step re-arms it only this often (at most a quarter
# of the delay, so the stacks still come well before the timeout).
REARM_EVERY_S = 5.0


def dump_delay_s(timeout_s: float) -> float:
    """Seconds without a finished step after which the stacks are written: before `timeout_s` ends it."""
    return max(MIN_DELAY_S, timeout_s - min(MARGIN_S, timeout_s / 4))


def stacks_path(log_dir: Path, rank: int) -> Path:
    """Where rank `rank` writes its stacks; `tooling doctor` collects these files."""
    return log_dir / f"rank{rank}.stacks.txt"


class StackWatchdog:
    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.delay_s = dump_delay_s(timeout_s)
        self.rearm_every_s = min(REARM_EVERY_S, self.delay_s / 4)
        self._armed_at: float | None = None
        self._file: TextIO | None = None

    def arm(self) -> None:
        """(Re)start the countdown unless it was started moments ago; repeats while the rank stays stuck."""
        now = time.monotonic()
        if self._armed_at is not None and now - self._armed_at < self.rearm_every_s:
            return
        self._armed_at = now
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Appended: an earlier hang's stacks (before a restart) stay for the post-mortem.
            self._file = self.path.open("a", encoding="utf-8")
        faulthandler.dump_traceback_later(self.delay_s, repeat=True, file=self._file)

    def cancel(self) -> None:
        if self._file is None:
            return
        faulthandler.cancel_dump_traceback_later()
        self._file.close()
        self._file = None
        self._armed_at = None
