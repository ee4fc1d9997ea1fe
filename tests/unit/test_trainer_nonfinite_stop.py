"""nonfinite_policy=stop without clipping, the real trainer on one rank in this process: a NaN loss is not
looked for in the gradients every step but found by the ranks together at the next heartbeat, and no
checkpoint is ever written with a NaN or inf parameter in it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from ddp.checkpoint_format import decode_state
from ddp.config import validate_config
from ddp.control import StopRequests
from ddp.dist import DistEnv
from ddp.metrics import TrainerMetrics
from ddp.trainer import NonFiniteLossError, Trainer

RUN = "nonfinite"
ENV = DistEnv(0, 0, 1, 1, "node1", 0, "gloo", torch.device("cpu"))
EVERY = 5


@pytest.fixture
def one_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(StopRequests, "install_signal_handlers", lambda self: None)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def trainer(run_dir: Path, checkpoint: dict[str, Any]) -> Trainer:
    cfg = validate_config(
        {
            "run": {"name": RUN, "output_dir": str(run_dir.parent)},
            "workload": {
                "kind": "import",
                "model": "tests.fixtures.workloads:tiny_model",
                "dataset": "tests.fixtures.workloads:dataset_with_nan",
            },
            "training": {"batch_size": 16, "max_steps": 40, "log_every_steps": EVERY},
            "metrics": {"enabled": False, "sync_check_every_steps": 1000},
            "checkpoint": checkpoint,
        }
    )
    return Trainer(cfg, ENV, TrainerMetrics(ENV, RUN), run_dir)


def test_a_nan_loss_stops_every_rank_at_the_next_heartbeat(tmp_path: Path, one_rank: None) -> None:
    t = trainer(tmp_path / RUN, {"enabled": False})
    with pytest.raises(NonFiniteLossError, match="nonfinite_policy=stop") as stopped:
        t.run()
    first = int(re.search(r"first non-finite loss: step (\d+)", str(stopped.value)).group(1))
    # The run went on to the heartbeat after the NaN, and no further.
    assert t.counters.steps == -(-first // EVERY) * EVERY, (first, t.counters.steps)
    assert t.counters.nonfinite >= 1


def test_no_checkpoint_is_written_with_a_nan_in_it(tmp_path: Path, one_rank: None) -> None:
    t = trainer(tmp_path / RUN, {"every_steps": 1, "keep_last": 100})
    with pytest.raises(NonFiniteLossError, match="a parameter is NaN or inf") as stopped:
        t.run()
    first = int(re.search(r"first non-finite loss: step (\d+)", str(stopped.value)).group(1))
    # The NaN step's update made the parameters NaN; its checkpoint was refused.
    assert t.counters.steps == first
    saved = sorted((tmp_path / RUN / "checkpoints").glob("step-*.pt"))
    assert len(saved) == first - 1, saved
    for path in saved:
        state = decode_state(path, str(path))
        assert all(torch.isfinite(v).all() for v in state["model"].values()), path
