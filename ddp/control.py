"""Requests to stop cleanly: SIGTERM/SIGINT or a STOP file in the run directory.

A request seen by one rank becomes a decision of all ranks at the next heartbeat (an all-reduce, read a step
after it begins), so every rank leaves the loop at the same step and the final checkpoint is collective.

The summary's `reason` for such a stop is `stop requested (<cause>)`, written and read here only: the gate
(tooling/gates/eligibility.py) tells the operator's planned stop (the STOP file, which `tooling stop` and a
soak's planned end write) from an interruption (a signal: Ctrl-C, a SIGTERM) by the cause alone. A rank
whose own request came later than another's still names the cause, which the heartbeat agrees on: on
several nodes the STOP files are written one node after another, and rank 0's may come last.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Literal

StopCause = Literal["stop file", "signal"]
STOP_FILE: StopCause = "stop file"
SIGNAL: StopCause = "signal"
_PREFIX = "stop requested ("
_ANOTHER_RANK = " on another rank"

# The interval at which torchrun's agent polls its workers, as the launch set it (tooling/phases.yml's
# rendezvous.monitor_interval_s, written into the node's trainer.env; tooling.job.torchrun locally).
AGENT_MONITOR_ENV = "DDP_AGENT_MONITOR_INTERVAL_S"
TORCHRUN_DEFAULT_MONITOR_S = 0.1  # torch.distributed.run's own default for --monitor-interval
# Measured on the sandbox at a 1 s monitor interval: 5 s was always enough for the agent to see the
# killed rank first and signal the others.
_MIN_PEER_FAILURE_HOLD_S = 5.0


def peer_failure_hold_s(environ: Mapping[str, str] | None = None) -> float:
    """How long a failing rank of a multi-rank job waits for its agent's SIGTERM before failing itself.

    torchrun's agent polls its workers every monitor interval and names the earliest failure, by
    whole-second timestamps with the lowest local rank first on a tie. A rank whose collective broke
    because a peer was killed raises within milliseconds, so its agent would name that bystander instead of
    the peer. The agent needs up to one interval to see the killed rank, and a poll that overruns can take
    another: the hold grows with the interval a site chose (the agent's SIGTERM ends it early anyway)."""
    env = os.environ if environ is None else environ
    try:
        interval = float(env.get(AGENT_MONITOR_ENV, TORCHRUN_DEFAULT_MONITOR_S))
    except ValueError:
        interval = TORCHRUN_DEFAULT_MONITOR_S  # a malformed value must not break the failure path
    return _MIN_PEER_FAILURE_HOLD_S + 2 * max(interval, 0.0)


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
