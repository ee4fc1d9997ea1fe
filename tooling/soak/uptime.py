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

Restarts
--------
A restart is counted from what the soak saw, then from what the job itself knows once it has stopped:

* a rise of torchrun's restart count between two looks (the highest count any rank reports), with its
  causes from the launcher's "failed (exitcode ...)" lines read since the previous restart;
* an incarnation in the run summary (ddp/summary.py) whose restart count is above every count the looks
  showed: the group restarted, but its new workers had not written a status by the last look (a restart
  still under way when the soak stopped it, or one during the final stop). The launcher's failure lines no
  restart had explained, including those read once the job had stopped, are its causes. On several nodes
  rank 0's own count can stay put through a restart another node caused; a restart of that kind after the
  last look stays a failure without restart.

When the planned end comes while the group is restarting (a failed worker logged and no new group yet, or
a new group still redoing steps below its old high), the soak does not stop it mid-restart: it keeps
looking, one interval apart, until the job is up again (every rank reports and the step passes the old
high), the job ends, or a bound runs out (one interval plus the time the job took to start). Those looks
are marked after the end: they count restarts, but the uptime window stays the planned one. The time the
incident lasted past the planned end is kept as the incident's ``after_end_s`` and counts as time lost.
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
NO_FAILURE_LOGGED = "the launcher logged no failed worker (the restart's cause is in the nodes' logs)"


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
    after_end_s: float = 0.0  # how long it lasted past the planned end (outside the uptime window)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds}


@dataclass
class Restart:
    """The worker group restarted (torchrun's restart count rose) between two samples, or after the last
    one (seen only in the run summary's incarnations)."""

    after: float  # the last sample before it
    detected_at: float  # the first sample that showed it; the new incarnation's start for the summary's
    count_before: int
    count_after: int
    causes: list[str]
    step_before: int | None  # highest global step reached before the restart
    step_after: int | None  # lowest step the restarted ranks reported at the sample that showed it
    resumed_from_step: int | None = None  # the checkpoint it resumed from (the run summary's incarnations)
    seen_in: Literal["samples", "run summary"] = "samples"

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


def max_gap_s(interval_s: float) -> float:
    """The longest time between two looks that still counts as watched: two intervals (one look late).
    The soak's record and the watcher's wait at the planned end judge the looks with the same bound."""
    return 2 * interval_s


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
            causes = explain(pending, samples[incarnation_start:i]) or [NO_FAILURE_LOGGED]
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


def _trailing_down(intervals: list[Interval]) -> int:
    """Index of the first interval of the down run the intervals end with (len(intervals) when none)."""
    first = len(intervals)
    while first > 0 and intervals[first - 1].kind == "down":
        first -= 1
    return first


def restart_in_progress(samples: list[Sample], expected: int, max_gap_s: float) -> str | None:
    """Why the last look shows the worker group in the middle of a restart, or None: a failed worker the
    launcher logged with no new group seen after it (while the job is down, or read at the last look);
    or, while the job is down, a restart since it went down whose step has not passed the old high yet, or
    ranks not reporting. A stall with every rank running is not a restart (a hang: waiting would not bring
    it back), nor is a failure from the launch that the first look already found restarted."""
    if not samples:
        return None
    intervals = judge_intervals(samples, expected, None, max_gap_s)
    first = _trailing_down(intervals)
    down = first < len(intervals)
    _, pending = restarts(samples, expected)
    # A failure read at the last look may be newer than the statuses that still show progress.
    if pending and (down or explain(list(samples[-1].events), samples)):
        return f"the launcher logged {'; '.join(pending)}; no restarted group has reported yet"
    if not down:
        return None
    # samples[first] is the look before the job went down; the open incident runs from there.
    before, last = samples[first], samples[-1]
    if last.restart_count() > before.restart_count():
        high = max((s for x in samples[: first + 1] if (s := x.global_step(expected)) is not None), default=0)
        step = last.global_step(expected)
        return (
            f"the worker group restarted ({before.restart_count()} -> {last.restart_count()}) and is at step "
            f"{step if step is not None else '-'}, not past {high} again"
        )
    missing = last.missing(expected)
    if missing:
        return f"rank(s) {_names(missing)} not reporting"
    return None


