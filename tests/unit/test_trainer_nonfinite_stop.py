"""nonfinite_policy=stop without clipping, the real trainer on one rank in this process: a NaN loss is not
looked for in the gradients every step but found by the ranks together at the next heartbeat, and no
checkpoint is ever written with a NaN or inf parameter in it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from ddp.checkpoint_format import decode_state
from ddp.config import validate_config
from ddp.metrics import TrainerMetrics
from ddp.trainer import NonFiniteLossError, Trainer
from tests.unit.one_rank import ENV, one_rank

# The one-process group every test here trains in (tests/unit/one_rank.py).
pytestmark = pytest.mark.usefixtures(one_rank.__name__)

RUN = "nonfinite"
EVERY = 5


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


def test_a_nan_loss_stops_every_rank_a_step_after_the_next_heartbeat(tmp_path: Path) -> None:
    t = trainer(tmp_path / RUN, {"enabled": False})
    with pytest.raises(NonFiniteLossError, match="nonfinite_policy=stop") as stopped:
        t.run()
    first = int(re.search(r"first non-finite loss: step (\d+)", str(stopped.value)).group(1))
    # The run went on to the heartbeat after the NaN and the step that reads it (ddp/telemetry.py
    # start_heartbeat), and no further.
    assert t.counters.steps == -(-first // EVERY) * EVERY + 1, (first, t.counters.steps)
    assert t.counters.nonfinite >= 1


def test_no_checkpoint_is_written_with_a_nan_in_it(tmp_path: Path) -> None:
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
