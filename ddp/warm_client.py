"""A rank's launcher side of the warm start (ddp/warm_pool.py): the process torchrun starts hands its
arguments, environment and standard streams to the node's warm pool, which forks the rank; this process
then stands in for the rank towards torchrun: it forwards the signals torchrun sends and ends as the rank
ended (its exit code, or the same signal), so torchrun's monitoring, restarts and failure reports see what
they would see of the rank itself. torchrun names this process's pid in its log; the rank's status file
names the rank's own (the one to inspect).

The pool is the run's on this node, started by the warm supervisor above torchrun (ddp/warm_supervisor.py),
which names its socket in the environment torchrun's workers inherit. Anything that keeps the warm path
from starting (the pool exited, or was not listening in time) is said on stderr and the rank starts cold in
this process instead. Once the pool has the request, there is no going
back: closing the lifeline stops whatever the pool may have forked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from ddp.orphan_guard import OrphanGuard
from ddp.warm_protocol import POOL_PID_ENV, POOL_SOCKET_ENV, WarmStartError, receive, send

POOL_START_TIMEOUT_S = 120.0  # the pool's imports, on a node whose ranks are all starting at once
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
EXIT_POOL_LOST = 1


def warm_start_requested(environ: Mapping[str, str]) -> bool:
    """A pool named by the warm supervisor, and launched by torchrun (whose failure reports name us)."""
    return bool(environ.get(POOL_SOCKET_ENV)) and "TORCHELASTIC_RUN_ID" in environ


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def wait_for_pool(path: Path, pool_pid: int, timeout_s: float = POOL_START_TIMEOUT_S) -> socket.socket:
    """A connection to the pool, which may still be importing; WarmStartError if it exited or timed out."""
    import psutil  # here: deciding whether to start warm must cost the launcher nothing

    deadline = time.monotonic() + timeout_s
    while True:
        sock = _connect(path)
        if sock is not None:
            return sock
        if pool_pid and not psutil.pid_exists(pool_pid):
            log = path.with_suffix(".log")
            with contextlib.suppress(OSError):
                tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
                raise WarmStartError(f"the pool (pid {pool_pid}) exited: {tail or 'no output'} ({log})")
            raise WarmStartError(f"the pool (pid {pool_pid}) exited")
        if time.monotonic() >= deadline:
            raise WarmStartError(f"the pool was not listening on {path} after {timeout_s:.0f} s")
        time.sleep(0.02)


def _standard_streams() -> list[int]:
    """Descriptors 0, 1 and 2 as the rank should have them; /dev/null for one this process was started
    without (a closed descriptor cannot be passed)."""
    streams = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            streams.append(fd)
        except OSError:
            streams.append(os.open(os.devnull, os.O_RDWR))
    return streams


def run_through_pool(argv: list[str]) -> int | None:
    """The rank's exit code once the pool ran it; None when it must start cold here instead."""
    agent_pid = os.getppid()
    try:
        pool_pid = int(os.environ.get(POOL_PID_ENV) or 0)
        sock = wait_for_pool(Path(os.environ[POOL_SOCKET_ENV]), pool_pid)
    except (OSError, ValueError, WarmStartError) as exc:
        print(f"warm start unavailable ({exc}); this rank starts cold", file=sys.stderr, flush=True)
        return None
    lifeline, keep = os.pipe()
    streams = _standard_streams()
    try:
        request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "launcher_pid": os.getpid()}
        send(sock, request, [*streams, lifeline])
        reply, _ = receive(sock)
        rank_pid = int((reply or {})["pid"])
    except (OSError, KeyError, TypeError, ValueError, WarmStartError) as exc:
        os.close(keep)  # whatever the pool forked reads end-of-file and stops
        print(f"warm start failed ({exc}); this rank starts cold", file=sys.stderr, flush=True)
        return None
    finally:
        os.close(lifeline)
        for fd in streams:
            if fd > 2:
                os.close(fd)
    return _stand_in(sock, rank_pid, agent_pid, keep)


def _stand_in(sock: socket.socket, rank_pid: int, agent_pid: int, keep: int) -> int:
    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rank_pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    # The agent SIGKILLed: this process goes (guard), the lifeline closes, and the rank's own guard stops it.
    OrphanGuard(agent_pid).start()
    try:
        outcome, _ = receive(sock)
    except (OSError, WarmStartError):
        outcome = None
    if outcome is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rank_pid, signal.SIGKILL)
        print(f"warm start: the pool went away; rank pid {rank_pid} stopped", file=sys.stderr, flush=True)
        return EXIT_POOL_LOST
    os.close(keep)
    if "signal" in outcome:
        ended_by = int(outcome["signal"])
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(ended_by, signal.SIG_DFL)
        os.kill(os.getpid(), ended_by)  # end the way the rank ended: torchrun reports "exitcode: -N"
        return 128 + ended_by
    return int(outcome["exit"])
