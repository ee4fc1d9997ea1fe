"""File writes taken off the training step: the newest wins, older ones not yet written are dropped.

A status file rewritten every few steps costs the step its syscalls (a temp file, a rename: about a
millisecond here); written by a thread of its own, the step only hands over what to write. Only the newest
matters, so a write still waiting when a newer one comes is dropped. A write that must be on disk before
the caller goes on (the run's end, a failure, the orphan guard's last word) goes through `now`, which drops
what is waiting, lets a write already under way finish first, and then writes: a later state is never
replaced by an earlier one. `close` ends the thread once the run's last word is written; the thread
holds no write between writes, so nothing it wrote keeps the trainer alive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class LatestWriter:
    def __init__(self, name: str) -> None:
        self._name = name
        self._changed = threading.Condition()
        self._pending: Callable[[], object] | None = None
        self._writing = threading.Lock()  # held while a write runs, whichever thread runs it
        self._thread: threading.Thread | None = None
        self._closed = False

    def later(self, write: Callable[[], object]) -> None:
        """Run `write` on the writer thread unless a newer write or a `now` comes first (closed: here)."""
        with self._changed:
            if not self._closed:
                self._pending = write
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                    self._thread.start()
                self._changed.notify()
                return
        self.now(write)

    def close(self) -> None:
        """End the thread: what is waiting is dropped (a `now` with the final state comes before this), a
        write under way finishes first. Idempotent."""
        with self._changed:
            self._closed = True
            self._pending = None
            thread, self._thread = self._thread, None
            self._changed.notify()
        if thread is not None:
            thread.join()

    def now(self, write: Callable[[], T]) -> T:
        """Run `write` here, after any write under way; what was waiting is dropped (this one is newer)."""
        with self._changed:
            self._pending = None
        with self._writing:
            return write()

    def _loop(self) -> None:
        while True:
            with self._changed:
                while self._pending is None and not self._closed:
                    self._changed.wait()
                write, self._pending = self._pending, None
                if self._closed or write is None:
                    return
                # Taken before the condition is released, so a `now` that comes after this hand-over
                # waits for this write rather than being overwritten by it.
                self._writing.acquire()
            try:
                write()
            except Exception:  # a bug in a write must not end the writer; disk errors are the write's own
                log.exception("%s: a write failed", self._name)
            finally:
                self._writing.release()
                # Not held while waiting for the next one: the write's closure reaches the trainer.
                del write
