"""The real trainer, one rank in this process: a disk that refuses status, summary and log writes does not
stop training, and checkpoint.resume=false in a reused run directory keeps its own checkpoints."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddp import status, summary
from ddp.best_effort import BestEffortWrites
from ddp.checkpoint import CheckpointStore
from ddp.config import validate_config
from ddp.logs import RankLogFile, setup_logging
from ddp.metrics import TrainerMetrics
from ddp.trainer import RunResult, Trainer
from tests.unit.one_rank import ENV, one_rank

# The one-process group every test here trains in (tests/unit/one_rank.py).
pytestmark = pytest.mark.usefixtures(one_rank.__name__)

RUN = "disk-faults"


def run(run_dir: Path, **sections: Any) -> tuple[RunResult, TrainerMetrics]:
    cfg = validate_config(
        {
            "run": {"name": RUN, "output_dir": str(run_dir.parent)},
            "workload": {"kind": "synthetic", "input_dim": 8, "hidden_dim": 16, "num_samples": 256},
            "training": {"batch_size": 16, "max_steps": 20, "log_every_steps": 5},
            "metrics": {"enabled": False, "status_every_steps": 5},
            "checkpoint": {"every_steps": 10, "keep_last": 3},
            **sections,
        }
    )
    metrics = TrainerMetrics(ENV, RUN)
    return Trainer(cfg, ENV, metrics, run_dir).run(), metrics


def write_errors(metrics: TrainerMetrics, target: str) -> float | None:
    labels = {"rank": "0", "local_rank": "0", "node": "node1", "target": target}
    return metrics.registry.get_sample_value("trainer_write_errors_total", labels)


def refuse(errno_code: int) -> Any:
    def write(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno_code, f"{errno.errorcode[errno_code]} (planted)")

    return write


class FullDiskStream:
    """A log file's stream on a disk that takes nothing more."""

    def write(self, _text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device (planted)")

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (planted)")


@pytest.fixture
def rank_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RankLogFile]:
    """The trainer's own log file, on a full disk. Records also reach caplog (the console handler, bound
    to whatever stderr pytest had at setup, is left out); everything is restored afterwards."""
    root = logging.getLogger("ddp")
    setup_logging(tmp_path / "run" / "logs", ENV, RUN, "INFO")
    (handler,) = [h for h in root.handlers if isinstance(h, RankLogFile)]
    for other in [h for h in root.handlers if h is not handler]:
        root.removeHandler(other)
    monkeypatch.setattr(root, "propagate", True)
    real_stream = handler.stream
    handler.stream = FullDiskStream()  # type: ignore[assignment]
    try:
        yield handler
    finally:
        handler.stream = real_stream
        root.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_refused_status_summary_and_log_writes_are_counted_and_training_goes_on(
    tmp_path: Path,
    rank_log: RankLogFile,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: int,
) -> None:
    monkeypatch.setattr(status, "atomic_write_json", refuse(code))
    monkeypatch.setattr(summary, "atomic_write_json", refuse(code))
    with caplog.at_level(logging.INFO, logger="ddp"):
        result, metrics = run(tmp_path / "run")
    assert (result.status, result.steps) == ("completed", 20)
    # Status at start and every 5 steps and at the end; the summary at both checkpoints.
    assert (write_errors(metrics, "status") or 0) >= 5
    assert write_errors(metrics, "summary") == 2
    assert (write_errors(metrics, "log") or 0) >= 1 and rank_log.write_errors >= 1
    # Checkpoints (their own disk accounting) were written all along.
    assert [e.step for e in CheckpointStore(tmp_path / "run" / "checkpoints", 3).entries()] == [10, 20]
    assert not (tmp_path / "run" / "summary.json").exists()
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    # One report per spell of failures, not one per write.
    assert [m.split(" /", 1)[0] for m in refused] == [
        "cannot write the status file",
        "cannot write the summary file",
    ]
    assert all("training goes on" in m for m in refused)


def test_a_write_that_works_again_is_reported_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("ddp"), "propagate", True)
    counted: list[str] = []
    writes = BestEffortWrites(counted.append)
    with caplog.at_level(logging.WARNING, logger="ddp.trainer"):
        for _ in range(3):
            assert writes.attempt("status", Path("s.json"), refuse(errno.ENOSPC)) is None
        assert writes.attempt("status", Path("s.json"), lambda: "written") == "written"
        assert writes.attempt("status", Path("s.json"), lambda: "written") == "written"
    assert counted == ["status"] * 3
    messages = [r.getMessage() for r in caplog.records if r.name == "ddp.trainer"]
    assert len(messages) == 2
    assert "cannot write the status file s.json" in messages[0]
    assert messages[1] == "the status file s.json is written again after 3 refused writes"


def test_resume_false_in_a_reused_run_directory_keeps_its_own_checkpoints(tmp_path: Path) -> None:
    """The other run's steps 800/1000/1200 are set aside; this run's saves stay listed and resumable."""
    ckpt = tmp_path / "run" / "checkpoints"
    other = CheckpointStore(ckpt, keep_last=3, run=RUN)
    for step in (800, 1000, 1200):
        other.save({"step": step, "model": {}}, step)
    result, _ = run(tmp_path / "run", checkpoint={"every_steps": 10, "keep_last": 3, "resume": False})
    assert result.steps == 20
    store = CheckpointStore(ckpt, keep_last=3)
    assert [e.step for e in store.entries()] == [10, 20]
    assert sorted(p.name for p in ckpt.glob("*.pt")) == ["step-000000010.pt", "step-000000020.pt"]
    found = store.load_newest()
    assert found is not None and found[0].step == 20 and found[1]["run"] == RUN
    (aside,) = [p for p in ckpt.iterdir() if p.is_dir()]
    assert [e.step for e in CheckpointStore(aside, 3).entries()] == [800, 1000, 1200]
