"""A worker must not outlive its torchrun agent.

torchrun starts each worker in a session of its own, so when the agent dies without stopping them (SIGKILL,
the OOM killer) nothing else does: the orphans keep training and keep their metrics ports, and the
relaunch fails with "Address already in use". A guarded worker notices that its parent is gone (at once
through PR_SET_PDEATHSIG on Linux; within `poll_s` through a thread watching getppid(), which works
everywhere and also when the main thread is inside a long C call), says so (best effort, bounded by
`last_words_s`) and exits.

The guard compares against the parent it finds when it starts: a parent lost before that (while the
trainer imports torch) goes unnoticed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType

EXIT_ORPHANED = 4
# Set by the warm pool in a rank it forks: "<descriptor>:<launcher pid>" (ddp/warm_pool.py).
LIFELINE_ENV = "DDP_WARM_LIFELINE"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

LastWords = Callable[[str], None]


def death_signal() -> int | None:
    """The signal the kernel sends at the parent's death: a real-time one, which nothing else here uses.
    Not SIGTERM/SIGINT (a clean stop to the trainer, ddp/control.py) nor SIGUSR1/2 (torchrun can forward
    them from a scheduler)."""
    rtmin = getattr(signal, "SIGRTMIN", None)
    return None if rtmin is None else int(rtmin) + 2


def _ask_kernel(wake: threading.Event) -> bool:
    """PR_SET_PDEATHSIG: have the kernel signal this process when its parent dies; the handler only wakes
    the watching thread, which confirms with getppid() (the signal also comes when the parent *thread* that
    started this process ends). Linux only, and only from the main thread, where handlers are set."""
    signum = death_signal()
    if (
        signum is None
        or not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        wake.set()

    # The handler first: a signal arriving before it would end the process with no last words.
    previous = signal.signal(signum, on_signal)
    if prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        signal.signal(signum, previous)
        return False
    return True


class OrphanGuard:
    def __init__(self, parent_pid: int, poll_s: float = 0.5, last_words_s: float = 2.0) -> None:
        self.parent_pid = parent_pid
        self.poll_s = poll_s
        self.last_words_s = last_words_s
        self.kernel_signals = False  # whether PR_SET_PDEATHSIG is in place (else the thread alone watches)
        self._last_words: list[LastWords] = []
        self._wake = threading.Event()

    def orphaned(self) -> bool:
        # An orphan is adopted by init or a subreaper: its parent pid changes and never comes back.
        return os.getppid() != self.parent_pid

    def add_last_words(self, say: LastWords) -> None:
        """`say(reason)` runs once the parent is gone, before the exit; all of them get `last_words_s`."""
        self._last_words.append(say)

    def start(self, kernel_signal: bool = True) -> OrphanGuard:
        """Watch from now on; `kernel_signal=False` leaves the watching thread alone (the portable way)."""
        self.kernel_signals = kernel_signal and _ask_kernel(self._wake)
        threading.Thread(target=self._watch, name="orphan-guard", daemon=True).start()
        return self

    def _watch(self) -> None:
        while not self.orphaned():
            self._wake.wait(self.poll_s)
            self._wake.clear()
        self._leave()

    def lost(self) -> str:
        """What is gone, for the last words."""
        return f"the torchrun agent (pid {self.parent_pid})"

    def _leave(self) -> None:
        reason = f"{self.lost()} is gone; this worker stops so that a relaunch finds its ports free"
        # In a thread of their own: a write stuck on a dead file system must not keep the orphan alive.
        speaker = threading.Thread(target=self._say, args=(reason,), name="orphan-last-words", daemon=True)
        speaker.start()
        speaker.join(self.last_words_s)
        # Not sys.exit: the main thread may be blocked in a collective that will never complete. The
        # kernel closes the metrics sockets with the process.
        os._exit(EXIT_ORPHANED)

    def _say(self, reason: str) -> None:
        for say in self._last_words:
            with contextlib.suppress(Exception):  # best effort: the exit follows whatever they raise
                say(reason)
        with contextlib.suppress(OSError, ValueError):  # stderr may be a pipe the agent held
            print(f"pid {os.getpid()}: {reason}", file=sys.stderr, flush=True)


class LifelineGuard(OrphanGuard):
    """For a rank forked by the warm pool (ddp/warm_pool.py): its parent is the pool, which outlives the
    run's launcher processes, so the guard watches a lifeline instead, the read end of a pipe whose write
    end only the launcher process holds. Reading it blocks until that process is gone, however it went."""

    def __init__(self, lifeline_fd: int, launcher_pid: int, last_words_s: float = 2.0) -> None:
        super().__init__(launcher_pid, last_words_s=last_words_s)
        self.lifeline_fd = lifeline_fd
        self._cut = threading.Event()

    def orphaned(self) -> bool:
        return self._cut.is_set()

    def lost(self) -> str:
        return f"the process torchrun started for this rank (pid {self.parent_pid})"

    def start(self, kernel_signal: bool = False) -> OrphanGuard:
        threading.Thread(target=self._watch, name="orphan-guard", daemon=True).start()
        return self

    def _watch(self) -> None:
        with contextlib.suppress(OSError):  # a bad descriptor: as good as cut
            while os.read(self.lifeline_fd, 1):
                pass
        self._cut.set()
        self._leave()


def launcher_pid(environ: Mapping[str, str] = os.environ) -> int:
    """The pid of the process torchrun started for this rank, the one its failure reports name: this
    process, or for a rank forked by the warm pool, its launcher (the pool names it with the lifeline)."""
    _fd, _, launcher = environ.get(LIFELINE_ENV, "").partition(":")
    return int(launcher) if launcher else os.getpid()


def guard_under_torchrun(environ: Mapping[str, str] = os.environ) -> OrphanGuard | None:
    """A started guard when torchrun launched this process (it gives its workers TORCHELASTIC_RUN_ID);
    None for a process started on its own, whose parent (a shell) may come and go. A rank forked by the
    warm pool watches its lifeline (the pool names it in the environment)."""
    if "TORCHELASTIC_RUN_ID" not in environ:
        return None
    lifeline = environ.get(LIFELINE_ENV)
    if lifeline:
        return LifelineGuard(int(lifeline.partition(":")[0]), launcher_pid(environ)).start()
    return OrphanGuard(os.getppid()).start()
