"""The warm start's outer process on a node: starts the run's warm pool (ddp/warm_pool.py), then torchrun,
and outlives both.

    python -m ddp.warm_supervisor TORCHRUN [ARGS ...]   (ddp-launch, with the role's ddp_trainer_warm_start)

torchrun gets the pool's socket in its environment, which its workers inherit: each worker hands its rank
to the pool (ddp/warm_client.py). The signals this process gets go to torchrun. Once torchrun has exited,
the pool's lifeline is closed, the pool is waited for, and this process exits as torchrun did (its exit
code, or the same signal).

Why a process above torchrun: no process of the run may outlive the one that started it. Under systemd
this is the unit's main process, and the unit is done when its control group is empty. A pool left behind
by torchrun was killed there and, where the empty-group notification does not reach systemd (cgroup v1
inside a container), kept the unit `deactivating` for the whole stop timeout, then marked it failed.

The pool's lifeline is a pipe whose write end only this process holds: it reads end-of-file when this
process closes it or dies (SIGKILL included), so the pool can never outlive the run. If the pool cannot be
started (no private directory, a socket path too long), the reason goes to stderr and torchrun runs with
every rank starting cold.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from ddp.cpu_threads import THREADS_ENV
from ddp.warm_protocol import (
    POOL_PID_ENV,
    POOL_SOCKET_ENV,
    WarmStartError,
    private_directory,
    socket_path,
)

POOL_TARGET_ENV = "DDP_WARM_POOL_TARGET"  # tests run the pool with a light target; nodes use the trainer
# torchrun stops its workers on each of these and exits (torch.distributed.elastic's SignalException).
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# The pool's leaving is a socket removed and an interpreter exit (the warm-start tests wait for it within
# seconds); past this it is killed, so that a pool stuck in a system call never holds the unit.
POOL_EXIT_TIMEOUT_S = 10.0


class PoolProcess:
    def __init__(self, path: Path, process: subprocess.Popen[bytes], lifeline: int) -> None:
        self.path = path
        self.process = process
        self._lifeline = lifeline  # the write end; nothing is ever written to it

    def environment(self) -> dict[str, str]:
        return {POOL_SOCKET_ENV: str(self.path), POOL_PID_ENV: str(self.process.pid)}

    def stop(self) -> None:
        """Close the lifeline and wait for the pool to leave (killed past POOL_EXIT_TIMEOUT_S)."""
        with contextlib.suppress(OSError):
            os.close(self._lifeline)
        try:
            self.process.wait(timeout=POOL_EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(
                f"warm supervisor: the pool (pid {self.process.pid}) did not leave within "
                f"{POOL_EXIT_TIMEOUT_S:.0f} s; killed",
                file=sys.stderr,
                flush=True,
            )
            self.process.kill()
            self.process.wait()


def start_pool(environ: Mapping[str, str]) -> PoolProcess:
    """The pool, started but perhaps not listening yet (its imports take seconds; the workers wait)."""
    path = socket_path(private_directory(environ), environ.get("DDP_RUN_ID", "run"), os.getpid())
    target = environ.get(POOL_TARGET_ENV)
    read_end, write_end = os.pipe()
    command = [sys.executable, "-m", "ddp.warm_pool", "--socket", str(path), "--lifeline-fd", str(read_end)]
    try:
        with open(path.with_suffix(".log"), "ab") as log:
            process = subprocess.Popen(
                [*command, *(["--target", target] if target else [])],
                # One thread for whatever the pool computes while importing: OpenMP's worker threads do not
                # survive a fork, and each rank sizes its own pool from its launcher (ddp/cpu_threads.py).
                env={**environ, THREADS_ENV: "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(read_end,),
                start_new_session=True,  # out of the terminal's process group: signals come through here
            )
    except OSError:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    os.set_inheritable(write_end, False)  # torchrun and its workers must not hold the pool alive
    # Reaped as soon as it exits: until then a pool that failed at its imports is a zombie, which the
    # workers waiting for it (ddp/warm_client.py) could not tell from one still importing.
    threading.Thread(target=process.wait, name="pool-reaper", daemon=True).start()
    return PoolProcess(path, process, write_end)


def _exit_as(code: int) -> int:
    """torchrun's exit code as this process's own; a signal death is repeated on this process."""
    if code < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def main(argv: list[str] | None = None) -> int:
    command = sys.argv[1:] if argv is None else argv
    if not command or command[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    pool: PoolProcess | None = None
    try:
        pool = start_pool(os.environ)
    except (OSError, WarmStartError) as exc:
        print(f"warm start unavailable ({exc}); every rank starts cold", file=sys.stderr, flush=True)
    env = {**os.environ, **(pool.environment() if pool else {})}
    try:
        # A session of its own: a terminal's Ctrl-C reaches it once, through here, not twice.
        agent = subprocess.Popen(command, env=env, start_new_session=True)
    except OSError as exc:
        if pool is not None:
            pool.stop()
        print(f"warm supervisor: cannot start {command[0]}: {exc}", file=sys.stderr, flush=True)
        return 127

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            agent.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    code = agent.wait()  # retried across the forwarded signals (PEP 475)
    if pool is not None:
        pool.stop()
    return _exit_as(code)


if __name__ == "__main__":
    sys.exit(main())
