"""What the warm pool runs in its forked ranks in tests (DDP_WARM_POOL_TARGET): light stand-ins for the
trainer that do what argv says, so the pool's and launcher's plumbing is tested without torch."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ddp.orphan_guard import guard_under_torchrun


def main(argv: list[str]) -> int:
    action, *rest = argv
    if action == "exit":
        return int(rest[0])
    if action == "echo":
        print(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "ppid": os.getppid(),
                    "sid": os.getsid(0),
                    "cwd": os.getcwd(),
                    "argv": sys.argv[1:],
                    "marker": os.environ.get("WARM_TEST_MARKER"),
                    "threads_at_start": threading.active_count(),
                }
            ),
            flush=True,
        )
        return 0
    if action == "die-by":
        os.kill(os.getpid(), int(rest[0]))
        time.sleep(5)
        return 99
    if action == "wait":  # until a signal (default action) or the launcher is gone (the guard)
        guard = guard_under_torchrun()
        if guard is not None:
            guard.add_last_words(lambda reason: Path(rest[0], "last_words").write_text(reason))
        # Renamed into place: the test polls for the file and reads it at once, so it must never see it empty.
        Path(rest[0], "pid.part").write_text(str(os.getpid()))
        Path(rest[0], "pid.part").rename(Path(rest[0], "pid"))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(15))
        time.sleep(60)
        return 98
    raise SystemExit(f"unknown action {action}")
