"""Requests to stop cleanly: SIGTERM/SIGINT or a STOP file in the run directory.

A request seen by one rank becomes a decision of all ranks at the next heartbeat (an all-reduce), so every
rank leaves the loop at the same step and the final checkpoint is collective.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType


class StopRequests:
    def __init__(self, stop_file: Path) -> None:
        self.stop_file = stop_file
        self.reason: str | None = None

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.reason = f"signal {signal.Signals(signum).name}"

    def requested(self) -> bool:
        if self.reason is None and self.stop_file.exists():
            self.reason = f"stop file {self.stop_file}"
        return self.reason is not None
