"""Per-rank logs: ECS JSON lines (one file per rank, ready for Filebeat's ndjson parser) plus a short
human-readable stream on stderr from rank 0 only, so torchrun's console is not 16-fold."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import ecs_logging

from ddp.dist import DistEnv


class RankLogFile(logging.FileHandler):
    """The rank's ndjson file. A line the disk refuses (full, read-only) is dropped and handed to
    `on_write_error` rather than printing a traceback per record: training outlives its log."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.on_write_error: Callable[[OSError], None] | None = None
        self.write_errors = 0

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)  # a formatting bug stays loud
            return
        self.write_errors += 1
        if self.write_errors == 1:
            dropped = f"{self.baseFilename}: log lines dropped ({error}); later ones are only counted"
            print(dropped, file=sys.stderr)
        if self.on_write_error is not None:
            self.on_write_error(error)


def on_log_write_error(callback: Callable[[OSError], None]) -> None:
    """Call `callback` for every log line the disk refuses. It runs inside the failing handler, so it
    must not log."""
    for handler in logging.getLogger("ddp").handlers:
        if isinstance(handler, RankLogFile):
            handler.on_write_error = callback


def setup_logging(log_dir: Path, env: DistEnv, run_name: str, level: str) -> logging.Logger:
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("ddp")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()

    file_handler = RankLogFile(log_dir / f"rank{env.rank}.ndjson")
    file_handler.setFormatter(
        ecs_logging.StdlibFormatter(
            extra={
                "service": {"name": "ddp-trainer"},
                "host": {"name": env.node},
                "labels": {
                    "run": run_name,
                    "rank": env.rank,
                    "local_rank": env.local_rank,
                    "world_size": env.world_size,
                    "restart": env.restart_count,
                },
            }
        )
    )
    root.addHandler(file_handler)
    if env.is_main:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(asctime)s rank0 %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(console)
    return root
