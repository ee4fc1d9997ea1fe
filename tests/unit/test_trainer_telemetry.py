"""The trainer's telemetry: heartbeat agreement, step records, restart history, summary and status files."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ddp.checkpoint import CheckpointEntry
from ddp.config import validate_config
from ddp.control import AGENT_MONITOR_ENV, StopRequests, peer_failure_hold_s, stop_cause, stop_reason
from ddp.dist import DistEnv
from ddp.distributed_checkpoint import SaveOutcome
from ddp.links import LinkReading
from ddp.metrics import TrainerMetrics
from ddp.progress import Counters, Position
from ddp.summary import write_summary
from ddp.sync_check import SyncCheck
from ddp.telemetry import AllReduce, ProbeTiming, StepResult, Telemetry
from ddp.workloads.base import Workload

RUN = "telemetry-test"


def _env(rank: int = 0, restart_count: int = 0) -> DistEnv:
    return DistEnv(rank, rank, 2, 2, "node1", restart_count, "gloo", torch.device("cpu"))


def _peer(
    rate: float,
    loss_sum: float,
    loss_count: int,
    stop: bool,
    checkpoint: bool,
    by_signal: bool = False,
    compute: float = 0.0,
    nonfinite: bool = False,
) -> AllReduce:
    """The sum all-reduce of a two-rank job whose other rank (rank 1) contributed these heartbeat figures,
    its mean compute per step in its own slot of the ranks' vector."""

    def all_reduce(local: torch.Tensor, *, async_op: bool) -> _Work:
        assert async_op, "the heartbeat begins its all-reduce and reads it later"
        figures = [
            *(rate, loss_sum, loss_count, float(stop), float(checkpoint), float(by_signal), float(nonfinite)),
            *(0.0, compute),
        ]
        # The peer's figures arrive when the work is waited for, as with a real collective.
        return _Work(lambda: local.add_(torch.tensor(figures, dtype=local.dtype)))

    return all_reduce


class _Work:
    """An all-reduce in flight: its result lands in the tensor on wait()."""

    def __init__(self, land: Callable[[], object]) -> None:
        self._land: Callable[[], object] | None = land

    def wait(self) -> None:
        assert self._land is not None, "waited for twice"
        self._land()
        self._land = None


def _telemetry(
    run_dir: Path,
    env: DistEnv | None = None,
    all_reduce: AllReduce | None = None,
    **sections: Any,
) -> Telemetry:
    cfg = validate_config(
        {
            "run": {"name": RUN},
            "workload": {"kind": "digits"},
            "training": {"batch_size": 4, "max_steps": 25, "log_every_steps": 10},
            "ddp": {"grad_accum_steps": 2},
            **sections,
        }
    )
    env = env or _env()
    workload = Workload(
        nn.Linear(3, 2), TensorDataset(torch.zeros(4, 3)), nn.functional.mse_loss, "linear 3->2"
    )
    return Telemetry(
        cfg,
        env,
        TrainerMetrics(env, RUN),
        run_dir,
        Counters(),
        Position(),
        workload,
        all_reduce or _peer(0.0, 0.0, 0, False, False),
    )


def _sample(t: Telemetry, name: str) -> float | None:
    labels = {"rank": str(t.env.rank), "local_rank": str(t.env.local_rank), "node": t.env.node}
    return t.metrics.registry.get_sample_value(name, labels)


def _steps(t: Telemetry, *losses: float, seconds: float = 0.5) -> None:
    for loss in losses:
        t.counters.steps += 1
        t.on_step(StepResult(loss, seconds))


def test_heartbeat_cadence_includes_the_last_step(tmp_path: Path) -> None:
    t = _telemetry(tmp_path)
    assert [s for s in range(1, 26) if t.heartbeat_due(s)] == [10, 20, 25]


