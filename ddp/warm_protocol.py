"""Messages between a rank's launcher process and the node's warm pool (ddp/warm_client.py,
ddp/warm_pool.py): one JSON object per message, with a 4-byte length before it, and open file descriptors
passed alongside (SCM_RIGHTS). JSON only: nothing a peer sends is ever unpickled.

Where the pool listens: a Unix socket in a directory only this user can enter, named after the run and the
supervisor that started it (ddp/warm_supervisor.py: one pool per launch), and given to torchrun's workers
in their environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

POOL_SOCKET_ENV = "DDP_WARM_SOCKET"
POOL_PID_ENV = "DDP_WARM_POOL_PID"
MAX_MESSAGE = 1 << 20  # an environment and argv; anything larger is not ours
MAX_FDS = 8
_LENGTH = struct.Struct("!I")


class WarmStartError(RuntimeError):
    """The warm path cannot be used; the rank starts cold instead (the message says why)."""


def send(sock: socket.socket, payload: dict[str, Any], fds: list[int] | None = None) -> None:
    body = json.dumps(payload).encode("utf-8")
    data = _LENGTH.pack(len(body)) + body
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        data = data[sent:]
    if data:
        sock.sendall(data)


def receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and the descriptors that came with it; (None, []) when the peer closed."""
    head, fds, _flags, _address = socket.recv_fds(sock, _LENGTH.size, MAX_FDS)
    if not head:
        return None, fds
    head += _exactly(sock, _LENGTH.size - len(head))
    (length,) = _LENGTH.unpack(head)
    if length > MAX_MESSAGE:
        for fd in fds:
            os.close(fd)
        raise WarmStartError(f"a message of {length} bytes (at most {MAX_MESSAGE})")
    payload = json.loads(_exactly(sock, length).decode("utf-8"))
    if not isinstance(payload, dict):
        raise WarmStartError(f"expected a JSON object, got {type(payload).__name__}")
    return payload, fds


def _exactly(sock: socket.socket, count: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = sock.recv(count)
        if not chunk:
            raise WarmStartError("the peer closed mid-message")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def private_directory(environ: Mapping[str, str]) -> Path:
    """A directory only this user can enter: $XDG_RUNTIME_DIR (systemd makes it 0700), else ddp-warm-<uid>
    under the temp directory, created 0700. Anything else there (a link, another owner, a looser mode) is
    refused: another user could then connect, or plant the socket."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    directory = (
        Path(runtime) / "ddp-warm" if runtime else Path(tempfile.gettempdir()) / f"ddp-warm-{os.getuid()}"
    )
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise WarmStartError(f"cannot make {directory}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise WarmStartError(f"{directory} is not a directory (a link?)")
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise WarmStartError(
            f"{directory} must belong to uid {os.getuid()} with mode 0700 "
            f"(it has uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o})"
        )
    return directory


# A Unix socket's path: 108 bytes with its NUL; the pool binds first under a name 12 bytes longer.
MAX_SOCKET_PATH = 107 - 12


def socket_path(directory: Path, run_id: str, owner_pid: int) -> Path:
    # Hashed: run ids are the site's to choose, and the path's length is limited.
    key = hashlib.sha256(f"{run_id}\0{owner_pid}".encode()).hexdigest()[:20]
    path = directory / f"pool-{key}.sock"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise WarmStartError(
            f"the pool's socket path {path} is longer than a Unix socket allows ({MAX_SOCKET_PATH} bytes); "
            "point XDG_RUNTIME_DIR at a shorter directory"
        )
    return path
