"""A rank's launcher side of the warm start (ddp/warm_pool.py): the process torchrun starts hands its
arguments, environment and standard streams to the node's warm pool, which forks the rank; this process
then stands in for the rank towards torchrun: it forwards the signals torchrun sends and ends as the rank
ended (its exit code, or the same signal), so torchrun's monitoring, restarts and failure reports see what
they would see of the rank itself. torchrun names this process's pid in its log; the rank's status file
names the rank's own (the one to inspect).

Anything that keeps the warm path from starting (no private directory, the pool did not come up) is said on
stderr and the rank starts cold in this process instead. Once the pool has the request, there is no going
back: closing the lifeline stops whatever the pool may have forked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from ddp.orphan_guard import OrphanGuard
from ddp.warm_protocol import WarmStartError, private_directory, receive, send, socket_path

WARM_START_ENV = "DDP_WARM_START"
POOL_TARGET_ENV = "DDP_WARM_POOL_TARGET"  # tests run the pool with a light target; nodes use the trainer
POOL_START_TIMEOUT_S = 120.0  # the pool's imports, on a node whose ranks are all starting at once
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
EXIT_POOL_LOST = 1


def warm_start_requested(environ: Mapping[str, str]) -> bool:
    """Asked for, and launched by torchrun (whose agent the pool lives with)."""
    asked = environ.get(WARM_START_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return asked and "TORCHELASTIC_RUN_ID" in environ


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    return sock


def _start_pool(path: Path, agent_pid: int) -> socket.socket:
    log_path = path.with_suffix(".log")
    target = os.environ.get(POOL_TARGET_ENV)
    command = [sys.executable, "-m", "ddp.warm_pool", "--socket", str(path), "--agent-pid", str(agent_pid)]
    with open(log_path, "ab") as log:
        pool = subprocess.Popen(
            [*command, *(["--target", target] if target else [])],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # not in this launcher's process group, which torchrun signals
        )
    deadline = time.monotonic() + POOL_START_TIMEOUT_S
    while time.monotonic() < deadline:
        sock = _connect(path)
        if sock is not None:
            return sock
        if pool.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise WarmStartError(f"the pool exited with {pool.returncode}: {' | '.join(tail) or 'no output'}")
        time.sleep(0.02)
    pool.kill()
    raise WarmStartError(f"the pool was not listening after {POOL_START_TIMEOUT_S:.0f} s")


def connect_or_start(path: Path, agent_pid: int) -> socket.socket:
    """A connection to the run's pool, started by whichever launcher of the node comes first."""
    with open(path.with_suffix(".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _connect(path) or _start_pool(path, agent_pid)


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
        path = socket_path(private_directory(os.environ), os.environ["TORCHELASTIC_RUN_ID"], agent_pid)
        sock = connect_or_start(path, agent_pid)
    except (OSError, WarmStartError) as exc:
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
