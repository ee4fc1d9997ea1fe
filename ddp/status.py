"""A small JSON file per rank saying what it is doing; `tooling status` reads them over SSH."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from ddp.atomic import atomic_write_json
from ddp.dist import DistEnv
from ddp.orphan_guard import launcher_pid


class RankStatus:
    def __init__(self, status_dir: Path, env: DistEnv, run_name: str) -> None:
        self.path = status_dir / f"rank{env.rank}.json"
        self.base = {
            "run": run_name,
            "rank": env.rank,
            "local_rank": env.local_rank,
            "node": env.node,
            "pid": os.getpid(),
            # torchrun's failure lines name this one; with the warm start it is not the rank's own pid.
            "launcher_pid": launcher_pid(),
            "world_size": env.world_size,
            "restart_count": env.restart_count,
            "started_at": time.time(),
        }
        # The orphan guard's last word comes from another thread while training may still be writing; the
        # lock orders the two and the seal keeps a later "running" from replacing the "failed".
        self._lock = threading.Lock()
        self._sealed = False

    def write(self, state: str, *, final: bool = False, **fields: Any) -> None:
        """`final`: the process's last word; later writes are dropped."""
        with self._lock:
            if self._sealed:
                return
            # Rewritten every few steps: atomic (never half a file) but not fsynced.
            atomic_write_json(
                self.path, {**self.base, "state": state, "updated_at": time.time(), **fields}, durable=False
            )
            self._sealed = final
