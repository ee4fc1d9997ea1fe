"""The real trainer on one rank in the test process: its environment and a one-process Gloo group."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from ddp.control import StopRequests
from ddp.dist import DistEnv

ENV = DistEnv(0, 0, 1, 1, "node1", 0, "gloo", torch.device("cpu"))


@pytest.fixture
def one_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A one-process gloo group; the test process keeps its own signal handlers."""
    monkeypatch.setattr(StopRequests, "install_signal_handlers", lambda self: None)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
