"""Crash-safe file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def fsync_dir(directory: Path) -> None:
    """Persist a rename: without it a power cut can lose the new directory entry."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: int = 0o644, durable: bool = True) -> Iterator[IO[bytes]]:
    """Yield a temp file beside `path`; on success (fsync it and) rename it over `path`.

    On any exception the temp file is removed and `path` is left untouched. `durable=False` skips the
    fsyncs for files rewritten every few seconds (status files): readers still never see half a file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        if durable:
            fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, mode: int = 0o644, durable: bool = True
) -> None:
    with atomic_open(path, mode, durable) as handle:
        handle.write(data)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, mode: int = 0o644, durable: bool = True
) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode, durable)


def atomic_write_json(
    path: str | os.PathLike[str],
    payload: Any,
    mode: int = 0o644,
    durable: bool = True,
    default: Callable[[Any], Any] | None = str,
) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=default) + "\n"
    atomic_write_text(path, text, mode, durable)