def summary_restarts(
    incarnations: list[dict[str, Any]],
    seen_count: int,
    after: float,
    step_before: int | None,
    causes: list[str],
) -> list[Restart]:
    """Restarts only the run summary knows: incarnations whose restart count is above `seen_count` (the
    highest the samples showed), each after the last sample `after`. `causes` (failures no sampled restart
    explained) go to the first of them."""
    found: list[Restart] = []
    count = seen_count
    later = [
        i for i in incarnations if isinstance(i.get("restart_count"), int) and i["restart_count"] > count
    ]
    for incarnation in sorted(later, key=lambda i: int(i["restart_count"])):
        started = incarnation.get("started_at")
        found.append(
            Restart(
                after=after,
                detected_at=float(started) if isinstance(started, int | float) and started > after else after,
                count_before=count,
                count_after=int(incarnation["restart_count"]),
                causes=(causes if not found else []) or [NO_FAILURE_LOGGED],
                step_before=step_before,
                step_after=None,
                resumed_from_step=resumed_from([incarnation], int(incarnation["restart_count"])),
                seen_in="run summary",
            )
        )
        count = int(incarnation["restart_count"])
    return found


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
    # The looks past the planned end while a restart finished: {looks, until, back_at, down_s}, or None.
    after_end: dict[str, Any] | None = None

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
    final_lines: list[str] | None = None,
) -> Analysis:
    """Everything the record says about the soak. `ended` (time, why) marks a job that ended before
    `planned_end`: the rest of the window is down. Without it, time left between the last sample and
    `planned_end` (a soak resumed too late to sample again) is unobserved. `incarnations` (the run
    summary's, read after the job stopped) give each restart its checkpoint and add the restarts that
    came after the last sample; `final_lines` (the launcher's, read after the stop) name their causes."""
    max_gap = max_gap_s(interval_s)
    window = [s for s in samples if not s.after_end]
    intervals = judge_intervals(window, expected, samples_per_step, max_gap)
    if window and planned_end is not None and planned_end > window[-1].t:
        last = window[-1].t
        if ended is not None:
            intervals.append(Interval(last, planned_end, "down", (f"job ended: {ended[1]}",)))
        else:
            intervals.append(Interval(last, planned_end, "gap", ("not watched until the planned end",)))
    seconds = {kind: sum(i.seconds for i in intervals if i.kind == kind) for kind in ("up", "down", "gap")}
    found, leftover = restarts(samples, expected)
    leftover += [c for c in explain(final_lines or [], samples) if c not in leftover]
    for restart in found:
        restart.resumed_from_step = resumed_from(incarnations or [], restart.count_after)
    if samples:
        steps = [s for x in samples if (s := x.global_step(expected)) is not None]
        seen = max(s.restart_count() for s in samples)
        missed = summary_restarts(incarnations or [], seen, samples[-1].t, max(steps, default=None), leftover)
        if missed:
            found.extend(missed)
            leftover = []  # the summary's restart followed them
    down = incidents(intervals)
    after_end = _after_end(samples, window, expected, max_gap, planned_end)
    if after_end is not None and down and intervals and down[-1].end == intervals[-1].end:
        down[-1].after_end_s = after_end["down_s"]  # the incident still open at the end went on past it
    for incident in down:
        for restart in found:
            # The restart happened between two samples; it belongs to an incident that window touches.
            if restart.after <= incident.end + incident.after_end_s and restart.detected_at >= incident.start:
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
        after_end=after_end,
    )


def _after_end(
    samples: list[Sample], window: list[Sample], expected: int, max_gap_s: float, planned_end: float | None
) -> dict[str, Any] | None:
    """The looks after the planned end: how long the job stayed down past it and when it was up again
    (the first look judged up), or None when there were none."""
    extra = len(samples) - len(window)
    if extra == 0 or not window:
        return None
    tail = judge_intervals(samples, expected, None, max_gap_s)[-extra:]
    back_at = next((i.end for i in tail if i.kind == "up"), None)
    end = planned_end if planned_end is not None else window[-1].t
    return {
        "looks": extra,
        "until": samples[-1].t,
        "back_at": back_at,
        "down_s": max(0.0, (back_at if back_at is not None else samples[-1].t) - end),
    }