@pytest.mark.parametrize(
    ("local", "peer", "expected"),
    [
        ((False, False), (False, False), (False, False)),
        # A STOP file or signal seen by one rank stops every rank at the same step.
        ((False, False), (True, False), (True, False)),
        ((True, False), (False, False), (True, False)),
        # Rank 0's clock asks for a checkpoint; the other ranks learn it here.
        ((False, True), (False, False), (False, True)),
    ],
)
def test_heartbeat_agrees_on_any_ranks_request(
    tmp_path: Path, local: tuple[bool, bool], peer: tuple[bool, bool], expected: tuple[bool, bool]
) -> None:
    t = _telemetry(tmp_path, all_reduce=_peer(100.0, 3.0, 2, *peer))
    _steps(t, 1.0)
    agreed = t.heartbeat(*local)
    assert (agreed.stop, agreed.checkpoint) == expected


@pytest.mark.parametrize(("local", "peer"), [(False, False), (True, False), (False, True), (True, True)])
def test_heartbeat_tells_every_rank_of_any_ranks_nonfinite_loss(
    tmp_path: Path, local: bool, peer: bool
) -> None:
    t = _telemetry(tmp_path, all_reduce=_peer(100.0, 3.0, 2, False, False, nonfinite=peer))
    _steps(t, 1.0)
    agreed = t.heartbeat(False, False, nonfinite=local)
    assert agreed.nonfinite == (local or peer)
    assert not agreed.stop and not agreed.checkpoint


@pytest.mark.parametrize(
    ("own", "local_signal", "peer_signal", "reason", "cause"),
    [
        # `tooling stop` on two nodes: the other node's STOP file was there first.
        (None, False, False, "stop requested (stop file on another rank)", "stop file"),
        # Ctrl-C reached the other rank before this one's heartbeat.
        (None, False, True, "stop requested (signal on another rank)", "signal"),
        ("stop file /runs/x/STOP", False, False, "stop requested (stop file /runs/x/STOP)", "stop file"),
        ("signal SIGINT", True, False, "stop requested (signal SIGINT)", "signal"),
        ("signal SIGTERM", True, True, "stop requested (signal SIGTERM)", "signal"),
    ],
)
def test_heartbeat_agrees_on_the_stops_cause(
    tmp_path: Path, own: str | None, local_signal: bool, peer_signal: bool, reason: str, cause: str
) -> None:
    t = _telemetry(tmp_path, all_reduce=_peer(100.0, 3.0, 2, True, False, peer_signal))
    _steps(t, 1.0)
    agreed = t.heartbeat(own is not None, False, local_signal)
    assert agreed.stop and agreed.by_signal == (local_signal or peer_signal)
    written = stop_reason(own, agreed.by_signal)
    assert written == reason and stop_cause(written) == cause


def test_stop_requests_name_their_cause(tmp_path: Path) -> None:
    requests = StopRequests(tmp_path / "STOP")
    assert not requests.requested() and not requests.by_signal
    (tmp_path / "STOP").touch()
    assert requests.requested() and stop_cause(stop_reason(requests.reason, False)) == "stop file"
    requests._on_signal(signal.SIGINT, None)
    assert requests.by_signal and stop_reason(requests.reason, False) == "stop requested (signal SIGINT)"
    # Reasons that name no cause: a trainer from before causes were agreed on, or no stop at all.
    assert stop_cause("stop requested (by another rank)") is None
    assert stop_cause("non-finite loss at step 2") is None and stop_cause(None) is None


def test_a_failing_rank_waits_for_its_agents_signal_or_gives_up(tmp_path: Path) -> None:
    """What real_ddp_trainer's failing ranks wait on (peer_failure_hold_s): the agent's SIGTERM ends the
    wait at once; without one it gives up after its timeout."""
    requests = StopRequests(tmp_path / "STOP")
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        requests.install_signal_handlers()
        started = time.monotonic()
        assert not requests.wait_for_signal(0.3)
        assert time.monotonic() - started >= 0.3
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        assert requests.wait_for_signal(30)
        assert time.monotonic() - started < 10 and requests.reason == "signal SIGTERM"
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_failing_ranks_hold_outlasts_the_agents_polls() -> None:
    """The hold grows with the interval the launch gave torchrun's agent, so a site that polls every 10 s
    still has the killed rank named; torchrun's default applies when the launch set none."""
    default = peer_failure_hold_s({})
    assert default == peer_failure_hold_s({AGENT_MONITOR_ENV: "0.1"}) and default >= 5.0
    for interval in (1.0, 10.0, 60.0):
        assert peer_failure_hold_s({AGENT_MONITOR_ENV: str(interval)}) > 2 * interval
    assert peer_failure_hold_s({AGENT_MONITOR_ENV: "soon"}) == default


