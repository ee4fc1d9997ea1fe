"""Uptime, incidents, restarts and throughput from a soak's samples: pure functions, no I/O.

Definition of uptime
--------------------
Samples are taken at t0 < t1 < ... < tn. t0 is the first moment every expected rank had reported (the
job's start-up before it is not judged: it is the launch, not the job's stability). The last sample is
taken at the soak's planned end time, so the last interval is shorter than the others when the duration
is not a multiple of the sampling interval.

Each interval (t[i-1], t[i]] is judged by the sample at its end:

* **up** when every expected rank has a status that is not "failed" (and its node answered), the job's
  global step (the lowest step over all ranks) is higher than any global step seen at an earlier sample,
  and the worker group did not restart.
  Comparing against the highest step seen before, not just the previous sample, means work redone after
  a restart from a checkpoint is not counted as progress.
* **down** otherwise: a rank is missing or failed, a node did not answer, the step stalled or went back,
  or the worker group restarted during the interval (torchrun's restart count rose). A restart is down
  for the whole interval even when the step has passed its old high by the interval's end: the job was
  down for part of it and the samples cannot say for how long, so the error is on the safe side.
* **unobserved** (a gap) when it is longer than ``max_gap_s`` (twice the sampling interval): the soak
  itself was not running (killed, then resumed). Gaps count neither way; the record reports them as
  coverage.

uptime = up seconds / (up seconds + down seconds), each interval weighted by its length, so a partial last
interval counts for the time it covers. When the job ends before the planned end, the time from the last
sample to the planned end is down (the job was meant to be running). A stall shorter than an interval that
neither restarts nor stops the step from advancing is below this resolution.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tooling.soak.causes import explain, is_relevant
from tooling.soak.samples import Sample

Kind = Literal["up", "down", "gap"]
MAX_REASONS = 8


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    kind: Kind
    reasons: tuple[str, ...] = ()
    step: int | None = None  # global step at the end of the interval
    rate: float | None = None  # samples/s, only for intervals that trained within one incarnation

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Incident:
    """Consecutive down intervals: when the job stopped making progress, for how long, and why."""

    start: float
    end: float
    intervals: int
    reasons: list[str] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)  # causes of restarts that fell in or ended it
    more_reasons: int = 0  # distinct reasons past MAX_REASONS (a long outage repeats itself)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds}


@dataclass
class Restart:
    """The worker group restarted (torchrun's restart count rose) between two samples."""

    after: float  # the last sample before it
    detected_at: float  # the first sample that showed it
    count_before: int
    count_after: int
    causes: list[str]
    step_before: int | None  # highest global step reached before the restart
    step_after: int | None  # lowest step the restarted ranks reported at the sample that showed it
    resumed_from_step: int | None = None  # the checkpoint it resumed from (the run summary's incarnations)

    @property
    def lost_steps(self) -> int | None:
        """Steps trained twice: from the checkpoint resumed from to the highest step reached before."""
        if self.step_before is None or self.resumed_from_step is None:
            return None
        return max(0, self.step_before - self.resumed_from_step)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "count": self.count_after - self.count_before, "lost_steps": self.lost_steps}


def _names(ranks: list[int]) -> str:
    return ", ".join(str(r) for r in ranks)


def judge_intervals(
    samples: list[Sample], expected: int, samples_per_step: int | None, max_gap_s: float
) -> list[Interval]:
    intervals: list[Interval] = []
    high: int | None = None  # highest global step seen at any earlier sample
    for prev, cur in itertools.pairwise(samples):
        prev_step = prev.global_step(expected)
        if prev_step is not None:
            high = prev_step if high is None else max(high, prev_step)
        step = cur.global_step(expected)
        if cur.t - prev.t > max_gap_s:
            intervals.append(
                Interval(prev.t, cur.t, "gap", (f"not watched for {cur.t - prev.t:.0f} s",), step)
            )
            continue
        reasons: list[str] = [f"node {node} did not answer: {why}" for node, why in cur.unreachable.items()]
        missing = cur.missing(expected)
        failed = [r for r in missing if r in cur.ranks]
        absent = [r for r in missing if r not in cur.ranks]
        if absent:
            reasons.append(f"no status from rank(s) {_names(absent)}")
        if failed:
            reasons.append(f"rank(s) {_names(failed)} failed")
        restarted = cur.restart_count() > prev.restart_count()
        if restarted:
            reasons.append(f"worker group restarted ({prev.restart_count()} -> {cur.restart_count()})")
        reasons.extend(explain(list(cur.events), [prev]))
        advanced = step is not None and high is not None and step > high
        if step is not None and not advanced:
            if high is None:
                reasons.append("no earlier step to compare with")
            elif step < high:
                reasons.append(f"step back at {step} after reaching {high} (resumed from a checkpoint)")
            else:
                stalled = [
                    r for r in range(expected) if r in prev.ranks and cur.ranks[r].step <= prev.ranks[r].step
                ]
                who = f"; rank(s) {_names(stalled)} did not move" if stalled else ""
                reasons.append(f"step did not advance past {high}{who}")
        rate = None
        if (
            advanced
            and not restarted
            and samples_per_step
            and prev_step is not None
            and step is not None
            and cur.t > prev.t
        ):
            rate = (step - prev_step) * samples_per_step / (cur.t - prev.t)
        kind: Kind = "up" if advanced and not restarted else "down"
        intervals.append(Interval(prev.t, cur.t, kind, tuple(reasons) if kind == "down" else (), step, rate))
    return intervals


