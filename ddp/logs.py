"""Per-rank logs: ECS JSON lines (one file per rank, ready for Filebeat's ndjson parser) plus a short
human-readable stream on stderr from rank 0 only, so torchrun's console is not 16-fold."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import ecs_logging

from ddp.dist import DistEnv


def setup_logging(log_dir: Path, env: DistEnv, run_name: str, level: str) -> logging.Logger:
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("ddp")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()

    file_handler = logging.FileHandler(log_dir / f"rank{env.rank}.ndjson", encoding="utf-8")
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
