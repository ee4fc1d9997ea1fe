#!/usr/bin/env python3
"""Collective bandwidth (all_reduce, and all_to_all on request), run by torchrun across the nodes of a phase
or across one pair of nodes.

Shipped to the nodes alone: standard library and torch only, no project imports. Rank 0 prints one JSON
object on stdout:

    {"probe": "collective_bw", "backend": "gloo", "world_size": 8, "nnodes": 2,
     "results": [{"size_bytes": 1048576, "iters": 10, "time_s": 0.0123,
                  "algbw_gbs": 0.085, "busbw_gbs": 0.149}, ...],
     "busbw_gbs": <all_reduce busbw of the largest size>,
     "all_to_all": {"results": [...], "busbw_gbs": ...}}      (only with --collectives ...,all_to_all)

The top-level `results`/`busbw_gbs` stay all_reduce's (what verify-node has always read). algbw = size /
time per collective; busbw follows nccl-tests: all_reduce algbw * 2 (n - 1) / n, all_to_all algbw *
(n - 1) / n (what each rank's link actually carries, comparable across world sizes). GB/s = 1e9 bytes/s.
all_to_all runs as all_to_all_single, the form Gloo implements on CPU tensors. On GPU nodes the all-to-all
figure comes from nccl-tests' alltoall_perf (verify.yml's GPU block), not from this probe.

Usage: torchrun --nnodes N --nproc-per-node P --rdzv-backend c10d --rdzv-endpoint HOST:PORT \
           collective_bw.py [--sizes 1048576,16777216] [--iters 10] [--warmup 3] \
           [--collectives all_reduce,all_to_all] [--backend gloo|nccl]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

COLLECTIVES = ("all_reduce", "all_to_all")


def bus_factor(world_size: int, collective: str = "all_reduce") -> float:
    if world_size <= 0:
        return 0.0
    if collective == "all_to_all":
        return (world_size - 1) / world_size
    return 2.0 * (world_size - 1) / world_size


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(size < 4 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be byte counts >= 4, got {text!r}")
    return sizes


def parse_collectives(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in COLLECTIVES]
    if not names or unknown or "all_reduce" not in names:
        raise argparse.ArgumentTypeError(
            f"collectives must include all_reduce and be among {', '.join(COLLECTIVES)}, got {text!r}"
        )
    return names


def _measure(collective: str, size: int, args: argparse.Namespace, device: Any) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    # all_to_all_single splits the tensor in equal parts, one per rank.
    count = max(world, size // 4 // world * world) if collective == "all_to_all" else max(1, size // 4)
    tensor = torch.ones(count, dtype=torch.float32, device=device)
    output = torch.empty_like(tensor)

    def once() -> None:
        if collective == "all_to_all":
            dist.all_to_all_single(output, tensor)
        else:
            dist.all_reduce(tensor)

    for _ in range(args.warmup):
        once()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.iters):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()
    elapsed = (time.perf_counter() - start) / max(1, args.iters)
    # The slowest rank decides the collective's time.
    timing = torch.tensor([elapsed], dtype=torch.float64, device=device)
    dist.all_reduce(timing, op=dist.ReduceOp.MAX)
    seconds = float(timing.item())
    nbytes = tensor.numel() * tensor.element_size()
    algbw = nbytes / seconds / 1e9 if seconds > 0 else 0.0
    return {
        "size_bytes": nbytes,
        "iters": args.iters,
        "time_s": round(seconds, 6),
        "algbw_gbs": round(algbw, 4),
        "busbw_gbs": round(algbw * bus_factor(world, collective), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1048576,16777216"))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--collectives", type=parse_collectives, default=["all_reduce"])
    # nccl: the per-pair probe on GPU nodes (one rank per node on its first GPU).
    parser.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    args = parser.parse_args(argv)

    import torch
    import torch.distributed as dist

    dist.init_process_group(backend=args.backend)
    try:
        if args.backend == "nccl":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        runs = {
            name: [_measure(name, size, args, device) for size in args.sizes] for name in args.collectives
        }
        if dist.get_rank() == 0:
            report: dict[str, Any] = {
                "probe": "collective_bw",
                "backend": args.backend,
                "world_size": dist.get_world_size(),
                "nnodes": int(os.environ.get("GROUP_WORLD_SIZE", "0")) or None,
                "torch": torch.__version__,
                "results": runs["all_reduce"],
                "busbw_gbs": runs["all_reduce"][-1]["busbw_gbs"],
            }
            if "all_to_all" in runs:
                report["all_to_all"] = {
                    "results": runs["all_to_all"],
                    "busbw_gbs": runs["all_to_all"][-1]["busbw_gbs"],
                }
            print(json.dumps(report), flush=True)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
