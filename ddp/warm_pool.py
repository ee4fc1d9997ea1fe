"""The node's warm pool: one process per run and node that imports torch and the trainer once, then forks
a rank for each launcher process that asks (ddp/warm_client.py).

Why: every rank of every start imports torch and the trainer, about 2 s of CPU each; after a rank fails,
torchrun restarts all of the node's ranks, which paid that again at once. A forked rank starts with all of
it done. The pool is started by the node's warm supervisor (ddp/warm_supervisor.py) beside torchrun, and
leaves when its lifeline, a pipe only the supervisor writes to, reads end-of-file: once torchrun has
exited, or when the supervisor is gone. It stays single-threaded so that forking it is safe (it never runs
a torch operation or initialises CUDA; each rank does that itself).

A forked rank gets its launcher's arguments, environment, working directory and standard streams (passed
as descriptors), its own session, and a lifeline: the read end of a pipe whose write end only the launcher
holds. When the launcher goes (SIGKILL included) the lifeline reads end-of-file and the rank's orphan
guard stops it (ddp/orphan_guard.py). When the rank exits, the pool reaps it and tells the launcher how,
and the launcher ends the same way, so torchrun sees what it would have seen.

    python -m ddp.warm_pool --socket PATH --lifeline-fd FD [--target ddp.rank_main:main]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ddp.orphan_guard import LIFELINE_ENV
from ddp.warm_protocol import WarmStartError, receive, send

DEFAULT_TARGET = "ddp.rank_main:main"
# A launcher that connects and then says nothing must not hold up the others' restarts.
REQUEST_TIMEOUT_S = 10.0
EXIT_POLL_S = 0.1
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

RankMain = Callable[[list[str]], int]


def load_target(target: str) -> RankMain:
    """The function each forked rank runs, with its module's imports done, and the module's `preload()`
    (if it has one: what a rank would otherwise import lazily)."""
    module_name, _, name = target.partition(":")
    module = importlib.import_module(module_name)
    function = getattr(module, name or "main")
    if not callable(function):
        raise SystemExit(f"{target}: not a function")
    preload = getattr(module, "preload", None)
    if callable(preload):
        preload()
    return function  # type: ignore[no-any-return]


def _peer_uid(conn: socket.socket) -> int:
    _pid, uid, _gid = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid


class Pool:
    def __init__(self, path: Path, lifeline: int, run_rank: RankMain) -> None:
        self.path = path
        self.lifeline = lifeline  # readable (end-of-file) when the supervisor closes it or is gone
        self.run_rank = run_rank
        self.children: dict[int, socket.socket] = {}  # forked rank -> its launcher's connection
        self.exits: dict[int, int] = {}  # forked rank -> its pidfd, where the kernel has them (Linux 5.3)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def listen(self) -> None:
        """Bound under a temporary name, then renamed into place: a launcher that finds the socket finds a
        pool that is listening."""
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        old_umask = os.umask(0o177)  # the socket 0600, whatever the directory lets through
        try:
            self.listener.bind(str(staging))
        finally:
            os.umask(old_umask)
        self.listener.listen(64)
        os.replace(staging, self.path)

    def serve(self) -> None:
        listening = self.listener.fileno()
        while True:
            # A rank's exit wakes the pool at once (its pidfd turns readable), so its launcher, and torchrun
            # at its next poll, learn of it without a polling delay.
            # Without pidfds (a kernel before 5.3) nothing else would wake the pool for an exit: it polls.
            poll_s = None if len(self.exits) == len(self.children) else EXIT_POLL_S
            readable, _, _ = select.select([listening, self.lifeline, *self.exits.values()], [], [], poll_s)
            self._reap()
            if self.lifeline in readable:
                break
            if listening in readable:
                self._accept()
        self.close()

    def close(self) -> None:
        """The socket goes with the pool; its log only when empty (otherwise it says what failed)."""
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        log = self.path.with_suffix(".log")
        with contextlib.suppress(OSError):
            if log.stat().st_size == 0:
                log.unlink()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(REQUEST_TIMEOUT_S)
        fds: list[int] = []
        try:
            if _peer_uid(conn) != os.getuid():
                raise WarmStartError("a connection from another user")
            request, fds = receive(conn)
            if request is None or len(fds) != 4:
                raise WarmStartError(f"a request with {len(fds)} descriptors (expected 4)")
            pid = self._fork(request, fds)
            send(conn, {"pid": pid})
        except (OSError, KeyError, TypeError, ValueError, WarmStartError) as exc:
            print(f"warm pool: refused a request: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        conn.settimeout(None)
        self.children[pid] = conn
        with contextlib.suppress(AttributeError, OSError):  # without pidfds the poll finds the exit
            self.exits[pid] = os.pidfd_open(pid)

    def _fork(self, request: dict[str, Any], fds: list[int]) -> int:
        argv = [str(a) for a in request["argv"]]
        env = {str(k): str(v) for k, v in dict(request["env"]).items()}
        cwd = str(request["cwd"])
        launcher_pid = int(request["launcher_pid"])
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_rank(argv, env, cwd, launcher_pid, fds)
        return pid

    def _become_rank(
        self, argv: list[str], env: dict[str, str], cwd: str, launcher_pid: int, fds: list[int]
    ) -> NoReturn:
        code: int = 1
        try:
            self.listener.close()
            for conn in self.children.values():
                conn.close()
            for fd in [self.lifeline, *self.exits.values()]:
                os.close(fd)
            os.setsid()
            stdin, stdout, stderr, lifeline = fds
            for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
                os.dup2(fd, target)
                os.close(fd)
            os.set_inheritable(lifeline, False)
            os.environ.clear()
            os.environ.update(env)
            os.environ[LIFELINE_ENV] = f"{lifeline}:{launcher_pid}"
            os.chdir(cwd)
            sys.argv = [sys.argv[0], *argv]
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            code = self.run_rank(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # whatever it was, this process must end here, not in the pool
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            pidfd = self.exits.pop(pid, None)
            if pidfd is not None:
                os.close(pidfd)
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            outcome = (
                {"signal": os.WTERMSIG(status)}
                if os.WIFSIGNALED(status)
                else {"exit": os.waitstatus_to_exitcode(status)}
            )
            with contextlib.suppress(OSError):
                send(conn, outcome)
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--lifeline-fd", type=int, required=True, help="leave when this reads end-of-file")
    parser.add_argument("--target", default=DEFAULT_TARGET, help="module:function run in each forked rank")
    args = parser.parse_args(argv)
    run_rank = load_target(args.target)  # the imports every rank would otherwise pay for
    if threading.active_count() != 1:
        # Forking a process with other threads can leave a lock held forever in the child.
        raise SystemExit(
            f"warm pool: {threading.active_count()} threads after importing {args.target}; not forking"
        )
    pool = Pool(args.socket, args.lifeline_fd, run_rank)
    pool.listen()
    pool.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
