"""Requests to stop cleanly: SIGTERM/SIGINT or a STOP file in the run directory.

A request seen by one rank becomes a decision of all ranks at the next heartbeat (an all-reduce), so every
rank leaves the loop at the same step and the final checkpoint is collective.

The summary's `reason` for such a stop is `stop requested (<cause>)`, written and read here only: the gate
(tooling/gates/eligibility.py) tells the operator's planned stop (the STOP file, which `tooling stop` and a
soak's planned end write) from an interruption (a signal: Ctrl-C, a SIGTERM) by the cause alone. A rank
whose own request came later than another's still names the cause, which the heartbeat agrees on: on
several nodes the STOP files are written one node after another, and rank 0's may come last.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import Literal

StopCause = Literal["stop file", "signal"]
STOP_FILE: StopCause = "stop file"
SIGNAL: StopCause = "signal"
_PREFIX = "stop requested ("
_ANOTHER_RANK = " on another rank"


class StopRequests:
    def __init__(self, stop_file: Path) -> None:
        self.stop_file = stop_file
        self.reason: str | None = None
        self.by_signal = False

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.reason = f"{SIGNAL} {signal.Signals(signum).name}"
        self.by_signal = True

    def wait_for_signal(self, timeout_s: float) -> bool:
        """Whether a signal came (before or) within `timeout_s`; needs the handlers installed."""
        deadline = time.monotonic() + timeout_s
        while not self.by_signal and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.by_signal

    def requested(self) -> bool:
        if self.reason is None and self.stop_file.exists():
            self.reason = f"{STOP_FILE} {self.stop_file}"
        return self.reason is not None


def stop_reason(own: str | None, any_signal: bool) -> str:
    """The summary's reason for a stop the ranks agreed on: this rank's own request, else the cause the
    heartbeat agreed on (a signal on any rank, else a STOP file on one)."""
    cause = own or f"{SIGNAL if any_signal else STOP_FILE}{_ANOTHER_RANK}"
    return f"{_PREFIX}{cause})"


def stop_cause(reason: str | None) -> StopCause | None:
    """The cause a summary's stop reason names; None when it names none (not a stop request, or a trainer
    from before causes were agreed on, whose reason said only 'by another rank')."""
    if not reason or not reason.startswith(_PREFIX):
        return None
    inner = reason[len(_PREFIX) :]
    for cause in (STOP_FILE, SIGNAL):
        if inner.startswith(f"{cause} "):
            return cause
    return None
