"""The real trainer on one rank in this process: a heartbeat is read a step after it begins
(ddp/telemetry.py start_heartbeat), so what the ranks agree on there takes effect one step later, at the
same step on every rank, and never twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ddp.config import validate_config
from ddp.metrics import TrainerMetrics
from ddp.trainer import Trainer
from tests.unit.one_rank import ENV, one_rank

pytestmark = pytest.mark.usefixtures(one_rank.__name__)

RUN = "read-later"
EVERY = 5


def run(run_dir: Path, checkpoint: dict[str, Any], max_steps: int = 22) -> list[int]:
    """The steps of the checkpoints a short run saved, its final one included."""
    cfg = validate_config(
        {
            "run": {"name": RUN, "output_dir": str(run_dir.parent)},
            "workload": {
                "kind": "synthetic",
                "input_dim": 8,
                "hidden_dim": 16,
                "num_layers": 1,
                "num_samples": 256,
            },
            "training": {"batch_size": 16, "max_steps": max_steps, "log_every_steps": EVERY},
            "metrics": {"enabled": False},
            "checkpoint": {"enabled": True, "keep_last": 100, **checkpoint},
        }
    )
    trainer = Trainer(cfg, ENV, TrainerMetrics(ENV, RUN), run_dir)
    assert trainer.run().status == "completed"
    return sorted(int(path.stem.split("-")[1]) for path in (run_dir / "checkpoints").glob("step-*.pt"))


def test_a_checkpoint_asked_for_at_a_heartbeat_is_saved_a_step_later(tmp_path: Path) -> None:
    # Rank 0's clock finds a checkpoint due at every heartbeat (5, 10, ...); it is saved after the next step.
    assert run(tmp_path / RUN, {"every_steps": None, "every_minutes": 1e-9}) == [6, 11, 16, 21, 22]


def test_a_checkpoint_saved_at_the_heartbeats_step_answers_the_clocks_request(tmp_path: Path) -> None:
    # every_steps saved one at the step the clock asked at: the request read a step later saves no other.
    assert run(tmp_path / RUN, {"every_steps": EVERY, "every_minutes": 1e-9}) == [5, 10, 15, 20, 22]
