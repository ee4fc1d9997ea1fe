"""Two processes, one Gloo all_reduce: proves the installed torch can really run collectives."""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank: int, world_size: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value)
    dist.destroy_process_group()
    expected = world_size * (world_size + 1) / 2
    if value.item() != expected:
        sys.exit(f"rank {rank}: all_reduce gave {value.item()}, expected {expected}")


if __name__ == "__main__":
    size = 2
    mp.spawn(worker, args=(size, int(os.environ.get("PORT", "29531"))), nprocs=size)
    print(f"all_reduce ok world_size={size}")
