"""The trainer's stack watchdog: a rank stuck in a collective past the deadline writes its stacks; one that
keeps stepping (re-arming) or ends cleanly writes nothing."""

from __future__ import annotations

import time
from pathlib import Path

import torch.distributed as dist

from ddp.stack_watchdog import MIN_DELAY_S, StackWatchdog, dump_delay_s, stacks_path
from tests.unit.gloo_ranks import run_ranks
from tooling.doctor.stacks import collective

# A 1 s collective timeout dumps after MIN_DELAY_S; the peer stays away well past it.
TIMEOUT_S = 1.0
PEER_AWAY_S = 3 * MIN_DELAY_S + 1


def test_the_stacks_come_before_the_collective_timeout() -> None:
    assert dump_delay_s(300) == 270
    assert dump_delay_s(20) == 15
    assert dump_delay_s(1) == MIN_DELAY_S
    for timeout in (2, 20, 300, 3600):
        assert dump_delay_s(timeout) < timeout


def _stuck_in_barrier(rank: int, tmp: Path) -> str:
    path = stacks_path(tmp / "logs", rank)
    watchdog = StackWatchdog(path, TIMEOUT_S)
    watchdog.arm()
    if rank == 0:
        time.sleep(PEER_AWAY_S)  # the peer that keeps rank 1 waiting
    dist.barrier()
    watchdog.cancel()
    return path.read_text() if path.exists() else ""


def test_a_rank_stuck_in_a_collective_past_the_deadline_writes_its_stack(tmp_path: Path) -> None:
    stacks = run_ranks(_stuck_in_barrier, tmp_path)
    assert "_stuck_in_barrier" in stacks[1]
    assert collective(stacks[1]) == "barrier"


def test_re_armed_in_time_or_cancelled_it_writes_nothing(tmp_path: Path) -> None:
    path = stacks_path(tmp_path, 0)
    watchdog = StackWatchdog(path, TIMEOUT_S)
    for _ in range(8):  # steps quicker than the deadline
        watchdog.arm()
        time.sleep(MIN_DELAY_S / 4)
    watchdog.cancel()
    time.sleep(MIN_DELAY_S * 1.5)
    assert path.read_text() == ""
