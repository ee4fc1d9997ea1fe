"""bench/recovery_cluster.py's reading of a run: the unit's start from systemd's journal, the job's first step
after an instant from the ranks' ECS records (told apart by time, not restart label), the resumed step."""

from __future__ import annotations

from bench.recovery import StepEvent
from bench.recovery_cluster import job_first_step, progress_before_restart, resumed_after, unit_started

# `journalctl -u ddp-trainer -o short-unix` on a sandbox node (Debian 12, systemd 252): two launches.
JOURNAL = [
    "1796382939.836599 ddp-warm-node1 (p-launch)[5098]: ddp-trainer.service: ProtectHostname=yes is "
    "configured, but UTS namespace setup is prohibited (container manager?), ignoring namespace setup.",
    "1796382939.841855 ddp-warm-node1 systemd[1]: Started ddp-trainer.service - DDP trainer, phase 1 "
    "(1 node(s) x 4 processes, rendezvous 10.213.91.11:29400).",
    "1796383557.068403 ddp-warm-node1 systemd[1]: Started ddp-trainer.service - DDP trainer, phase 1 "
    "(1 node(s) x 4 processes, rendezvous 10.213.91.11:29400).",
    "1796383558.100000 ddp-warm-node1 systemd[1]: Started other.service - something else.",
]


def test_the_last_start_of_the_unit_is_taken() -> None:
    assert unit_started(JOURNAL) == 1796383557.068403
    assert unit_started(JOURNAL[:1]) is None


def ev(t: float, rank: int, event: str, step: int, restart: int = 0) -> StepEvent:
    return StepEvent(t, rank, restart, step, event)


def test_the_first_step_after_an_instant_waits_for_every_rank_and_skips_the_old_incarnation() -> None:
    events = [
        ev(10.0, 0, "start", 0), ev(10.5, 1, "start", 0),
        ev(11.0, 0, "heartbeat", 1), ev(11.2, 1, "heartbeat", 1),
        ev(12.0, 0, "heartbeat", 2), ev(12.1, 1, "heartbeat", 2),
        # rank 1 killed at 13.0; rank 0 still logs a step of the old incarnation before it notices
        ev(13.2, 0, "heartbeat", 3),
        # the restart: node labels disagree on the restart count, times do not
        ev(15.0, 1, "start", 2, restart=1), ev(15.4, 0, "start", 2, restart=0),
        ev(16.0, 1, "heartbeat", 3, restart=1), ev(16.3, 0, "heartbeat", 3, restart=0),
    ]  # fmt: skip
    assert job_first_step(events, 9.0, 2) == 11.2
    assert job_first_step(events, 13.0, 2) == 16.3
    assert resumed_after(events, 13.0) == 2
    assert job_first_step(events, 13.0, 3) is None  # a rank that never stepped again
    assert job_first_step(events[:9], 13.0, 2) is None  # started, no step yet


def test_the_steps_lost_count_from_what_the_job_had_done_when_it_restarted() -> None:
    """The killed rank's status file said step 58 in one repeat that resumed from 60 ("-2 steps lost"):
    the job's progress is read from every rank's heartbeats up to the restart instead."""
    events = [
        ev(10.0, 0, "start", 0), ev(10.0, 1, "start", 0),
        ev(11.0, 0, "heartbeat", 59), ev(11.0, 1, "heartbeat", 59),
        ev(12.0, 0, "heartbeat", 60),  # done just after the kill at 11.5, before the restart
        ev(15.0, 0, "start", 60, restart=1), ev(15.1, 1, "start", 60, restart=1),
        ev(16.0, 0, "heartbeat", 61, restart=1), ev(16.0, 1, "heartbeat", 61, restart=1),
    ]  # fmt: skip
    assert progress_before_restart(events, 11.5) == 60
    assert progress_before_restart(events, 11.5) - resumed_after(events, 11.5) == 0
    assert progress_before_restart(events[:2], 11.5) is None
