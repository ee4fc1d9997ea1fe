"""Two ranks exchange checkpoint metadata, RNG states, summary digests and a resumed state as plain bytes:
the pickling collectives are switched off in every rank, and a peer's code payload is refused."""

from __future__ import annotations

import io
import os
import random
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from ddp import rng
from ddp.checkpoint import CheckpointStore
from ddp.checkpoint_format import UnsafeCheckpointError, decode_state
from ddp.dist import DistEnv
from ddp.distributed_checkpoint import DistributedCheckpointer
from ddp.plain_collectives import all_gather_json, broadcast_bytes
from tests.unit.gloo_ranks import run_ranks

pytestmark = pytest.mark.slow
WORLD = 2
CPU = torch.device("cpu")


class TouchMarker:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def _pickling_collective(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a pickling collective was called: a peer's bytes would be unpickled")


def _exchange(rank: int, tmp: Path) -> dict[str, Any]:
    # Ranks on two nodes, each its own writer with its own disk (checkpoint.writers=every_node).
    env = DistEnv(rank, 0, WORLD, 1, f"node{rank + 1}", 0, "gloo", CPU)
    out: dict[str, Any] = {}
    out["gathered"] = all_gather_json({"rank": rank, "text": "é" * (50 * rank + 1)}, CPU)
    out["broadcast"] = broadcast_bytes(b"\x00\xffbytes" if rank == 1 else None, 1, CPU)

    store = CheckpointStore(tmp / f"node{rank + 1}", keep_last=2, run="exchange")
    checkpointer = DistributedCheckpointer(store, env, "every_node")
    random.seed(100 + rank)
    model = {"w": torch.arange(4.0)}
    outcome, payloads = checkpointer.save({"step": 10, "model": model}, 10, {"rank": rank, "loss": 0.5})
    out["saved"] = outcome.entry is not None
    out["payloads"] = payloads
    out["draw_after_save"] = random.random()
    if rank == 0:  # node1 loses its copy: the group must resume from node2's, sent over the wire
        (store.directory / "step-000000010.pt").unlink()
    state = checkpointer.resume()
    assert state is not None
    out["resumed_step"] = state["step"]
    out["resumed_model"] = state["model"]["w"].tolist()
    random.seed(0)  # away from the saved stream, so only the restore can bring it back
    rng.restore(state["rng"][rank])
    out["draw_after_restore"] = random.random()

    # A peer that sends a code payload where a checkpoint state belongs.
    marker = tmp / "marker"
    crafted = io.BytesIO()
    torch.save({"format": 2, "step": 1, "hook": TouchMarker(str(marker))}, crafted)
    data = broadcast_bytes(crafted.getvalue() if rank == 1 else None, 1, CPU)
    if rank == 0:
        try:
            decode_state(data, "the checkpoint broadcast by rank 1")
            out["refused"] = None
        except UnsafeCheckpointError as exc:
            out["refused"] = str(exc)
        out["marker"] = marker.exists()
    return out


def _without_pickles(rank: int, tmp: Path) -> dict[str, Any]:
    dist.all_gather_object = _pickling_collective  # type: ignore[assignment]
    dist.broadcast_object_list = _pickling_collective  # type: ignore[assignment]
    return _exchange(rank, tmp)


def test_ranks_exchange_plain_data_only(tmp_path: Path) -> None:
    got = run_ranks(_without_pickles, tmp_path, WORLD)
    for rank in range(WORLD):
        r = got[rank]
        assert r["gathered"] == [{"rank": 0, "text": "é"}, {"rank": 1, "text": "é" * 51}]
        assert r["broadcast"] == b"\x00\xffbytes"
        assert r["payloads"] == [{"rank": 0, "loss": 0.5}, {"rank": 1, "loss": 0.5}]
        assert r["saved"] is True
        assert (r["resumed_step"], r["resumed_model"]) == (10, [0.0, 1.0, 2.0, 3.0])
        # Each rank's own RNG stream, captured at the save, came back through node2's file.
        assert r["draw_after_restore"] == r["draw_after_save"]
    assert got[0]["refused"] is not None and "unsafe" in got[0]["refused"]
    assert got[0]["marker"] is False
