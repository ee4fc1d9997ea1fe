"""Wait, up to GRACE seconds, for a trainer unit whose local ranks have all ended to go inactive by itself.

    finished_run_wait.py UNIT STATUS_DIR GRACE

Prints `running` (a rank still runs, or no status: the caller stops the unit), `ended` or `timeout`. After
its ranks end, each node's torchrun agent waits in an exit barrier for the other nodes' agents (seconds);
an agent stopped there leaves the others blocked in the barrier, where SIGTERM is only seen once the
barrier's own timeout (300 s) passes. The status files belong to the training account: opened without
following links, regular files only, size-capped.
"""

from __future__ import annotations

import glob
import json
import os
import stat
import subprocess
import sys
import time

ENDED = {"completed", "stopped", "failed"}
MAX_BYTES = 1 << 20


def rank_state(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        try:
            state = json.loads(handle.read(MAX_BYTES)).get("state")
        except (ValueError, AttributeError):
            return None
    return state if isinstance(state, str) else None


def main(unit: str, status_dir: str, grace_s: float) -> str:
    states = [rank_state(path) for path in glob.glob(os.path.join(status_dir, "rank*.json"))]
    if not states or not all(state in ENDED for state in states):
        return "running"
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode != 0:
            return "ended"
        time.sleep(1)
    return "timeout"


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
