"""Real ranks for unit tests: a function run in several processes joined in one Gloo group."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

RankWork = Callable[[int, Path], Any]


def _entry(rank: int, work: RankWork, tmp: Path, world: int, results: Any) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp / 'rendezvous'}", rank=rank, world_size=world)
    try:
        results[rank] = work(rank, tmp)
    finally:
        dist.destroy_process_group()


def run_ranks(work: RankWork, tmp: Path, world: int = 2) -> dict[int, Any]:
    """`work(rank, tmp)` on `world` ranks (a file rendezvous in `tmp`); what each returned, by rank.
    `work` must be a module-level function: the ranks are spawned processes."""
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_entry, args=(work, tmp, world, results), nprocs=world, join=True)
        return dict(results)
