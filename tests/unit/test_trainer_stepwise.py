"""The real trainer one step at a time (ddp.trainer.Trainer.stepwise), one rank in this process: it yields
where it starts, then every step after that step's bookkeeping, and ends with the same result and files as
run(); the communication probe takes no extra pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddp.config import validate_config
from ddp.metrics import TrainerMetrics
from ddp.trainer import Trainer
from tests.unit.one_rank import ENV, one_rank

# The one-process group every test here trains in (tests/unit/one_rank.py).
pytestmark = pytest.mark.usefixtures(one_rank.__name__)

RUN = "stepwise"


def trainer(run_dir: Path, steps: int = 12) -> Trainer:
    cfg = validate_config(
        {
            "run": {"name": RUN, "output_dir": str(run_dir.parent)},
            "workload": {"kind": "synthetic", "input_dim": 8, "hidden_dim": 16, "num_samples": 256},
            "training": {"batch_size": 16, "max_steps": steps, "log_every_steps": 5},
            "metrics": {"enabled": False, "status_every_steps": 5, "comm_probe_every_steps": 4},
            "checkpoint": {"enabled": False},
        }
    )
    return Trainer(cfg, ENV, TrainerMetrics(ENV, RUN), run_dir)


def test_stepwise_yields_each_step_and_returns_the_result(tmp_path: Path) -> None:
    t = trainer(tmp_path / RUN)
    passes = []
    forward_backward = t._forward_backward
    t._forward_backward = lambda batch, scale: passes.append(1) or forward_backward(batch, scale)  # type: ignore[method-assign]
    steps = t.stepwise()
    assert next(steps) == 0  # started, nothing trained yet
    assert not passes
    seen = []
    with pytest.raises(StopIteration) as done:
        while True:
            seen.append(next(steps))
    assert seen == list(range(1, 13))
    result = done.value.value
    assert (result.status, result.steps) == ("completed", 12)
    summary = json.loads(result.summary_path.read_text())
    assert summary["steps"] == 12
    # Probes at steps 5 and 9 (after warm-up, every 4) used the step's own pass: one pass a step.
    assert len(passes) == 12
    assert summary["comm_overhead_ratio"] is not None
