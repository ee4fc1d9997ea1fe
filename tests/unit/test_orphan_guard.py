"""A guarded process whose parent is SIGKILLed says so and exits within seconds, through the kernel's
parent-death signal and through the watching thread alone; a death signal while the parent lives is
ignored. Real processes, no torch: an "agent" that starts a "worker" in a session of its own, as torchrun
does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ddp.orphan_guard import guard_under_torchrun
from tests.process_waits import gone, wait_until

ROOT = Path(__file__).resolve().parents[2]

WORKER = """
import os, signal, sys, time
from pathlib import Path
from ddp.orphan_guard import OrphanGuard, death_signal

out, mode = Path(sys.argv[1]), sys.argv[2]
# "thread": the watching thread alone, polling fast; otherwise the kernel's signal alone can be in time.
guard = OrphanGuard(os.getppid(), poll_s=0.1 if mode == "thread" else 3600)
guard.add_last_words(lambda reason: (out / "last_words").write_text(reason))
guard.start(kernel_signal=mode != "thread")
# Written whole, then renamed: the test polls for the file and must never read it half-written.
(out / "ready.tmp").write_text(f"{os.getpid()} {guard.kernel_signals}")
os.replace(out / "ready.tmp", out / "ready")
if mode == "spurious":
    os.kill(os.getpid(), death_signal())  # what the kernel sends when the parent *thread* ends
    time.sleep(0.5)
    (out / "survived").write_text("yes")
while True:
    time.sleep(1)
"""

AGENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], start_new_session=True)
time.sleep(3600)
"""


@pytest.fixture
def family(tmp_path: Path) -> Iterator[Callable[[str], tuple[subprocess.Popen[bytes], int, str]]]:
    """Starts agent + worker in `mode`; returns the agent, the worker's pid and what the worker reported.
    Whatever is left of them is killed afterwards."""
    started: list[int] = []

    def start(mode: str) -> tuple[subprocess.Popen[bytes], int, str]:
        agent = subprocess.Popen(
            [sys.executable, "-c", AGENT, WORKER, str(tmp_path), mode],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        started.append(agent.pid)
        ready = tmp_path / "ready"
        wait_until(ready.exists, 30, "the worker started its guard")
        pid, kernel_signals = ready.read_text().split()
        started.append(int(pid))
        return agent, int(pid), kernel_signals

    yield start
    for pid in started:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", ["kernel", "thread"])
def test_worker_of_a_killed_agent_says_why_and_exits(
    tmp_path: Path, family: Callable[[str], tuple[subprocess.Popen[bytes], int, str]], mode: str
) -> None:
    agent, worker, kernel_signals = family(mode)
    if mode == "kernel":
        assert kernel_signals == str(sys.platform.startswith("linux"))
        if kernel_signals != "True":
            pytest.skip("PR_SET_PDEATHSIG is Linux only")
    os.kill(agent.pid, signal.SIGKILL)
    agent.wait(timeout=10)
    wait_until(lambda: gone(worker), 10, f"the orphaned worker (pid {worker}) exited")
    last_words = (tmp_path / "last_words").read_text()
    assert last_words.startswith(f"the torchrun agent (pid {agent.pid}) is gone")


def test_a_death_signal_while_the_parent_lives_is_ignored(
    tmp_path: Path, family: Callable[[str], tuple[subprocess.Popen[bytes], int, str]]
) -> None:
    agent, worker, _ = family("spurious")
    wait_until((tmp_path / "survived").exists, 10, "the worker outlived a spurious death signal")
    assert not gone(worker) and agent.poll() is None
    assert not (tmp_path / "last_words").exists()


def test_no_guard_for_a_process_started_on_its_own() -> None:
    # Its parent is a shell or a test runner, which may come and go; torchrun marks its workers.
    assert guard_under_torchrun(environ={}) is None