def test_heartbeat_reports_job_rate_and_mean_loss_since_the_last_one(tmp_path: Path) -> None:
    t = _telemetry(tmp_path, all_reduce=_peer(100.0, 3.0, 2, False, False))
    _steps(t, 1.0, math.nan, 2.0)  # the skipped step is not averaged into the loss
    t.heartbeat(False, False)
    local_rate = 2 * 4 / 0.5  # batch 4 x 2 micro-batches per 0.5 s step
    assert _sample(t, "trainer_global_samples_per_second") == pytest.approx(100.0 + local_rate)
    _when, step, rate, loss, sigma = t.timeline.points[-1]
    assert step == 3 and rate == pytest.approx(100.0 + local_rate)
    assert loss == pytest.approx((1.0 + 2.0 + 3.0) / (2 + 2))
    assert sigma == 0.0  # steady steps
    assert _sample(t, "trainer_memory_pressure_ratio") is not None  # the system sample rides along
    # every_steps (default 200) x the mean step time.
    assert _sample(t, "trainer_checkpoint_interval_seconds") == pytest.approx(200 * 0.5)

    # The next heartbeat averages only what came after this one; with no finite loss anywhere it is NaN.
    t._all_reduce = _peer(100.0, 0.0, 0, False, False)
    t.heartbeat(False, False)
    assert math.isnan(t.timeline.points[-1][3])


def test_a_heartbeat_is_read_a_step_later_for_the_step_it_was_begun_at(tmp_path: Path) -> None:
    """start_heartbeat leaves the all-reduce in flight while the next step computes; finish_heartbeat waits
    for it and reports the figures of the step it was begun at, with every rank's requests."""
    t = _telemetry(tmp_path, all_reduce=_peer(100.0, 3.0, 2, True, False))
    _steps(t, 1.0, 2.0)
    assert t.finish_heartbeat() is None  # none in flight
    t.start_heartbeat(False, False)
    with pytest.raises(AssertionError, match="still in flight"):
        t.start_heartbeat(False, False)
    _steps(t, 5.0)  # the next step, while the all-reduce runs
    agreed = t.finish_heartbeat()
    assert agreed is not None and agreed.stop  # the peer's request, landed only on wait()
    _when, step, _rate, loss, _sigma = t.timeline.points[-1]
    assert step == 2 and loss == pytest.approx((1.0 + 2.0 + 3.0) / (2 + 2))  # not the later step's loss
    assert t.finish_heartbeat() is None
    # What the later step logged goes into the next heartbeat.
    t._all_reduce = _peer(0.0, 0.0, 0, False, False)
    assert not t.heartbeat(False, False).stop
    _when, step, _rate, loss, _sigma = t.timeline.points[-1]
    assert step == 3 and loss == pytest.approx(5.0)


def test_checkpoint_interval_follows_configured_minutes(tmp_path: Path) -> None:
    t = _telemetry(tmp_path, checkpoint={"every_steps": None, "every_minutes": 1.5})
    _steps(t, 1.0)
    t.heartbeat(False, False)
    assert _sample(t, "trainer_checkpoint_interval_seconds") == 90.0


def test_step_record_counts_skipped_steps_and_takes_the_probe(tmp_path: Path) -> None:
    t = _telemetry(tmp_path)
    _steps(t, 0.7)
    t.counters.steps += 1
    t.on_step(StepResult(math.nan, 0.25, ProbeTiming(0.2, 0.15, 0.25)))
    assert _sample(t, "trainer_steps_total") == 2
    assert _sample(t, "trainer_samples_total") == 2 * 8
    assert _sample(t, "trainer_loss") == 0.7  # the NaN step leaves the last finite loss
    assert _sample(t, "trainer_step") == 2
    assert _sample(t, "trainer_comm_overhead_ratio") == pytest.approx((0.2 - 0.15) / 0.25)
    digest = t.digest()
    assert digest["steps"] == 2 and digest["last_loss"] == 0.7
    assert digest["comm_overhead_ratio"] == pytest.approx(0.2)


