"""Where this process sits in the job, and joining the process group.

torchrun exports RANK/LOCAL_RANK/WORLD_SIZE/...; without them the trainer runs as a one-process group so
the same code path is exercised during development.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ddp.config import DistributedSection
from ddp.ports import free_port_block


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    node: str
    restart_count: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def launched_world_size() -> int:
    """The job's process count as torchrun announces it; 1 for a process started on its own."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def backend_problem(requested: str) -> str | None:
    """Why `distributed.backend` cannot work on this node, or None."""
    if requested == "nccl" and not torch.cuda.is_available():
        return (
            "distributed.backend: nccl needs a CUDA device and none is visible on this node; "
            "expected auto or gloo here"
        )
    return None


def resolve_backend(requested: str) -> str:
    problem = backend_problem(requested)
    if problem is not None:
        raise RuntimeError(problem)
    if requested == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return requested


def init_distributed(section: DistributedSection) -> DistEnv:
    if "RANK" not in os.environ:
        os.environ.update(
            {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
            | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port_block())}
        )
    if section.socket_ifname:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", section.socket_ifname)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", section.socket_ifname)
    backend = resolve_backend(section.backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=section.timeout_s))
    return DistEnv(
        rank=dist.get_rank(),
        local_rank=local_rank,
        world_size=dist.get_world_size(),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        node=os.environ.get("DDP_NODE_NAME") or socket.gethostname(),
        restart_count=int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
        backend=backend,
        device=device,
    )


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
