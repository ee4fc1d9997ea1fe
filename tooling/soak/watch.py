"""The watcher: sample the job every interval until the planned end, persisting after every sample.

The clock and the job probe are injected, so the loop runs under a fake clock in tests and against a local
torchrun or a cluster over SSH in real use.

When the planned end finds the worker group restarting, the watcher does not hand a half-restarted job to
the final stop (the STOP file would race the new workers' start and the final checkpoint would be the one
resumed from): it keeps looking, one interval apart and marked after the end, until the job is up again,
ends, or a grace runs out (one interval plus the time this job took from launch to every rank
reporting). tooling/soak/uptime.py keeps those looks out of the uptime window.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal, Protocol

from tooling.console import console
from tooling.soak.samples import Sample, sample_from_statuses
from tooling.soak.state import SoakState
from tooling.soak.uptime import judge_intervals, max_gap_s, restart_in_progress

Outcome = Literal["completed", "ended-early", "interrupted"]


@dataclass
class Observation:
    statuses: list[dict[str, Any]]
    unreachable: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # launcher lines since the previous observation


class Probe(Protocol):
    def observe(self) -> Observation:
        """Every rank's status now, and the launcher's lines about failed workers since the last call."""
        ...

    def ended(self, observation: Observation) -> str | None:
        """Why the job is no longer running (it will not make progress again), or None."""
        ...

    def position(self) -> dict[str, Any]:
        """Where the probe has read up to; saved with every sample so a resumed soak does not re-read."""
        ...


class Clock(Protocol):
    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class StopRequest:
    """Set by SIGINT/SIGTERM; wakes the real clock's sleep so the watcher ends without waiting out the
    interval. A second Ctrl-C while it is finishing raises KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None

    def __call__(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        self.event.set()

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class RealClock:
    def __init__(self, stop: StopRequest | None = None) -> None:
        self.stop = stop

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.stop is not None:
            self.stop.event.wait(seconds)
        else:
            time.sleep(seconds)


def _never() -> bool:
    return False


class Watcher:
    def __init__(
        self,
        state: SoakState,
        probe: Probe,
        clock: Clock,
        persist: Callable[[SoakState], object],
        stop_requested: Callable[[], bool] = _never,
        on_sample: Callable[[Sample], object] | None = None,
    ) -> None:
        self.state = state
        self.probe = probe
        self.clock = clock
        self.persist = persist
        self.stop_requested = stop_requested
        self.on_sample = on_sample

    def _take(self, carried: list[str] | None = None, after_end: bool = False) -> tuple[Sample, Observation]:
        t = self.clock.time()
        obs = self.probe.observe()
        events = [*(carried or []), *obs.events]
        sample = sample_from_statuses(t, obs.statuses, obs.unreachable, events, after_end=after_end)
        return sample, obs

    def _keep(self, sample: Sample) -> None:
        self.state.samples.append(sample)
        self.state.job["position"] = self.probe.position()
        self.persist(self.state)
        if self.on_sample is not None:
            self.on_sample(sample)

    def wait_for_ranks(self, timeout_s: float, poll_s: float = 2.0) -> str | None:
        """Poll until every expected rank reports running; that observation is the first sample and starts
        the clock of the soak. Returns None when started, else why not (ended, timed out, interrupted)."""
        deadline = self.clock.time() + timeout_s
        carried: list[str] = []
        while True:
            if self.stop_requested():
                return "interrupted while waiting for the ranks"
            sample, obs = self._take(carried)
            carried = list(sample.events)
            running = [r for r in sample.ranks.values() if r.state == "running"]
            if not sample.missing(self.state.world_size) and len(running) >= self.state.world_size:
                self.state.watch_start = sample.t
                self.state.end_at = sample.t + self.state.duration_s
                self.state.status = "watching"
                self._keep(sample)
                return None
            reason = self.probe.ended(obs)
            if reason is not None:
                return f"the job ended before every rank reported: {reason}"
            now = self.clock.time()
            if now >= deadline:
                return (
                    f"only {len(running)} of {self.state.world_size} ranks were running after "
                    f"{timeout_s:.0f} s"
                )
            self.clock.sleep(min(poll_s, self.state.interval_s, deadline - now))

    def _next_time(self) -> float:
        """Samples sit on a fixed grid from the first one (no drift over a day), the last at the end."""
        assert self.state.watch_start is not None and self.state.end_at is not None
        start, interval = self.state.watch_start, self.state.interval_s
        k = math.floor((self.state.samples[-1].t - start) / interval + 1e-9) + 1
        return min(start + k * interval, self.state.end_at)

    def watch(self) -> Outcome:
        """Sample until the planned end (completed), the job ending by itself (ended-early) or a stop
        request (interrupted). State is persisted after every sample."""
        assert self.state.end_at is not None and self.state.samples
        while True:
            if self.stop_requested():
                return "interrupted"
            if self.state.samples[-1].t >= self.state.end_at:
                return self._let_restart_finish()
            if self.clock.time() >= self.state.end_at + self.state.interval_s:
                # Resumed long after the planned end: a sample now would judge time outside the window.
                return "completed"
            self.clock.sleep(self._next_time() - self.clock.time())
            if self.stop_requested():
                return "interrupted"
            sample, obs = self._take()
            self._keep(sample)
            reason = self.probe.ended(obs)
            if reason is not None:
                self.state.ended = {"at": sample.t, "reason": reason}
                self.persist(self.state)
                return "ended-early"

    def grace_s(self) -> float:
        """How long the planned end waits for a restarting group: one interval, plus the job's start-up as
        this soak saw it (launch to every rank reporting: import, rendezvous, first step; on a cluster it
        includes the deploy, so it is an upper bound there)."""
        state = self.state
        startup = (state.watch_start - state.started_at) if state.watch_start is not None else 0.0
        return state.interval_s + max(startup, state.interval_s)

    def _note(self, text: str) -> None:
        self.state.notes.append(text)
        self.persist(self.state)
        console.print(f"soak {self.state.id}: {text}", style="yellow")

    def _let_restart_finish(self) -> Outcome:
        """At the planned end: when the group is restarting, look again every interval until it is up,
        the job ends, or the grace runs out; then the soak is complete either way."""
        state = self.state
        assert state.end_at is not None
        max_gap = max_gap_s(state.interval_s)
        why = restart_in_progress(state.samples, state.world_size, max_gap)
        if why is None:
            return "completed"
        grace = self.grace_s()
        start = self.clock.time()
        self._note(
            f"the planned end came while the worker group was restarting ({why}): waiting up to "
            f"{grace:.0f} s for it to come back before the final stop (down time past the end, outside "
            "the uptime window)"
        )
        while True:
            left = start + grace - self.clock.time()
            if left <= 0:
                self._note(f"the worker group was not back {grace:.0f} s after the planned end ({why})")
                return "completed"
            self.clock.sleep(min(state.interval_s, left))
            if self.stop_requested():
                return "interrupted"
            sample, obs = self._take(after_end=True)
            self._keep(sample)
            reason = self.probe.ended(obs)
            if reason is not None:
                self._note(f"the job ended while the soak waited for its restart: {reason}")
                return "completed"
            why = restart_in_progress(state.samples, state.world_size, max_gap)
            if why is None:
                after = f"{sample.t - state.end_at:.0f} s after the planned end"
                if judge_intervals(state.samples, state.world_size, None, max_gap)[-1].kind == "up":
                    step = sample.global_step(state.world_size)
                    self._note(f"the worker group was back {after}, at step {step}")
                else:
                    self._note(f"the worker group had restarted {after} but was not making progress")
                return "completed"