def test_sync_check_mismatch_counts_and_lowers_accuracy(tmp_path: Path) -> None:
    t = _telemetry(tmp_path)
    t.on_sync_check(SyncCheck(True, [[1.0, 2.0], [1.0, 2.0]]))
    t.on_sync_check(SyncCheck(False, [[1.0, 2.0], [1.5, 2.0]]))
    assert (t.counters.sync_checks, t.counters.sync_mismatches) == (2, 1)
    assert _sample(t, "trainer_grad_sync_mismatches_total") == 1
    assert _sample(t, "trainer_grad_sync_accuracy_ratio") == 0.5


def test_nonfinite_steps_count_and_only_skipped_ones_count_as_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trainer started earlier in this process (ddp.logs.setup_logging) stops "ddp" propagating to caplog.
    monkeypatch.setattr(logging.getLogger("ddp"), "propagate", True)
    t = _telemetry(tmp_path)
    t.on_nonfinite(3, "non-finite loss at step 3", skipped=True)
    t.on_nonfinite(4, "non-finite loss at step 4", skipped=False)  # the trainer stops on this one itself
    assert (t.counters.nonfinite, t.counters.skipped) == (2, 1)
    assert _sample(t, "trainer_nonfinite_loss_total") == 2
    assert _sample(t, "trainer_skipped_steps_total") == 1
    (record,) = [r for r in caplog.records if r.name == "ddp.trainer"]
    assert (
        record.getMessage()
        == "non-finite loss at step 3; skipping the update (training.nonfinite_policy=skip)"
    )
    assert record.trainer == {"step": 3, "event": "nonfinite_skip"}


def _previous_run(run_dir: Path) -> None:
    """The summary an earlier incarnation left: heartbeats up to step 30, one incarnation."""
    write_summary(
        run_dir,
        {
            "timeline": [[1.0, 10, 50.0, 2.0, 1.0], [2.0, 20, 60.0, None, 1.0], [3.0, 30, 70.0, 1.0, 1.0]],
            "incarnations": [
                {"restart_count": 0, "started_at": 1.0, "world_size": 2, "resumed_from_step": None}
            ],
        },
    )


def test_resumed_start_carries_history_up_to_the_resumed_step(tmp_path: Path) -> None:
    _previous_run(tmp_path)
    t = _telemetry(tmp_path, env=_env(restart_count=1))
    t.counters.steps = 20
    t.on_resume(20)
    t.start()
    # Heartbeats after step 20 are replayed by this incarnation, so they are dropped, not doubled.
    assert [p[1] for p in t.timeline.points] == [10, 20]
    assert math.isnan(t.timeline.points[1][3])
    assert [i["resumed_from_step"] for i in t.incarnations] == [None, 20]
    assert t.incarnations[-1]["restart_count"] == 1
    assert t.checkpoint_info == {"last_step": 20, "last_file": None, "resumed_from_step": 20}
    assert _sample(t, "trainer_step") == 20
    status = json.loads((tmp_path / "status" / "rank0.json").read_text())
    assert (status["state"], status["step"], status["last_checkpoint_step"]) == ("running", 20, 20)


@pytest.mark.parametrize(
    ("rank", "resumed"),
    [(0, False), (1, True)],  # a fresh start is a new run; only rank 0 reads and writes the summary
)
def test_start_without_history_records_one_incarnation(tmp_path: Path, rank: int, resumed: bool) -> None:
    _previous_run(tmp_path)
    t = _telemetry(tmp_path, env=_env(rank))
    if resumed:
        t.counters.steps = 20
        t.on_resume(20)
    t.start()
    assert t.timeline.points == []
    assert len(t.incarnations) == 1
    assert t.summary_path == (tmp_path / "summary.json" if rank == 0 else None)