def incidents(intervals: list[Interval]) -> list[Incident]:
    """Maximal runs of consecutive down intervals; an unobserved gap ends a run (nothing is known there)."""
    found: list[Incident] = []
    current: Incident | None = None
    for interval in intervals:
        if interval.kind != "down":
            current = None
            continue
        if current is None:
            current = Incident(interval.start, interval.end, 0)
            found.append(current)
        current.end = interval.end
        current.intervals += 1
        for reason in interval.reasons:
            if reason in current.reasons:
                continue
            if len(current.reasons) < MAX_REASONS:
                current.reasons.append(reason)
            else:
                current.more_reasons += 1
    return found


def restarts(samples: list[Sample], expected: int) -> tuple[list[Restart], list[str]]:
    """Each rise of the restart count, with causes from the launcher lines read since the previous one;
    and the failures logged after the last restart that no restart followed (the job gave up, or the
    failure was during the final stop)."""
    found: list[Restart] = []
    pending: list[str] = []
    high: int | None = None
    incarnation_start = 0  # index of the first sample since the previous restart
    for i, sample in enumerate(samples):
        pending.extend(line for line in sample.events if is_relevant(line))
        if i > 0 and sample.restart_count() > samples[i - 1].restart_count():
            prev = samples[i - 1]
            new_count = sample.restart_count()
            restarted = [r.step for r in sample.ranks.values() if r.restart_count == new_count]
            # The failed incarnation's statuses (their pids) say which rank the launcher's pid was.
            causes = explain(pending, samples[incarnation_start:i]) or [
                "the launcher logged no failed worker (the restart's cause is in the nodes' logs)"
            ]
            found.append(
                Restart(
                    after=prev.t,
                    detected_at=sample.t,
                    count_before=prev.restart_count(),
                    count_after=new_count,
                    causes=causes,
                    step_before=high,
                    step_after=min(restarted) if restarted else None,
                )
            )
            pending = []
            incarnation_start = i
        step = sample.global_step(expected)
        if step is not None:
            high = step if high is None else max(high, step)
    return found, explain(pending, samples[incarnation_start:])


def resumed_from(incarnations: list[dict[str, Any]], restart_count: int) -> int | None:
    """The checkpoint step the incarnation with this restart count resumed from (ddp/summary.py)."""
    for incarnation in incarnations:
        if incarnation.get("restart_count") == restart_count:
            step = incarnation.get("resumed_from_step")
            return int(step) if isinstance(step, int) else None
    return None


def throughput(intervals: list[Interval]) -> dict[str, Any]:
    rates = [i.rate for i in intervals if i.rate is not None]
    mean = statistics.fmean(rates) if rates else None
    sigma = statistics.pstdev(rates) if len(rates) >= 2 else None
    return {
        "unit": "samples/s",
        "intervals": len(rates),
        "mean": mean,
        "stddev": sigma,
        "cv": sigma / mean if sigma is not None and mean else None,
        "min": min(rates) if rates else None,
        "max": max(rates) if rates else None,
        "series": [[i.end, i.rate] for i in intervals if i.rate is not None],
    }


@dataclass
class Analysis:
    intervals: list[Interval]
    incidents: list[Incident]
    restarts: list[Restart]
    unrestarted_failures: list[str]
    throughput: dict[str, Any]
    up_seconds: float
    down_seconds: float
    unobserved_seconds: float

    @property
    def uptime_ratio(self) -> float | None:
        judged = self.up_seconds + self.down_seconds
        return self.up_seconds / judged if judged > 0 else None

    @property
    def coverage_ratio(self) -> float | None:
        total = self.up_seconds + self.down_seconds + self.unobserved_seconds
        return (self.up_seconds + self.down_seconds) / total if total > 0 else None


def analyse(
    samples: list[Sample],
    expected: int,
    samples_per_step: int | None,
    interval_s: float,
    *,
    planned_end: float | None = None,
    ended: tuple[float, str] | None = None,
    incarnations: list[dict[str, Any]] | None = None,
) -> Analysis:
    """Everything the record says about the soak. `ended` (time, why) marks a job that ended before
    `planned_end`: the rest of the window is down. Without it, time left between the last sample and
    `planned_end` (a soak resumed too late to sample again) is unobserved."""
    intervals = judge_intervals(samples, expected, samples_per_step, max_gap_s=2 * interval_s)
    if samples and planned_end is not None and planned_end > samples[-1].t:
        last = samples[-1].t
        if ended is not None:
            intervals.append(Interval(last, planned_end, "down", (f"job ended: {ended[1]}",)))
        else:
            intervals.append(Interval(last, planned_end, "gap", ("not watched until the planned end",)))
    seconds = {kind: sum(i.seconds for i in intervals if i.kind == kind) for kind in ("up", "down", "gap")}
    found, leftover = restarts(samples, expected)
    for restart in found:
        restart.resumed_from_step = resumed_from(incarnations or [], restart.count_after)
    down = incidents(intervals)
    for incident in down:
        for restart in found:
            # The restart happened between two samples; it belongs to an incident that window touches.
            if restart.after <= incident.end and restart.detected_at >= incident.start:
                incident.restarts.extend(c for c in restart.causes if c not in incident.restarts)
    return Analysis(
        intervals=intervals,
        incidents=down,
        restarts=found,
        unrestarted_failures=leftover,
        throughput=throughput(intervals),
        up_seconds=seconds["up"],
        down_seconds=seconds["down"],
        unobserved_seconds=seconds["gap"],
    )
