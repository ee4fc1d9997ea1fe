#!/usr/bin/env python3
"""All-reduce bus bandwidth over Gloo, run by torchrun across the nodes of a phase.

Shipped to the nodes alone: standard library and torch only, no project imports. Rank 0 prints one JSON
object on stdout:

    {"probe": "gloo_allreduce", "backend": "gloo", "world_size": 8, "nnodes": 2,
     "results": [{"size_bytes": 1048576, "iters": 10, "time_s": 0.0123,
                  "algbw_gbs": 0.085, "busbw_gbs": 0.149}, ...],
     "busbw_gbs": <busbw of the largest size>}

algbw = size / time per all_reduce; busbw = algbw * 2 (n - 1) / n (the nccl-tests convention for
all_reduce: what each rank's link actually carries, comparable across world sizes). GB/s = 1e9 bytes/s.

Usage: torchrun --nnodes N --nproc-per-node P --rdzv-backend c10d --rdzv-endpoint HOST:PORT \
           gloo_allreduce.py [--sizes 1048576,16777216] [--iters 10] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def bus_factor(world_size: int) -> float:
    return 2.0 * (world_size - 1) / world_size if world_size > 0 else 0.0


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(size < 4 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be byte counts >= 4, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1048576,16777216"))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    import torch
    import torch.distributed as dist

    dist.init_process_group(backend="gloo")
    try:
        rank = dist.get_rank()
        world = dist.get_world_size()
        results = []
        for size in args.sizes:
            tensor = torch.ones(max(1, size // 4), dtype=torch.float32)
            for _ in range(args.warmup):
                dist.all_reduce(tensor)
            dist.barrier()
            start = time.perf_counter()
            for _ in range(args.iters):
                dist.all_reduce(tensor)
            dist.barrier()
            elapsed = (time.perf_counter() - start) / max(1, args.iters)
            # The slowest rank decides the collective's time.
            timing = torch.tensor([elapsed], dtype=torch.float64)
            dist.all_reduce(timing, op=dist.ReduceOp.MAX)
            seconds = float(timing.item())
            nbytes = tensor.numel() * tensor.element_size()
            algbw = nbytes / seconds / 1e9 if seconds > 0 else 0.0
            results.append(
                {
                    "size_bytes": nbytes,
                    "iters": args.iters,
                    "time_s": round(seconds, 6),
                    "algbw_gbs": round(algbw, 4),
                    "busbw_gbs": round(algbw * bus_factor(world), 4),
                }
            )
        if rank == 0:
            report = {
                "probe": "gloo_allreduce",
                "backend": "gloo",
                "world_size": world,
                "nnodes": int(os.environ.get("GROUP_WORLD_SIZE", "0")) or None,
                "torch": torch.__version__,
                "results": results,
                "busbw_gbs": results[-1]["busbw_gbs"],
            }
            print(json.dumps(report), flush=True)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