def test_summary_assembles_header_checkpoints_and_restarts(tmp_path: Path) -> None:
    _previous_run(tmp_path)
    t = _telemetry(tmp_path, env=_env(restart_count=1))
    t.counters.steps = 20
    t.on_resume(20)
    t.start()
    _steps(t, 0.9, 0.8)
    t.on_checkpoint(
        SaveOutcome(CheckpointEntry("step-000000022.pt", 22, "0" * 64, 10, 5.0), None), tmp_path, 0.1, 6.0
    )
    t.on_checkpoint(SaveOutcome(None, "disk full"), tmp_path, 0.1, 7.0)
    t.on_checkpoint(SaveOutcome(None, None), tmp_path, 0.1, 8.0)  # a non-writer's round
    assert _sample(t, "trainer_checkpoint_last_success_timestamp_seconds") == 8.0
    path = t.write_summary("completed", None, [t.digest(), {**t.digest(), "rank": 1}])

    summary = json.loads(path.read_text())
    assert summary["run"] == RUN and summary["config"]["run"]["name"] == RUN
    assert (summary["world_size"], summary["nodes"], summary["nproc_per_node"]) == (2, 1, 2)
    assert (summary["workload"], summary["parameters"]) == ("linear 3->2", 3 * 2 + 2)
    assert summary["samples_per_step"] == 4 * 2 * 2  # batch x accumulation x world size
    assert (summary["status"], summary["steps"]) == ("completed", 22)
    assert summary["checkpoints"] == {
        "last_step": 22,
        "last_file": str(tmp_path / "step-000000022.pt"),
        "resumed_from_step": 20,
        "saved": 1,
        "failures": 1,
    }
    assert summary["restarts"] == 1 and len(summary["incarnations"]) == 2
    assert [r["rank"] for r in summary["ranks"]] == [0, 1]
    assert summary["samples_total"] == 2 * 2 * 8


def test_failure_writes_status_and_a_rank0_summary(tmp_path: Path) -> None:
    t = _telemetry(tmp_path)
    t.start()
    _steps(t, 1.5)
    t.failed("non-finite loss at step 2", 1.5)
    status = json.loads((tmp_path / "status" / "rank0.json").read_text())
    assert (status["state"], status["error"], status["loss"]) == ("failed", "non-finite loss at step 2", 1.5)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["reason"]) == ("failed", "non-finite loss at step 2")
    assert [r["rank"] for r in summary["ranks"]] == [0]


def test_progress_loads_in_place_and_rejects_unknown_keys() -> None:
    counters = Counters(steps=5, skipped=2)
    shared = counters
    counters.load({"steps": 40, "nonfinite": 1})  # a checkpoint without the newer keys
    assert shared is counters and counters == Counters(steps=40, nonfinite=1)
    with pytest.raises(TypeError):
        counters.load({"steps": 1, "bogus": 3})
    assert counters.steps == 40  # a rejected checkpoint leaves the counts alone
    position = Position()
    position.load({"epoch": 3, "batch_in_epoch": 7})
    assert position == Position(3, 7)


def test_each_step_splits_own_work_from_the_wait_in_the_all_reduce(tmp_path: Path) -> None:
    t = _telemetry(tmp_path)
    t.counters.steps += 1
    t.on_step(StepResult(1.0, 0.5, None, collective_wait=0.1))
    t.counters.steps += 1
    # A probe step: its extra no_sync pass is nobody's compute.
    t.on_step(StepResult(1.0, 0.9, ProbeTiming(0.3, 0.25, 0.5), collective_wait=0.3))
    t.counters.steps += 1
    t.on_step(StepResult(1.0, 0.5))  # nothing communicated: nothing to split
    assert _sample(t, "trainer_compute_seconds") == pytest.approx((0.4 + 0.2) / 2)
    assert _sample(t, "trainer_collective_wait_seconds") == pytest.approx((0.1 + 0.3) / 2)
    digest = t.digest()
    assert digest["compute_seconds_mean"] == pytest.approx(0.3)
    assert digest["collective_wait_seconds_mean"] == pytest.approx(0.2)


