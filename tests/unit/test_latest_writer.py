"""ddp/latest_writer.py: writes handed to the writer thread land in order, the newest last; a write that must
be on disk now is never overwritten by an older one, whether that one was waiting or already under way."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ddp.latest_writer import LatestWriter


def wait_for(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        time.sleep(0.005)


def test_the_newest_write_is_the_last_one() -> None:
    written: list[int] = []
    writer = LatestWriter("test-writer")
    for value in range(200):
        writer.later(lambda value=value: written.append(value))
    wait_for(lambda: written and written[-1] == 199)
    assert written == sorted(written)  # some may be dropped, never reordered
    assert writer.now(lambda: "returned") == "returned"


def test_a_write_now_waits_for_the_one_under_way_and_drops_the_waiting_one() -> None:
    written: list[str] = []
    started, release = threading.Event(), threading.Event()

    def slow_old() -> None:
        started.set()
        release.wait(5)
        written.append("old, under way")

    writer = LatestWriter("test-writer")
    writer.later(slow_old)
    assert started.wait(5)
    writer.later(lambda: written.append("old, waiting"))
    threading.Timer(0.2, release.set).start()
    writer.now(lambda: written.append("final"))
    time.sleep(0.1)  # a dropped write, if it ran anyway, would come after the final one
    assert written == ["old, under way", "final"]


def test_a_failing_write_does_not_stop_the_writer() -> None:
    # A handler on the writer's own logger: the trainer's logging set-up (ddp.logs) stops "ddp" records
    # from reaching the root logger, where pytest's caplog listens, once any test in this process ran it.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("ddp.latest_writer")
    logger.addHandler(handler)
    try:
        written: list[str] = []
        writer = LatestWriter("test-writer")
        writer.later(lambda: 1 / 0)
        wait_for(lambda: any("a write failed" in r.getMessage() for r in records))
        writer.later(lambda: written.append("next"))
        wait_for(lambda: written == ["next"])
    finally:
        logger.removeHandler(handler)


def test_close_ends_the_thread_and_later_writes_land_at_once() -> None:
    written: list[str] = []
    writer = LatestWriter("test-writer-close")
    writer.later(lambda: written.append("before"))
    wait_for(lambda: written == ["before"])
    writer.close()
    assert not [t for t in threading.enumerate() if t.name == "test-writer-close"]
    writer.later(lambda: written.append("after close"))  # no thread any more: written by the caller
    assert written == ["before", "after close"]
    writer.close()  # idempotent


def test_the_thread_keeps_no_reference_to_the_last_write() -> None:
    # The write's closure reaches the trainer (model, optimizer); held by an idle thread, every Trainer of
    # a process that makes several (the overhead bench) stayed in memory: 40 MB a round.
    import gc
    import weakref

    class Payload:
        def write(self) -> None:
            pass

    payload = Payload()
    alive = weakref.ref(payload)
    writer = LatestWriter("test-writer-ref")
    writer.later(payload.write)
    del payload
    wait_for(lambda: (gc.collect(), alive() is None)[1])
    writer.close()