def test_a_rank_slower_than_the_median_names_itself_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trainer started earlier in this process (ddp.logs.setup_logging) stops "ddp" propagating to caplog.
    monkeypatch.setattr(logging.getLogger("ddp"), "propagate", True)
    peer_compute = 0.1
    t = _telemetry(tmp_path, all_reduce=_peer(100.0, 3.0, 2, False, False, compute=peer_compute))
    assert _sample(t, "trainer_straggler") is None  # nothing judged before a measured heartbeat
    for _ in range(3):
        t.counters.steps += 1
        t.on_step(StepResult(1.0, 0.5, None, collective_wait=0.05))
    with caplog.at_level(logging.WARNING, logger="ddp.trainer"):
        t.heartbeat(False, False)
        t.heartbeat(False, False)
    # median of 0.45 and 0.1 is 0.275: this rank is 1.64x it, beyond the default 20 % margin
    assert _sample(t, "trainer_compute_ratio_to_median") == pytest.approx(0.45 / 0.275)
    assert _sample(t, "trainer_straggler") == 1.0
    warnings = [r.getMessage() for r in caplog.records if "straggler" in r.getMessage()]
    assert warnings == [
        "rank 0 on node node1 is a straggler: its compute per step is 1.64x the median rank's (margin 20%)"
    ]
    t.write_status("running", 1.0)
    status = json.loads(t.status.path.read_text())
    assert status["compute_ratio_to_median"] == pytest.approx(0.45 / 0.275)
    assert status["collective_wait_seconds"] == pytest.approx(0.05)
    assert t.digest()["compute_ratio_to_median_max"] == pytest.approx(0.45 / 0.275)


def test_a_rank_as_fast_as_its_peer_is_no_straggler(tmp_path: Path) -> None:
    t = _telemetry(tmp_path, all_reduce=_peer(100.0, 3.0, 2, False, False, compute=0.45))
    t.counters.steps += 1
    t.on_step(StepResult(1.0, 0.5, None, collective_wait=0.05))
    t.heartbeat(False, False)
    assert _sample(t, "trainer_compute_ratio_to_median") == pytest.approx(1.0)
    assert _sample(t, "trainer_straggler") == 0.0


def test_a_slow_link_is_named_once_with_both_nodes_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("ddp"), "propagate", True)
    t = _telemetry(tmp_path)
    labels = {"rank": "0", "local_rank": "0", "node": "node1", "peer": "node2"}
    slow = [LinkReading("node2", 0.120, 0.0002)]
    with caplog.at_level(logging.WARNING, logger="ddp.trainer"):
        t.judge_links([LinkReading("node2", 0.0003, 0.0002)])
        assert t.metrics.registry.get_sample_value("trainer_link_slow", labels) == 0.0
        t.judge_links(slow)
        t.judge_links(slow)
        t.judge_links([LinkReading("node2", 0.0003, 0.0002)])
    warnings = [r.getMessage() for r in caplog.records if "link" in r.getMessage()]
    assert warnings == [
        "link node1 <-> node2 is slow: round trip 120.00 ms, best 0.20 ms (rank 0's own compute is within "
        "the straggler margin: the network, not this node's compute)",
        "link node1 <-> node2 is no longer slow: round trip 0.30 ms, best 0.20 ms",
    ]
    assert t.metrics.registry.get_sample_value("trainer_link_rtt_seconds", labels) == pytest.approx(0.0003)
    assert t.digest()["slow_link_events"] == 1


def test_a_straggling_node_judges_none_of_its_links(tmp_path: Path) -> None:
    """A rank whose own compute is slow: the fault is its compute, and its round trips are not the link's."""
    t = _telemetry(tmp_path, all_reduce=_peer(100.0, 3.0, 2, False, False, compute=0.1))
    t.counters.steps += 1
    t.on_step(StepResult(1.0, 0.5, None, collective_wait=0.05))
    t.heartbeat(False, False)
    assert _sample(t, "trainer_straggler") == 1.0
    t.judge_links([LinkReading("node2", 0.120, 0.0002)])
    labels = {"rank": "0", "local_rank": "0", "node": "node1", "peer": "node2"}
    assert t.metrics.registry.get_sample_value("trainer_link_slow", labels) == 0.0
    assert t.digest()["slow_link_events"] == 0
